"""What a run prints: each line once, and none of the libraries' lines a newcomer reads as a problem.

Every line and warning silenced here has its reason beside it (docs/training.md, "The console", lists
them); everything else is shown. Called once at the start of each script's job.
"""

from __future__ import annotations

import logging
import warnings

# Lightning's log lines dropped, by the start of their text.
DROPPED_LINES = (
    "💡 Tip:",  # an advertisement for Lightning's cloud services, not about this run
    # the project's own choice (RichModelSummary) reported back as if it were a problem
    "Trainer already configured with model summary callbacks",
)

# Warnings silenced: (message regex, category, module regex), each with why it cannot be fixed here.
SILENCED_WARNINGS = (
    # Lightning's own call into torch's pytree API; a newer Lightning fixes it, nothing here calls it
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"lightning\."),
    # the first forward-mode AD call (torch.func.jvp) loads PyTorch's own jvp decompositions through
    # torch.jit.script (torch/_decomp/decompositions_for_jvp.py); nothing here calls it
    (r"`torch\.jit\.script` is deprecated", FutureWarning, r"torch\.jit\."),
    # the batches are slices of tensors already in memory (on the GPU with data.device=cuda), cut by the
    # datamodule's sampler: worker processes would only copy them (on the CPU) or cannot hold them (CUDA)
    (r"The '\w+_dataloader' does not have many workers", Warning, r"lightning\."),
    # a new run never reaches a folder with checkpoints (run_folder.check_run_folder refuses it), so this
    # appears only on resume=, whose checkpoint folder is the run's own
    (r"Checkpoint directory .* exists and is not empty", Warning, r"lightning\."),
    # the datamodule saves the sampler's position itself (MNISTDataModule.state_dict), so the resume is
    # exact (tests/test_resume.py); Lightning only checks the DataLoader object
    (r"You're resuming from a checkpoint that ended before the epoch ended", Warning, r"lightning\."),
    # MLflow's own SQL store (logger=mlflow) on SQLAlchemy 2.1; only a newer MLflow can fix it
    (r"The ``noload`` loader strategy is deprecated", DeprecationWarning, r"mlflow\."),
)


class _DropLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(DROPPED_LINES)


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
    for message, category, module in SILENCED_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
