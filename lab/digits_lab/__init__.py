"""The lab: the studies that measure and prove things about the product (the ``digits`` package), never
imported by it and not installed with it (``make setup-lab`` installs this folder, editable).

The equivalence report (``compare``, ``compare_losses``, ``pytorch_suite``, ``interop``), the benchmarks
(``benchmark`` with its ``contention``, ``profile`` and ``recipes`` sections, ``spread``, ``benchmark_losses``,
``benchmark_demo``, ``demo_memory``, ``handwriting_benchmark``, ``wild_handwriting``, ``augment_study``, ``step_study``,
``non_digits``), the GPU
check's report (``gpu_check``) and the docs' generated blocks (``docs``). Each study's work, report and result
files are here, as ``run_<name>(cfg)``; its command is ``python lab/scripts/<name>.py`` on ``lab/configs/<name>.yaml``.

A study writes its results into its own run folder; ``paths.results_dir=...`` publishes them (lab/README.md).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout the lab lives in: its scripts/ are what the studies run
CONFIG_DIR = ROOT / "lab" / "configs"  # the studies' Hydra configs


def results_dir(cfg) -> Path:
    """Where a study writes its result files: ``paths.results_dir`` when given (publishing), else its run folder."""
    return Path(cfg.paths.results_dir or cfg.paths.output_dir)
