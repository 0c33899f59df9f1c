"""How quick the drawing demo is, measured as a user meets it: ``scripts/demo.py`` started as a
process until its page and first answer are there, and real MNIST test digits sent as drawings
(dark ink on a white 280x280 canvas, as the page sends them). Each number has its baseline
measured in the same run: ``import torch`` in a fresh process for the start-up, the network's
forward pass alone on an already normalised 28x28 digit for a drawing."""

from __future__ import annotations

import io
import json
import re
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from digits.data import load_mnist, normalize
from digits.evaluation.loading import load_module, resolve_checkpoint
from digits_lab import ROOT, results_dir

SCRIPT = ROOT / "scripts" / "demo.py"


def as_drawing(image: torch.Tensor) -> bytes:
    """An MNIST digit as the page would send it: 10x larger, dark ink on white, PNG."""
    picture = Image.fromarray((255 - image).numpy()).resize((280, 280), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def post(url: str, data: bytes) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    request = urllib.request.Request(url + "api/analyse", data=data, method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        result = json.load(response)
    return result, (time.perf_counter() - started) * 1000


def start_demo(checkpoint: str, folder: Path) -> tuple[subprocess.Popen, str, float]:
    """Start the demo; return it, its URL and the seconds until its page and a first answer came."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), f"ckpt_path={checkpoint}", "port=0", f"hydra.run.dir={folder}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    for line in process.stdout:
        match = re.search(r"demo: open (http://\S+/)", line)
        if match:
            url = match.group(1)
            break
    else:
        raise RuntimeError(f"the demo exited with code {process.wait()} without serving")
    for path in ("", "static/demo.js", "static/demo.css", "api/info"):
        urllib.request.urlopen(url + path, timeout=60).read()
    return process, url, time.perf_counter() - started


def import_torch_seconds() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - started


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median": statistics.median(ordered),
        "p90": ordered[int(0.9 * (len(ordered) - 1))],
        "max": ordered[-1],
        "count": len(ordered),
    }


def stroke_to_numbers(url: str, strokes: int, profile: Path) -> list[float]:
    """In headless Chromium: draw a stroke with the mouse, release, and read the page's own time
    from the release to the numbers on the page (requests made while drawing included)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from digits_lab.browser import draw_vertical_stroke, start_chromium

    driver = start_chromium(profile)
    try:
        driver.get(url)
        times = []
        for stroke in range(strokes):
            driver.find_element(By.ID, "clear").click()
            driver.execute_script("delete document.body.dataset.strokeToNumbersMs")
            draw_vertical_stroke(driver, x_offset=(stroke % 9 - 4) * 10)
            WebDriverWait(driver, 60).until(
                lambda d: d.execute_script("return document.body.dataset.strokeToNumbersMs")
            )
            times.append(float(driver.execute_script("return document.body.dataset.strokeToNumbersMs")))
        return times
    finally:
        driver.quit()


def benchmark(
    checkpoint: str, data_dir: str, output_dir: Path, drawings: int, startups: int, strokes: int
) -> dict[str, Any]:
    images, labels = load_mnist(data_dir, train=False, download=False)
    images, labels = images[:drawings], labels[:drawings]
    bodies = [as_drawing(image) for image in images]
    module = load_module(resolve_checkpoint(checkpoint), torch.device("cpu"))

    # The baseline first, alone (interleaved with requests, two processes' torch threads would fight
    # over the cores): the network on one normalised digit, with one thread (the demo's default)
    # and with torch's default, one call of each in turn.
    default_threads = torch.get_num_threads()
    forward: dict[int, list[float]] = {1: [], default_threads: []}
    with torch.no_grad():
        for index, image in enumerate([images[0]] * 5 + list(images)):  # five warm-up rounds, not counted
            for threads in forward:
                torch.set_num_threads(threads)
                started = time.perf_counter()
                module(normalize(image[None]))
                if index >= 5:
                    forward[threads].append((time.perf_counter() - started) * 1000)
    torch.set_num_threads(default_threads)

    startup, baseline = [], []
    for attempt in range(startups):  # interleaved, so that both see the same machine
        baseline.append(import_torch_seconds())
        process, url, seconds = start_demo(checkpoint, output_dir / f"demo-{attempt}")
        startup.append(seconds)
        if attempt < startups - 1:
            process.terminate()
            process.wait()
    try:
        server, preprocessing, round_trip, correct = [], [], [], 0
        for body, label in zip(bodies, labels):
            result, milliseconds = post(url, body)
            server.append(result["server_ms"])
            preprocessing.append(result["preprocessing_ms"])
            round_trip.append(milliseconds)
            correct += result["prediction"] == int(label)
        browser = stroke_to_numbers(url, strokes, output_dir / "chromium-profile") if strokes else []
    finally:
        process.terminate()
        process.wait()
    return {
        "startup_s": summary(startup),
        "import_torch_s": summary(baseline),
        "server_ms": summary(server),
        "of_which_preprocessing_ms": summary(preprocessing),
        "round_trip_ms": summary(round_trip),
        **({"browser_stroke_to_numbers_ms": summary(browser)} if browser else {}),
        "forward_1_thread_ms": summary(forward[1]),
        f"forward_{default_threads}_threads_ms": summary(forward[default_threads]),
        "drawings": len(bodies),
        "predicted_correctly": correct,
    }


def run_benchmark_demo(cfg) -> str:
    """``benchmark`` on ``cfg``'s checkpoint, written as benchmark_demo.json and .md into the run folder and
    into ``paths.results_dir``. Returns the machine line and the table."""
    import os
    import platform

    from digits.report import markdown_table, write_json, write_result

    output_dir = Path(cfg.paths.output_dir)
    results = benchmark(cfg.ckpt_path, cfg.data_dir, output_dir, cfg.drawings, cfg.startups, cfg.strokes)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    rows = [{"what": name, **value} for name, value in results.items() if isinstance(value, dict)]
    table = markdown_table(rows)
    (output_dir / "benchmark_demo.md").write_text(
        f"# Demo speed\n\n{machine}; {results['drawings']} MNIST test digits sent as drawings "
        f"({results['predicted_correctly']} predicted correctly).\n\n{table}"
    )
    write_json(output_dir / "benchmark_demo.json", {"machine": machine, **results})
    note = f"{results['drawings']} MNIST test digits sent as drawings ({results['predicted_correctly']} read right)."
    write_result(results_dir(cfg), "benchmark_demo", "Demo speed", results, f"{note}\n\n{table}")
    return f"{machine}\n{table}"
