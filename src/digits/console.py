"""What a run prints: each line once, and none of the libraries' lines a newcomer reads as a problem.

Every line and warning silenced here has its reason beside it (the README's "Console" paragraph
lists them); everything else is shown. Called once at the start of each script's job.
"""

from __future__ import annotations

import logging
import warnings

# Lightning's log lines dropped, by the start of their text: (start, why it is noise).
DROPPED_LINES = (
    ("💡 Tip:", "an advertisement for Lightning's cloud services, not about this run"),
    (
        "Trainer already configured with model summary callbacks",
        "the project's own choice (RichModelSummary) reported back as if it were a problem",
    ),
)

# Warnings silenced: (message regex, category, module regex, why it cannot be fixed here).
SILENCED_WARNINGS = (
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        FutureWarning,
        r"lightning\.",
        "Lightning's own call into torch's pytree API; a newer Lightning fixes it, nothing here calls it",
    ),
    (
        r"`torch\.jit\.script` is deprecated",
        FutureWarning,
        r"torch\.jit\.",
        "the first forward-mode AD call (torch.func.jvp) loads PyTorch's own jvp decompositions through "
        "torch.jit.script (torch/_decomp/decompositions_for_jvp.py); nothing here calls it",
    ),
    (
        r"The '\w+_dataloader' does not have many workers",
        Warning,
        r"lightning\.",
        "the batches are slices of tensors already in memory (on the GPU with data.device=cuda), cut by the "
        "datamodule's sampler: worker processes would only copy them (on the CPU) or cannot hold them (CUDA)",
    ),
    (
        r"Checkpoint directory .* exists and is not empty",
        Warning,
        r"lightning\.",
        "a new run never reaches a folder with checkpoints (config.check_run_folder refuses it), so this "
        "appears only on resume=, whose checkpoint folder is the run's own",
    ),
    (
        r"You're resuming from a checkpoint that ended before the epoch ended",
        Warning,
        r"lightning\.",
        "the datamodule saves the sampler's position itself (MNISTDataModule.state_dict), so the resume is "
        "exact (tests/test_resume.py); Lightning only checks the DataLoader object",
    ),
    (
        r"The ``noload`` loader strategy is deprecated",
        DeprecationWarning,
        r"mlflow\.",
        "MLflow's own SQL store (logger=mlflow) on SQLAlchemy 2.1; only a newer MLflow can fix it",
    ),
)


class _DropLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(message.startswith(start) for start, _ in DROPPED_LINES)


def quiet_console() -> None:
    """Each Lightning line once (through Hydra's handlers: console and the run's log file, not also
    Lightning's own handler), without the lines and warnings listed above."""
    import lightning.pytorch  # noqa: F401  Lightning adds its handlers when imported: import, then clear them

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropLines) for f in rank_zero.filters):
        rank_zero.addFilter(_DropLines())
    for message, category, module, _ in SILENCED_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
