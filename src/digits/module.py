"""The LightningModule: one batch goes images -> logits -> loss -> metrics -> logger.

It is built from plain config dicts (the ``model``, ``loss``, ``optimizer`` and ``scheduler`` groups)
and stores only those dicts as hyperparameters, so a checkpoint holds tensors and plain values:
``torch.load(path, weights_only=True)`` opens it, and ``DigitsModule.from_checkpoint`` rebuilds the
network from it alone.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from digits.allowlist import check_hyperparameters
from digits.errors import DigitsError


class NonFiniteLossError(DigitsError, RuntimeError):
    """The training loss became NaN or infinite."""


class WeightMismatchError(DigitsError, ValueError):
    """A checkpoint's weights do not fit the network its hyperparameters describe."""


def check_weights_fit(module: nn.Module, state_dict: dict[str, Any], source: str | Path) -> None:
    """Compare names and shapes before ``load_state_dict``, so a checkpoint of another network is
    recognised by what it holds, not by the wording of PyTorch's error."""
    expected = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    given = {key: tuple(getattr(value, "shape", ())) for key, value in state_dict.items()}
    problems = [f"missing {key}" for key in expected if key not in given]
    problems += [f"unexpected {key}" for key in given if key not in expected]
    problems += [
        f"{key} is {list(given[key])}, the network has {list(shape)}"
        for key, shape in expected.items()
        if key in given and given[key] != shape
    ]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise WeightMismatchError(
            f"{source}: its weights do not fit the network its config describes "
            f"(a checkpoint of another model?): {shown}"
        )


def build_loss(config: dict[str, Any]) -> nn.Module:
    """Instantiate a ``loss`` config; a ``weight`` list becomes the tensor nn.CrossEntropyLoss expects, in the
    default float dtype (what ``torch.tensor`` makes of a list of floats; YAML may give integers). It is a
    buffer of the loss module, so it follows the module's dtype (``precision=64``) like the network does."""
    weight = config.get("weight")
    if weight is None:  # also a loss without a weight argument (loss=sigmoid)
        return instantiate(config)
    return instantiate(config, weight=torch.tensor(weight, dtype=torch.get_default_dtype()))


class DigitsModule(L.LightningModule):
    def __init__(
        self,
        model: dict[str, Any],
        loss: dict[str, Any],
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        num_classes: int = 10,
        channels_last: bool = False,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # Plain dicts only (never modules or partials): see the module docstring.
        self.save_hyperparameters(logger=False)
        self.net = instantiate(model)
        # NHWC lets oneDNN pick faster convolution kernels on the CPU (measured 1.3-1.8x, see README).
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = self.net.to(memory_format=self.memory_format)
        self.loss_fn = build_loss(loss)
        self.loss_name = loss["_target_"].rsplit(".", 1)[-1]
        # validate_args=False: the per-step input checks cost more than the accuracy itself, and
        # the inputs are always (N, C) logits and (N) labels from this module.
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.test_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self.val_acc_best = MaxMetric()
        # One blank image: lets Lightning's model summary run the network and count its FLOPs.
        size = model.get("image_size", 28)
        self.example_input_array = torch.zeros(1, 1, size, size)
        self._resumed_state: dict[str, Any] | None = None  # set by on_load_checkpoint

    def forward(self, images: Tensor) -> Tensor:
        return self.net(images.contiguous(memory_format=self.memory_format))

    def on_train_start(self) -> None:
        # The sanity check ran validation on an untrained net: do not let it count as a best.
        self.val_acc.reset()
        self.val_loss.reset()
        self.val_acc_best.reset()
        state, self._resumed_state = self._resumed_state, None
        if state:  # a resumed run: the random streams and best accuracy of the interrupted one
            torch.set_rng_state(state["torch_rng"])
            if state["cuda_rng"] and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            if state["val_acc_best"] is not None:
                self.val_acc_best(state["val_acc_best"])

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        images, labels = batch
        logits = self(images)
        loss = self.loss_fn(logits, labels)
        if not torch.isfinite(loss):
            checkpoint = self.trainer.checkpoint_callback
            kept = (checkpoint.last_model_path or checkpoint.best_model_path) if checkpoint else ""
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at step {self.global_step} (epoch {self.current_epoch}) "
                f"with loss {self.loss_name}; lower optimizer.lr or check the inputs. "
                f"Last good checkpoint: {kept or 'none written yet'} (checkpoints are never overwritten by this stop)."
            )
        self.train_acc(logits, labels)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        # The learning rate is logged by Lightning's LearningRateMonitor (configs/callbacks); the
        # logits go to the callbacks' on_train_batch_end as `outputs` (digits.monitoring's histograms).
        return {"loss": loss, "logits": logits.detach()}

    def _evaluate(
        self, batch: tuple[Tensor, Tensor], loss_metric: MeanMetric, acc_metric: MulticlassAccuracy, stage: str
    ) -> Tensor:
        images, labels = batch
        logits = self(images)
        loss_metric(self.loss_fn(logits, labels), weight=labels.numel())
        acc_metric(logits, labels)
        self.log(f"{stage}/loss", loss_metric, on_step=False, on_epoch=True, prog_bar=True)
        self.log(f"{stage}/acc", acc_metric, on_step=False, on_epoch=True, prog_bar=True)
        return logits.detach()  # handed to callbacks (validation figures)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._evaluate(batch, self.val_loss, self.val_acc, "val")

    def on_validation_epoch_end(self) -> None:
        self.val_acc_best(self.val_acc.compute())
        # the same value in every DDP process (val_acc is synchronised); sync_dist only says so
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # What Lightning does not keep but an exact resume needs: the random streams (dropout) and
        # the best validation accuracy so far (torchmetrics states stay out of the state_dict).
        checkpoint["digits"] = {
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "val_acc_best": self.val_acc_best.compute() if self.val_acc_best.update_called else None,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._resumed_state = checkpoint.get("digits")  # applied in on_train_start, after the sanity check

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_loss, self.test_acc, "test")

    def configure_optimizers(self) -> Any:
        optimizer = instantiate(self.hparams.optimizer, params=self.parameters())
        if not self.hparams.scheduler:
            return optimizer
        config = dict(self.hparams.scheduler)
        interval = config.pop("interval", "step")
        parameters = inspect.signature(get_class(config["_target_"])).parameters
        # Step-counting schedules need the run's length, which only the trainer knows.
        steps = self.trainer.estimated_stepping_batches if interval == "step" else self.trainer.max_epochs
        for name in ("total_steps", "T_max"):
            if name in parameters and config.get(name) is None:
                config[name] = int(steps)
        scheduler = instantiate(config, optimizer=optimizer)
        # name: LearningRateMonitor's TensorBoard tag (else "lr-AdamW", after the optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval, "name": "lr"}}

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location: str | torch.device = "cpu") -> DigitsModule:
        """Rebuild the module from a checkpoint alone, loading it with ``weights_only=True``; its
        hyperparameters must pass ``digits.allowlist`` first (else UnsafeConfigError, nothing built), and
        its weights must fit the network they describe (else WeightMismatchError)."""
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
        hparams = checkpoint["hyper_parameters"]
        check_hyperparameters(hparams, path)
        module = cls(**hparams)
        check_weights_fit(module, checkpoint["state_dict"], path)
        module.load_state_dict(checkpoint["state_dict"])
        return module
