"""The drawing demo as a user meets it: ``scripts/demo.py`` started as a script, spoken to over HTTP
by a plain client, and driven in a real headless Chromium (Debian's ``chromium`` and
``chromium-driver``, through Selenium). The expected numbers come from PyTorch's
``F.cross_entropy`` on logits of the network rebuilt here from the checkpoint's tensors, not from
the demo's own code."""

from __future__ import annotations

import io
import itertools
import json
import re
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from crafted import BIG, peak_mb, reset_peak, sparse_rgba_png
from harness import start_script
from hydra.utils import instantiate
from PIL import Image, ImageDraw

from digits.data import standardize
from digits.handwriting import to_mnist

# The slow tier (make test-slow): real processes and outside tools.
pytestmark = pytest.mark.slow

UPLOAD_LIMIT = 600_000  # the server under test refuses larger bodies (config max_upload_bytes)
TIMEOUT_S = 2  # ... and cuts off a client that takes longer for a request's headers, or its body


@pytest.fixture(scope="module")
def network(trained_run):
    """The trained network, rebuilt by hand from the checkpoint's plain contents."""
    path = sorted((trained_run / "checkpoints").glob("best-*.ckpt"))[-1]
    checkpoint = torch.load(path, weights_only=True)
    net = instantiate(checkpoint["hyper_parameters"]["model"]).eval()
    net.load_state_dict(
        {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    )
    return net


class Demo:
    """A running ``scripts/demo.py``: its URL, its run folder's parent and everything it printed."""

    def __init__(self, process: subprocess.Popen, cwd: Path) -> None:
        self.process, self.cwd, self.lines = process, cwd, []
        self.found = threading.Event()
        self.url = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            match = re.search(r"demo: open (http://\S+/)", line)
            if match:
                self.url = match.group(1)
                self.found.set()

    def analyse(self, data: bytes, **query) -> tuple[int, dict]:
        url = f"{self.url}api/analyse?{urllib.parse.urlencode(query)}"
        request = urllib.request.Request(url, data=data, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)


@pytest.fixture(scope="module")
def demo(trained_run, data_dir, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("demo")
    process = start_script(
        "demo.py",
        [
            f"ckpt_path={trained_run}",
            "port=0",
            f"max_upload_bytes={UPLOAD_LIMIT}",
            f"max_pixels={BIG[0] * BIG[1]}",  # above the default: the big picture is decoded, not refused
            f"header_timeout_s={TIMEOUT_S}",
            f"body_timeout_s={TIMEOUT_S}",
        ],
        data_dir,
        cwd,
    )
    server = Demo(process, cwd)
    if not server.found.wait(timeout=240):
        process.kill()
        pytest.fail("the demo printed no URL:\n" + "".join(server.lines))
    yield server
    alive = process.poll() is None
    process.terminate()
    process.wait(timeout=60)
    assert alive, "the demo server died during the tests:\n" + "".join(server.lines)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def stroke_one() -> bytes:
    """A drawing of a 1 as the page sends it: dark ink on a white 280x280 canvas."""
    image = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(image).line([(140, 40), (140, 240)], fill=0, width=20)
    return png(image)


def huge_png_header(width: int, height: int) -> bytes:
    """A valid PNG header claiming a huge picture (a few bytes that would decode to gigabytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------------------------------
# Over HTTP


def test_serves_only_local_assets_on_the_host_it_is_told(refusals, demo):
    # `refusals` first: its four processes run while the network trains and the demo starts
    assert demo.url.startswith("http://127.0.0.1:")
    for path in ("", "static/demo.js", "static/demo.css"):
        with urllib.request.urlopen(demo.url + path, timeout=30) as response:
            text = response.read().decode()
        # no CDN script, font or analytics: nothing is fetched from anywhere but this server
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), path
    # listening on 127.0.0.1 only: this machine's other address does not answer
    try:
        other = socket.gethostbyname(socket.gethostname())
    except OSError:
        other = "127.0.0.1"
    if not other.startswith("127."):
        with pytest.raises(OSError):
            socket.create_connection((other, int(demo.url.rsplit(":", 1)[1].strip("/"))), timeout=5).close()


def test_a_drawing_gets_the_networks_numbers(demo, network):
    drawing = stroke_one()
    status, result = demo.analyse(drawing, target=3, temperature=2.0)
    assert status == 200, result
    picture, _ = to_mnist(Image.open(io.BytesIO(drawing)))
    with torch.no_grad():
        logits = network(standardize(picture)[None])[0].double()
    assert result["logits"] == pytest.approx(logits.tolist(), abs=1e-4)
    assert result["prediction"] == int(logits.argmax()) == 1
    expected = F.cross_entropy(logits.unsqueeze(0) / 2.0, torch.tensor([3])).item()
    assert list(result["losses"].values()) == pytest.approx([expected] * 3, abs=1e-5)
    assert torch.tensor(result["picture"]).shape == (28, 28)
    assert result["server_ms"] < 1000


@pytest.mark.parametrize(
    "body, query, status, says",
    [
        (b"this is not a picture", {}, 422, "not an image"),
        (b"", {}, 422, "not an image"),
        (None, {}, 422, "not an image"),  # a truncated PNG
        (png(Image.new("L", (280, 280), 255)), {}, 422, "no digit found"),  # an empty drawing
        (huge_png_header(100_000, 100_000), {}, 422, "pixels"),
        (b"\0" * (UPLOAD_LIMIT + 1), {}, 413, "larger than the demo accepts"),
        (stroke_one(), {"target": "12"}, 422, "pick a digit from 0 to 9"),
        (stroke_one(), {"target": "seven"}, 422, "is not a digit"),
        (stroke_one(), {"temperature": "hot"}, 422, "is not a number"),
        (stroke_one(), {"temperature": "0"}, 422, "outside"),
    ],
    ids=[
        "text",
        "empty-body",
        "truncated-png",
        "blank-drawing",
        "huge-picture",
        "too-many-bytes",
        "target-out-of-range",
        "target-not-a-number",
        "temperature-not-a-number",
        "temperature-zero",
    ],
)
def test_bad_input_gets_a_message_and_the_server_lives_on(demo, body, query, status, says):
    if body is None:
        body = stroke_one()[:120]
    got, result = demo.analyse(body, **query)
    assert got == status and says in result["error"], result
    assert "Traceback" not in result["error"] and 'File "' not in result["error"]
    assert demo.analyse(stroke_one())[0] == 200  # still serving


def test_writes_nothing_but_its_run_folder(demo):
    written = sorted(p.relative_to(demo.cwd) for p in demo.cwd.rglob("*") if p.is_file())
    run_folders = {p.parts[:3] for p in written}
    assert len(run_folders) == 1 and next(iter(run_folders))[:2] == ("outputs", "demo"), written
    assert {p.name for p in written} <= {"config.yaml", "hydra.yaml", "overrides.yaml", "demo.log"}, written


def test_a_10000_by_9999_picture_costs_bounded_memory_alone_and_ten_at_once(demo):
    """Decoded, such a picture holds 400 MB; its grey levels as whole-page floats once cost 1.6 GB
    more. Now the grey page is made in bands, and at most ``max_decodes`` (2) pictures are decoded
    at once: the others wait their turn, or are told the demo is busy."""
    picture = sparse_rgba_png(*BIG)
    assert len(picture) < UPLOAD_LIMIT
    pid = demo.process.pid
    decoded_mb = 4 * BIG[0] * BIG[1] / 2**20
    reset_peak(pid)
    before = peak_mb(pid)
    status, result = demo.analyse(picture)
    alone = peak_mb(pid) - before
    assert status == 200, result
    assert "shrunk the 10000x9999 page to 2048x2048 before looking for the digit" in result["notes"]
    # the decoded picture, plus at most 300 MB of work on it (bands, the 2048-pixel page); checked
    # before ten are sent: unbounded, ten would need some 20 GB
    assert alone < decoded_mb + 300, alone

    reset_peak(pid)
    before = peak_mb(pid)
    answers: list[tuple[int, dict]] = []
    clients = [threading.Thread(target=lambda: answers.append(demo.analyse(picture))) for _ in range(10)]
    for client in clients:
        client.start()
    for client in clients:
        client.join(timeout=300)
    ten = peak_mb(pid) - before
    assert len(answers) == 10
    assert any(status == 200 for status, _ in answers), answers
    for status, result in answers:
        assert status == 200 or (result["kind"] == "BusyError" and "max_decodes" in result["error"]), result
    print(f"peak memory above the idle server: {alone:.0f} MB alone, {ten:.0f} MB with 10 at once")
    assert ten < 2 * (decoded_mb + 300), ten  # max_decodes = 2 of them


def http_request(demo: Demo, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    import http.client

    host, port = demo.url.removeprefix("http://").strip("/").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body or None, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_only_the_names_it_listens_on_and_same_origin_posts_are_answered(demo):
    """DNS rebinding: a page of evil.example makes its name resolve to 127.0.0.1; the browser then
    sends ``Host: evil.example`` and, for a POST, ``Origin: http://evil.example``."""
    port = demo.url.rstrip("/").rsplit(":", 1)[1]
    for name in ("127.0.0.1", "localhost", "[::1]", "LOCALHOST"):
        assert http_request(demo, "GET", "/", {"Host": f"{name}:{port}"})[0] == 200, name
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1", f"127.0.0.1:{int(port) + 1}", ""):
        status, body = http_request(demo, "GET", "/", {"Host": host})
        assert status == 403 and b"not a name this demo listens on" in body, (host, status, body)
    drawing, own = stroke_one(), {"Host": f"127.0.0.1:{port}", "Content-Type": "image/png"}
    status, body = http_request(demo, "POST", "/api/analyse", {**own, "Origin": "http://evil.example"}, drawing)
    assert status == 403 and b"cross-origin" in body, (status, body)
    status, body = http_request(demo, "POST", "/api/analyse", {**own, "Origin": "null"}, drawing)
    assert status == 403, (status, body)
    assert http_request(demo, "POST", "/api/analyse", {**own, "Origin": f"http://127.0.0.1:{port}"}, drawing)[0] == 200
    assert http_request(demo, "POST", "/api/analyse", own, drawing)[0] == 200  # no Origin: not a browser page


def connect(demo: Demo) -> socket.socket:
    host, port = demo.url.removeprefix("http://").strip("/").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=30)


def seconds_until_closed(sock: socket.socket, trickle: bytes, limit: float = 4 * TIMEOUT_S) -> tuple[float, bytes]:
    """Send ``trickle`` a byte every 0.2 s until the server closes the connection (or ``limit``
    passes): the seconds it took, and what the server said."""
    started, said = time.monotonic(), b""
    sock.settimeout(0.2)
    for byte in itertools.cycle(trickle):
        if time.monotonic() - started > limit:
            break
        try:
            sock.send(bytes([byte]))
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:  # reset: closed
            break
        if not chunk:
            break
        said += chunk
    sock.close()
    return time.monotonic() - started, said


def test_slow_or_silent_clients_are_cut_off(demo):
    """Slow loris: a client holds a connection by sending its request a byte at a time."""
    port = demo.url.rstrip("/").rsplit(":", 1)[1]
    head = f"POST /api/analyse HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 100000\r\n\r\n".encode()
    silent = connect(demo)
    started = time.monotonic()
    silent.settimeout(4 * TIMEOUT_S)
    try:
        assert silent.recv(1) == b"", "a silent connection got an answer"
    except TimeoutError:
        pytest.fail("a connection that sends nothing was not closed")
    assert time.monotonic() - started < 3 * TIMEOUT_S
    silent.close()

    took, said = seconds_until_closed(connect(demo), b"X-Slow: " + b"a" * 1000)  # headers that never end
    assert TIMEOUT_S - 0.5 < took < 3 * TIMEOUT_S, (took, said)

    slow_body = connect(demo)
    slow_body.sendall(head)
    took, said = seconds_until_closed(slow_body, stroke_one())
    assert TIMEOUT_S - 0.5 < took < 3 * TIMEOUT_S and said.startswith(b"HTTP/1.1 408"), (took, said)
    assert b"body_timeout_s" in said
    assert demo.analyse(stroke_one())[0] == 200  # still serving


def test_a_client_that_leaves_mid_upload_leaves_one_log_line(demo):
    (log_file,) = demo.cwd.glob("outputs/demo/*/demo.log")
    start = log_file.stat().st_size
    port = demo.url.rstrip("/").rsplit(":", 1)[1]
    for _ in range(3):
        sock = connect(demo)
        sock.sendall(
            f"POST /api/analyse HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 100000\r\n\r\n".encode()
            + stroke_one()[:500]
        )
        time.sleep(0.3)
        sock.close()
    deadline = time.monotonic() + 10
    while log_file.read_text()[start:].count("\n") < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    written = log_file.read_text()[start:]
    assert written.count("disconnected before its picture arrived") == 3, written
    assert "Traceback" not in written and written.count("\n") == 3, written
    assert demo.analyse(stroke_one())[0] == 200


@pytest.mark.parametrize(
    "key, value, says",
    [
        ("max_pixels", 0, "an integer >= 1"),
        ("max_decodes", "two", "an integer >= 1"),
        ("body_timeout_s", -1, "a number of seconds"),
        ("header_timeout_s", float("nan"), "a number of seconds"),
        ("allowed_hosts", "mybox", "a list of host names"),
    ],
)
def test_each_limit_is_validated_with_its_key_in_the_message(key, value, says):
    from omegaconf import OmegaConf

    from digits.config import ConfigError
    from digits.demo.app import validate_demo_config

    cfg = OmegaConf.load(Path(__file__).parents[1] / "configs" / "demo.yaml")
    validate_demo_config(cfg)  # the defaults pass
    cfg[key] = value
    with pytest.raises(ConfigError, match=f"{key}=.* is not allowed: {says}"):
        validate_demo_config(cfg)


# --------------------------------------------------------------------------------------------------
# Refusals at start-up: started side by side, one Python start-up for the three


@pytest.fixture(scope="module")
def refusals(data_dir, tmp_path_factory) -> tuple[Path, dict[str, subprocess.Popen]]:
    """Four demo starts that must be refused, started at once and left running while the rest of the
    module sets up (they need no trained network); each test waits for its own."""
    folder = tmp_path_factory.mktemp("bad-checkpoints")
    corrupt = folder / "corrupt.ckpt"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip file" * 40)
    crafted = folder / "crafted.ckpt"
    # allowed top-level targets; a nested one would call open(..., "w") and create this file
    torch.save(
        {
            "hyper_parameters": {
                "model": {
                    "_target_": "digits.models.DigitCNN",
                    "channels": {
                        "_target_": "builtins.open",
                        "file": str(folder / "created-by-the-checkpoint"),
                        "mode": "w",
                    },
                },
                "loss": {"_target_": "torch.nn.CrossEntropyLoss"},
                "optimizer": {"_target_": "torch.optim.AdamW", "_partial_": True},
            },
            "state_dict": {},
        },
        crafted,
    )
    cases = {
        "missing": [f"ckpt_path={folder / 'no-such.ckpt'}"],
        "corrupt": [f"ckpt_path={corrupt}"],
        "crafted": [f"ckpt_path={crafted}"],
        "bad-port": [f"ckpt_path={corrupt}", "port=70000"],
    }
    processes = {name: start_script("demo.py", ["port=0", *args], data_dir, folder) for name, args in cases.items()}
    yield folder, processes
    for process in processes.values():
        if process.poll() is None:
            process.kill()
            process.wait()


def outcome(process: subprocess.Popen) -> tuple[int, str]:
    try:
        output, _ = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:  # it started serving: the refusal failed
        process.kill()
        output, _ = process.communicate()
    return process.returncode, output


@pytest.mark.parametrize(
    "case, says",
    [
        ("missing", "does not exist"),
        ("corrupt", "not a PyTorch checkpoint that loads safely"),
        ("bad-port", "port=70000 is not allowed"),
    ],
)
def test_a_missing_or_corrupt_checkpoint_or_a_bad_port_is_refused_with_exit_code_2(refusals, case, says):
    returncode, output = outcome(refusals[1][case])
    assert returncode == 2 and says in output and "Traceback" not in output, output


def test_a_crafted_checkpoint_is_refused_with_exit_code_2(refusals):
    folder, processes = refusals
    returncode, output = outcome(processes["crafted"])
    assert not (folder / "created-by-the-checkpoint").exists(), "the checkpoint's nested builtins.open ran"
    assert returncode == 2 and "builtins.open" in output and "Traceback" not in output, output
