"""How quick the drawing demo is: start-up to a usable page, and server time per drawing.

    python scripts/benchmark_demo.py ckpt_path=outputs/train/<run>

Writes benchmark_demo.json and benchmark_demo.md into its run folder and into docs/results/ (paths.results_dir).
"""

import logging
import platform
from pathlib import Path

import hydra
from omegaconf import DictConfig

from digits.overrides import check_command_line
from digits.resolvers import register_resolvers

register_resolvers()  # the ${...} resolvers the configs use
log = logging.getLogger("digits")


@hydra.main(version_base="1.3", config_path="../configs", config_name="benchmark_demo")
def main(cfg: DictConfig) -> None:
    from digits.console import quiet_console

    quiet_console()
    import os

    from digits.report import markdown_table, write_json, write_result
    from digits.studies.benchmark_demo import benchmark

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
    write_result(cfg.paths.results_dir, "benchmark_demo", "Demo speed", results, f"{note}\n\n{table}")
    log.info("%s\n%s\nwritten to %s", machine, table, output_dir)


if __name__ == "__main__":
    check_command_line(Path(__file__).resolve().parents[1] / "configs", "benchmark_demo")
    main()
