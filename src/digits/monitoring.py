"""TensorBoard monitoring while training: figures per validation epoch, histograms of the logits and
of the softmax confidence, throughput. Each callback times itself (``seconds``), so its cost is
measured directly rather than guessed from two noisy runs."""

from __future__ import annotations

import time

import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor
from torchmetrics.classification import MulticlassConfusionMatrix

from digits.data import to_pixels


def _tensorboard(trainer):
    """The SummaryWriter of the first TensorBoard logger, or None."""
    from lightning.pytorch.loggers import TensorBoardLogger

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


class ValidationImages(Callback):
    """Every ``every_n_epochs`` validation epochs: the confusion matrix (summed over DDP processes) and rank 0's
    misclassified digits as TensorBoard images and text. Drawn with tensor operations: matplotlib figures
    every epoch cost about 15 % of the default run's training time, these well under 1 %."""

    def __init__(self, every_n_epochs: int = 1, max_images: int = 25, scale: int = 24) -> None:
        self.every_n_epochs, self.max_images, self.scale = every_n_epochs, max_images, scale
        self.seconds = 0.0
        self.confusion = MulticlassConfusionMatrix(10, validate_args=False)
        self._wrong: list[tuple[Tensor, int, int, float]] = []

    def _active(self, trainer) -> bool:
        epoch_due = trainer.current_epoch % self.every_n_epochs == 0
        return not trainer.sanity_checking and _tensorboard(trainer) is not None and epoch_due

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.confusion = self.confusion.to(pl_module.device)
        self.confusion.reset()
        self._wrong = []

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if outputs is None or not self._active(trainer):
            return
        start = time.perf_counter()
        images, labels = batch
        confidence, predicted = outputs.softmax(dim=1).max(dim=1)
        self.confusion.update(predicted, labels)
        for i in torch.nonzero(predicted != labels).squeeze(1)[: self.max_images - len(self._wrong)].tolist():
            self._wrong.append((images[i].cpu(), int(labels[i]), int(predicted[i]), float(confidence[i])))
        self.seconds += time.perf_counter() - start

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not self.confusion.update_called or not self._active(trainer):
            return
        start = time.perf_counter()
        writer, step = _tensorboard(trainer), trainer.global_step
        confusion = self.confusion.compute().cpu()  # under DDP: every process takes part in the sum
        errors = confusion.float().fill_diagonal_(0)
        shade = errors / errors.max().clamp(min=1)  # white = no error, red = the most frequent confusion
        image = torch.stack([torch.ones_like(shade), 1 - shade, 1 - shade])
        image[:, torch.arange(10), torch.arange(10)] = torch.tensor([0.85, 1.0, 0.85]).unsqueeze(1)  # diagonal
        image = image.repeat_interleave(self.scale, 1).repeat_interleave(self.scale, 2)
        writer.add_image("val/confusion_matrix", image, step)
        rows = ["| true \\ predicted | " + " | ".join(map(str, range(10))) + " |", "|---" * 11 + "|"]
        rows += [f"| {t} | " + " | ".join(map(str, confusion[t].tolist())) + " |" for t in range(10)]
        writer.add_text("val/confusion_matrix", "\n".join(rows), step)
        if self._wrong:
            from torchvision.utils import make_grid

            digits = to_pixels(torch.stack([image for image, *_ in self._wrong]))
            writer.add_image("val/misclassified", make_grid(digits.clamp(0, 1), nrow=5, pad_value=0.5), step)
            labels_text = ", ".join(f"{true}->{guess} ({confidence:.0%})" for _, true, guess, confidence in self._wrong)
            writer.add_text("val/misclassified", f"row by row, true->predicted (confidence): {labels_text}", step)
        self.seconds += time.perf_counter() - start


class OutputHistograms(Callback):
    """Every ``every_n_steps`` training steps: histograms of the logits and of the softmax
    confidence (max probability) of that step's batch."""

    def __init__(self, every_n_steps: int = 100) -> None:
        self.every_n_steps = every_n_steps
        self.seconds = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        writer = _tensorboard(trainer)
        if writer is None or trainer.global_step % self.every_n_steps != 0:
            return
        start = time.perf_counter()
        logits = outputs["logits"].float()
        if not torch.isfinite(logits).all():  # a histogram refuses them; the module stops the run at its next check
            return
        writer.add_histogram("train/logits", logits, trainer.global_step)
        writer.add_histogram("train/confidence", logits.softmax(dim=1).amax(dim=1), trainer.global_step)
        self.seconds += time.perf_counter() - start


class Throughput(Callback):
    """Training images per second, measured between logging steps and logged as ``train/images_per_s``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start: float | None = None
        self._images = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start, self._images = time.perf_counter(), 0  # validation time is not training time

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        start = time.perf_counter()
        self._images += len(batch[1])
        if trainer.global_step % trainer.log_every_n_steps == 0 and self._start is not None:
            rate = self._images / (start - self._start)
            pl_module.log("train/images_per_s", rate, on_step=True, on_epoch=False)
            self._start, self._images = start, 0
        self.seconds += time.perf_counter() - start
