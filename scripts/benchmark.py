"""Training speed against the plain-PyTorch MNIST recipe, measured side by side in one run.

    python scripts/benchmark.py
    python scripts/benchmark.py baseline.time_to_accuracy=false runs=[]   # throughput only

Writes benchmark.json and benchmark.md into its run folder and into docs/results/ (paths.results_dir),
where the README's results table comes from (python -m digits.docs).
"""

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from digits.overrides import check_command_line
from digits.resolvers import register_resolvers

register_resolvers()  # the ${...} resolvers the configs use
log = logging.getLogger("digits")


@hydra.main(version_base="1.3", config_path="../configs", config_name="benchmark")
def main(cfg: DictConfig) -> None:
    import torch

    from digits.console import quiet_console
    from digits.report import write_json, write_result
    from digits.studies import benchmark

    quiet_console()
    output_dir = Path(cfg.paths.output_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)

    # Each section measures, then returns its results and its part of benchmark.md; the results so far are
    # written after each section, so a run stopped in a long section keeps what the earlier ones measured.
    results, lines = {"config": OmegaConf.to_container(cfg, resolve=True)}, []

    def publish() -> str:
        report = "\n".join(benchmark.recipes_section(results) + lines) + "\n"
        (output_dir / "benchmark.md").write_text(report)
        write_json(output_dir / "benchmark.json", results)
        title = "Training speed against the plain-PyTorch recipe"
        write_result(cfg.paths.results_dir, "benchmark", title, results, report)
        return report

    default_model = OmegaConf.to_container(cfg.default_run.model, resolve=True)
    if cfg.rounds:
        rows = benchmark.measure_throughput(
            benchmark.throughput_paths(cfg), cfg.rounds, cfg.warmup, cfg.window, cfg.windows
        )
        models = {"example": benchmark.EXAMPLE_NET, "default": default_model}
        measured, part = benchmark.throughput_section(rows, models, torch.get_num_threads())
        results.update(measured)
        lines += part
        publish()
    if cfg.runs:  # before the baseline, the longest section
        results["runs"], part = benchmark.runs_section(list(cfg.runs), cfg.data_dir, output_dir)
        lines += part
        publish()
    if cfg.baseline.time_to_accuracy:
        results["baseline_time_to_accuracy"], part = benchmark.baseline_section(
            cfg.data_dir, cfg.baseline.target, cfg.baseline.max_epochs, cfg.seed
        )
        lines += part
        publish()
    if cfg.startup.rounds:
        results["startup"], part = benchmark.startup_section(
            cfg.data_dir, output_dir, cfg.startup.rounds, cfg.startup.baseline_tree
        )
        lines += part
        publish()
    if cfg.compile.rounds:
        results["compile"], part = benchmark.compile_section(
            default_model, cfg.data_dir, cfg.default_run.batch_size, cfg.compile.steps, cfg.compile.rounds
        )
        lines += part
        publish()
    if cfg.threads_under_load.rounds:
        results["threads_under_load"], part = benchmark.threads_section(
            cfg.data_dir, output_dir, cfg.threads_under_load.rounds, cfg.threads_under_load.steps
        )
        lines += part
    if cfg.profile.rounds:  # also writes profile.json and profile.md
        from digits.studies import profile

        results["profile"], part = profile.section(cfg, output_dir)
        lines += part
    report = publish()
    log.info("\n%s", report)


if __name__ == "__main__":
    check_command_line(Path(__file__).resolve().parents[1] / "configs", "benchmark")
    main()
