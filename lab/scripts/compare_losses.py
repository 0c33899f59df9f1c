"""Compare the three cross-entropy implementations (and the naive one) with nn.CrossEntropyLoss.

    python lab/scripts/compare_losses.py
    python lab/scripts/compare_losses.py devices=[cpu,cuda] training.steps=300 batch_size=1024

Writes report.md, report.json, training_curves.png and TensorBoard curves into its run folder, and the
results the docs show into docs/results/ when published (paths.results_dir=docs/results):
compare_losses (the whole report),
loss_differences (largest difference per dtype) and loss_trainings (whole trainings). The
section on PyTorch's own test material needs the lab extra (make setup-lab), or pytorch_suite=false.
The report is assembled in digits_lab.compare_losses.
"""

from digits.entry import run
from digits_lab import CONFIG_DIR


def main(cfg, started: float) -> None:
    from digits_lab.compare_losses import run_compare_losses

    run_compare_losses(cfg)


if __name__ == "__main__":
    run(main, "compare_losses", "compare_losses", CONFIG_DIR)
