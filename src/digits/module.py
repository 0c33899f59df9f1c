"""The LightningModule: one batch goes images -> logits -> loss -> metrics -> logger.

It stores only plain config dicts as hyperparameters, so ``torch.load(path, weights_only=True)`` opens a
checkpoint and ``DigitsModule.from_checkpoint`` rebuilds the network from it alone. Every way of loading a
checkpoint passes one gate, in the class so that no entry point can forget it: the allow-list before
anything is built, then the weights (names, shapes, kinds, finite values).
"""

from __future__ import annotations

import functools
import inspect
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from torch import Tensor, nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from digits.allowlist import check_hyperparameters
from digits.checkpoints import CheckpointError, read_checkpoint, rebase_callback_state
from digits.errors import DigitsError
from digits.precision import at_least_float32
from digits.schedule import describe

log = logging.getLogger("digits")


class NonFiniteLossError(DigitsError, RuntimeError):
    """The training loss became NaN or infinite."""


class WeightMismatchError(DigitsError, ValueError):
    """A checkpoint's weights do not fit the network its hyperparameters describe."""


def network_overrides(checkpoint: dict[str, Any], model: dict[str, Any]) -> str:
    """The hint of a WeightMismatchError: the ``model.<key>=<value>`` overrides that rebuild the checkpoint's
    network, from its saved hyperparameters (empty when they do not say)."""
    saved = (checkpoint.get("hyper_parameters") or {}).get("model")
    if not isinstance(saved, dict):
        return ""
    if saved.get("_target_") != model.get("_target_"):
        return f"; it holds a {saved.get('_target_')}, the config builds a {model.get('_target_')}"
    changes = [f"model.{key}={override_value(value)}" for key, value in saved.items() if model.get(key) != value]
    return f"; its network was built with {' '.join(changes)}: add that to the command" if changes else ""


def override_value(value: Any) -> str:
    """A plain value as a Hydra override writes it: lists without spaces or quotes, [stride,pool,pool]."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(item) for item in value) + "]"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def check_weights_fit(module: nn.Module, state_dict: dict[str, Any], source: str | Path, hint: str = "") -> None:
    """Compare names and shapes before ``load_state_dict``: a checkpoint of another network is recognised by
    what it holds, not by the wording of PyTorch's error."""
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
            f"(a checkpoint of another model?): {shown}{hint}"
        )


# The floating dtypes a network of this project is trained in (trainer.precision 16/bf16/32/64 "true").
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_weight_kinds(module: nn.Module, state_dict: dict[str, Tensor], source: str | Path) -> None:
    """Each tensor dense and of the network's dtype there (any training dtype for a floating one): a complex
    tensor would hide NaN from the finite check, and float8, sparse or quantized ones make torch raise."""
    expected = module.state_dict()
    problems = []
    for key, value in state_dict.items():
        built = expected.get(key)
        if built is None:
            continue
        if value.layout != torch.strided or value.is_quantized:
            problems.append(f"{key} is {value.layout}{' quantized' if value.is_quantized else ''}, not dense")
        elif not (value.dtype == built.dtype or (built.dtype in _FLOAT_DTYPES and value.dtype in _FLOAT_DTYPES)):
            problems.append(f"{key} is {value.dtype}, the network has {built.dtype}")
    if problems:
        raise CheckpointError(
            f"{source}: its weights are not of the kinds the network holds ({'; '.join(problems[:3])}"
            f"{'; ...' if len(problems) > 3 else ''}): not a checkpoint this project wrote; use one of its own"
        )


def check_weights(module: nn.Module, state_dict: Any, source: str | Path, hint: str = "") -> None:
    """A dict of tensors that fits the network, of its kinds, and holding only finite values."""
    if not isinstance(state_dict, dict) or not all(
        isinstance(key, str) and isinstance(value, Tensor) for key, value in state_dict.items()
    ):
        raise CheckpointError(f"{source}: its state_dict is a {type(state_dict).__name__}, not a dict of tensors")
    check_weights_fit(module, state_dict, source, hint)
    check_weight_kinds(module, state_dict, source)
    broken = [key for key, value in state_dict.items() if value.is_floating_point() and not value.isfinite().all()]
    if broken:
        raise CheckpointError(
            f"{source}: its weights are not finite (NaN or infinite values in {', '.join(broken[:3])}"
            f"{', ...' if len(broken) > 3 else ''}): the training had diverged; use an earlier checkpoint"
        )


def check_optimizer_state(module: nn.Module, checkpoint: dict[str, Any], source: str | Path) -> None:
    """A checkpoint's optimizer state fits this network's parameters (each tensor of its parameter's shape, or
    a scalar), checked before anything is written: torch would fail at the first step, mid-run."""
    problem = _optimizer_state_problem(list(module.parameters()), checkpoint.get("optimizer_states") or [])
    if problem:
        raise CheckpointError(f"{source}: its optimizer state does not fit the network: {problem}")


def _optimizer_state_problem(parameters: list[Tensor], states: Any) -> str | None:
    if not isinstance(states, list):
        return f"optimizer_states is a {type(states).__name__}"
    for number, optimizer in enumerate(states):
        entries = optimizer.get("state") if isinstance(optimizer, dict) else None
        if not isinstance(entries, dict):
            return f"optimizer_states[{number}] holds no 'state' dict"
        for index, state in entries.items():
            if not (isinstance(index, int) and 0 <= index < len(parameters) and isinstance(state, dict)):
                return f"optimizer_states[{number}] has an entry {str(index)[:40]!r} for no parameter of the network"
            shape = parameters[index].shape
            wrong = [n for n, v in state.items() if isinstance(v, Tensor) and v.dim() > 0 and v.shape != shape]
            if wrong:
                where = f"optimizer_states[{number}] entry {index}"
                return f"{where}: {wrong[0]} is not of the parameter's shape {list(shape)}"
    return None


def _check_resume_state(state: Any, source: str | Path) -> None:
    """The ``digits`` entry of on_save_checkpoint: random streams and a best accuracy, nothing else."""
    if state is None:
        return
    ok = (
        isinstance(state, dict)
        and isinstance(state.get("torch_rng"), Tensor)
        and state["torch_rng"].dtype == torch.uint8
        and isinstance(state.get("cuda_rng"), list)
        and all(isinstance(t, Tensor) and t.dtype == torch.uint8 for t in state["cuda_rng"])
        and (state.get("val_acc_best") is None or isinstance(state["val_acc_best"], (Tensor, float)))
    )
    if not ok:
        raise CheckpointError(
            f"{source}: its 'digits' entry is not the random state and best accuracy this project saves"
        )


def build_loss(config: dict[str, Any]) -> nn.Module:
    """Instantiate a ``loss`` config; a ``weight`` list becomes a tensor of the default float dtype (YAML may
    give integers), a buffer that follows the module's dtype like the network does."""
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
        self._image_size = model.get("image_size", 28)
        self._resumed_state: dict[str, Any] | None = None  # set by on_load_checkpoint
        self._first_non_finite: tuple[Tensor, Tensor, Tensor] | None = None  # see _remember_non_finite
        self._resumed_schedule: tuple[Any, dict[str, Any]] | None = None  # (checkpoint, scheduler state) on fit

    @property
    def example_input_array(self) -> Tensor:
        """One blank image, of the network's dtype: lets Lightning's model summary run the network and count
        its FLOPs, also after 64-true made the network float64."""
        return torch.zeros(1, 1, self._image_size, self._image_size, dtype=self.dtype, device=self.device)

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

    def _loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The loss outside autocast, of logits at least float32, whatever ``trainer.precision``: under
        bf16-mixed every loss form gets the same float32 numbers, so that they still train alike
        (docs/losses.md); float64 (64-true) stays float64."""
        with torch.autocast(logits.device.type, enabled=False):
            return self.loss_fn(at_least_float32(logits), labels)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> dict[str, Tensor]:
        images, labels = batch
        logits = at_least_float32(self(images))
        loss = self._loss(logits, labels)
        self._remember_non_finite(loss)
        if (self.global_step + 1) % self.trainer.log_every_n_steps == 0:
            self._stop_on_non_finite_loss()
        self.train_acc(logits, labels)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        # The learning rate is logged by Lightning's LearningRateMonitor (configs/callbacks); the
        # logits go to the callbacks' on_train_batch_end as `outputs` (digits.monitoring's histograms).
        return {"loss": loss, "logits": logits.detach()}

    def _remember_non_finite(self, loss: Tensor) -> None:
        """Keep the first non-finite loss, its step and epoch, on the loss's device (reading it every step would
        make the host wait for the GPU); ``_stop_on_non_finite_loss`` reads it before any checkpoint is written."""
        if self._first_non_finite is None:
            none_yet = torch.full((), -1, device=loss.device)
            self._first_non_finite = (none_yet, loss.detach().new_zeros(()), none_yet)
        step, value, epoch = self._first_non_finite
        new = ~torch.isfinite(loss.detach()) & (step < 0)
        step = torch.where(new, self.global_step, step)
        self._first_non_finite = (
            step,
            torch.where(new, loss.detach(), value),
            torch.where(new, self.current_epoch, epoch),
        )

    def _stop_on_non_finite_loss(self) -> None:
        if self._first_non_finite is None or self._first_non_finite[0].item() < 0:
            return
        step, value, epoch = (tensor.item() for tensor in self._first_non_finite)
        checkpoint = self.trainer.checkpoint_callback
        kept = (checkpoint.last_model_path or checkpoint.best_model_path) if checkpoint else ""
        raise NonFiniteLossError(
            f"training loss is {value} at step {step} (epoch {epoch}) "
            f"with loss {self.loss_name}; lower optimizer.lr or check the inputs. "
            f"Last good checkpoint: {kept or 'none written yet'} (checkpoints are never overwritten by this stop)."
        )

    def on_validation_start(self) -> None:
        self._stop_on_non_finite_loss()

    def on_train_epoch_end(self) -> None:
        self._stop_on_non_finite_loss()

    def _evaluate(
        self, batch: tuple[Tensor, Tensor], loss_metric: MeanMetric, acc_metric: MulticlassAccuracy, stage: str
    ) -> Tensor:
        images, labels = batch
        # in float32 also under bf16-mixed: the accuracy that picks the best checkpoint, and the test accuracy,
        # are the ones evaluate.py and the exported model give
        with torch.autocast(images.device.type, enabled=False):
            logits = at_least_float32(self(images))
        loss_metric(self._loss(logits, labels), weight=labels.numel())
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
        self._stop_on_non_finite_loss()  # before anything is written
        # What Lightning does not keep but an exact resume needs: the random streams (dropout) and
        # the best validation accuracy so far (torchmetrics states stay out of the state_dict).
        checkpoint["digits"] = {
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "val_acc_best": self.val_acc_best.compute() if self.val_acc_best.update_called else None,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The Trainer's way in (``ckpt_path=``): ``from_checkpoint``'s checks, and on ``fit`` the callbacks'
        paths re-derived from the checkpoint's folder."""
        trainer = self._trainer
        source = trainer.ckpt_path if trainer is not None and trainer.ckpt_path else "the checkpoint"
        check_hyperparameters(checkpoint.get("hyper_parameters"), source, self.hyperparameter_keys())
        check_weights(self, checkpoint.get("state_dict"), source)
        _check_resume_state(checkpoint.get("digits"), source)
        if trainer is not None and trainer.state.fn == TrainerFn.FITTING and trainer.ckpt_path:
            self._adopt_callback_state(checkpoint, Path(trainer.ckpt_path).resolve().parent, source)
            schedulers = checkpoint.get("lr_schedulers") or [{}]
            self._resumed_schedule = (source, schedulers[0] if isinstance(schedulers[0], dict) else {})
        self._resumed_state = checkpoint.get("digits")  # applied in on_train_start, after the sanity check

    def _adopt_callback_state(self, checkpoint: dict[str, Any], folder: Path, source: str | Path) -> None:
        """A ModelCheckpoint continues the state of a checkpoint from its own folder (a resume); another
        folder's is dropped, so a new run never deletes or names the other run's files."""
        rebase_callback_state(checkpoint, folder, source)
        own = {callback.state_key: callback for callback in self.trainer.callbacks}
        states = checkpoint.get("callbacks") or {}
        for key in list(states):
            callback = own.get(key)
            if isinstance(callback, ModelCheckpoint) and callback.dirpath != states[key]["dirpath"]:
                del states[key]

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_loss, self.test_acc, "test")

    def configure_optimizers(self) -> Any:
        optimizer = instantiate(self.hparams.optimizer, params=self.parameters())
        if not self.hparams.scheduler:
            if self._trainer is not None and self.trainer.is_global_zero:
                for line in describe(optimizer, None, self.hparams.optimizer, None):
                    log.info(line)
            return optimizer
        config = dict(self.hparams.scheduler)
        interval = config.pop("interval", "step")
        parameters = inspect.signature(get_class(config["_target_"])).parameters
        # Step-counting schedules need the run's length, which only the trainer knows.
        steps = self.trainer.estimated_stepping_batches if interval == "step" else self.trainer.max_epochs
        for name in ("total_steps", "T_max"):
            if name in parameters and config.get(name) is None:
                config[name] = int(steps)
            saved = (self._resumed_schedule or (None, {}))[1].get(name)
            if name in parameters and saved is not None and saved != config[name]:
                # the checkpoint's scheduler state would replace this length, and stepping past it fails mid-run
                raise CheckpointError(
                    f"{self._resumed_schedule[0]}: its {config['_target_'].rsplit('.', 1)[-1]} schedule spans "
                    f"{saved} {interval}s and this run {config[name]}: a schedule cannot be continued over another "
                    "length. Keep the trainer and data settings of the run that wrote it, or use scheduler=none"
                )
        scheduler = instantiate(config, optimizer=optimizer)
        if self._trainer is not None and self.trainer.is_global_zero:  # the schedule as built, in the run's log
            for line in describe(optimizer, scheduler, self.hparams.optimizer, steps if interval == "step" else None):
                log.info(line)
        # name: LearningRateMonitor's TensorBoard tag (else "lr-AdamW", after the optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval, "name": "lr"}}

    @classmethod
    @functools.cache
    def hyperparameter_keys(cls) -> tuple[str, ...]:
        """The constructor's arguments: the only keys a checkpoint's hyperparameters may have."""
        return tuple(name for name in inspect.signature(cls.__init__).parameters if name != "self")

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, map_location: str | torch.device = "cpu", **overrides: Any
    ) -> DigitsModule:
        """Rebuild the module from a checkpoint alone (``weights_only=True``); its hyperparameters (with
        ``overrides``) pass the allow-list first. Anything refused is a DigitsError."""
        checkpoint = read_checkpoint(path, map_location)
        hparams = checkpoint.get("hyper_parameters")
        if hparams is None:
            raise CheckpointError(f"{path} is a checkpoint, but not one of this project: it lacks 'hyper_parameters'")
        if isinstance(hparams, dict):
            hparams = {**hparams, **overrides}
        check_hyperparameters(hparams, path, cls.hyperparameter_keys())
        try:
            module = cls(**hparams)
        except Exception as error:  # allow-listed classes only: what they refuse is the checkpoint's fault
            first_line = (str(error).splitlines() or [""])[0][:200]
            raise CheckpointError(
                f"{path}: its hyperparameters describe a network its classes refuse "
                f"({type(error).__name__}: {first_line})"
            ) from error
        check_weights(module, checkpoint.get("state_dict"), path)
        module.load_state_dict(checkpoint["state_dict"])
        weight = next(iter(checkpoint["state_dict"].values()), None)  # as Lightning's loader: on the weights' device
        return module if weight is None else module.to(weight.device)

    @classmethod
    def load_from_checkpoint(  # type: ignore[override]
        cls,
        checkpoint_path: str | Path,
        map_location: Any = None,
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        weights_only: bool | None = None,
        **kwargs: Any,
    ) -> DigitsModule:
        """Lightning's loader, made ``from_checkpoint``; ``hparams_file``, ``strict=False`` and
        ``weights_only=False`` would step around its checks and are refused."""
        if hparams_file is not None or strict is False or weights_only is False:
            raise CheckpointError(
                "DigitsModule.load_from_checkpoint loads a checkpoint alone, safely and strictly: "
                "hparams_file=, strict=False and weights_only=False are not supported"
            )
        return cls.from_checkpoint(checkpoint_path, map_location=map_location or "cpu", **kwargs)
