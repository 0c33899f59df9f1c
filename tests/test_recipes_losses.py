"""Every recipe (configs/experiment/*.yaml, and the default) with every loss (configs/loss/*.yaml): each pair
trains a few steps, or is refused with one DigitsError before the run folder holds anything. The lists are
read from configs/, so a new recipe or loss is crossed without a change here. Tiny in-process runs: the
whole cross stays near half a minute on 2 cores."""

from __future__ import annotations

import pytest
import torch
from harness import CONFIG_DIR, TINY_RUN, compose_train

from digits.errors import DigitsError
from digits.sigmoid import SigmoidLoss
from digits.train import train

RECIPES = [None, *sorted(path.stem for path in (CONFIG_DIR / "experiment").glob("*.yaml"))]
LOSSES = sorted(path.stem for path in (CONFIG_DIR / "loss").glob("*.yaml"))
# (recipe, loss) pairs refused on purpose, with the refusal's message: none today, every pair trains
# (experiment=fast's label smoothing works with loss=sigmoid too: digits.sigmoid).
REFUSED: dict[tuple[str | None, str], str] = {}
TINY = [*TINY_RUN, "trainer.check_val_every_n_epoch=1"]  # a recipe may validate less often


def on_this_machine(recipe: str | None) -> list[str]:
    """A GPU recipe runs its loss on the CPU where there is no GPU (the same precision and settings): the
    loss is what this cross checks, not the device."""
    if recipe is None or torch.cuda.is_available():
        return []
    with_gpu = compose_train([f"experiment={recipe}"], CONFIG_DIR, CONFIG_DIR)
    return ["trainer.accelerator=cpu", "data.device=cpu"] if with_gpu.data.device != "cpu" else []


def test_the_cross_covers_every_recipe_and_loss():
    assert {"fast", "fast_gpu"} <= set(RECIPES) and {"cross_entropy", "sigmoid"} <= set(LOSSES)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("recipe", RECIPES)
@pytest.mark.slow
def test_every_recipe_trains_with_every_loss_or_refuses_it_cleanly(recipe, loss, tmp_path, data_dir):
    run_dir = tmp_path / "run"
    chosen = [f"experiment={recipe}"] if recipe else []
    cfg = compose_train([*chosen, f"loss={loss}", *TINY, *on_this_machine(recipe)], run_dir, data_dir)
    threads = torch.get_num_threads()
    try:
        if (recipe, loss) in REFUSED:
            with pytest.raises(DigitsError, match=REFUSED[recipe, loss]):
                train(cfg)
            assert not run_dir.exists() or not any(run_dir.iterdir())  # refused before anything was written
            return
        metrics, _ = train(cfg)
    finally:
        torch.set_num_threads(threads)  # experiment=fast sets threads=1 in this process
    assert metrics.steps == 2 and metrics.val_acc_best == metrics.val_acc_best  # trained and validated (not NaN)


def test_the_sigmoid_loss_smooths_its_one_hot_targets():
    """y * (1 - eps) + eps / C, the convention of cross-entropy's smoothing (digits.sigmoid)."""
    logits, labels = torch.randn(4, 10), torch.tensor([0, 3, 9, 3])
    eps = 0.1
    targets = torch.nn.functional.one_hot(labels, 10).float() * (1 - eps) + eps / 10
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    assert SigmoidLoss(label_smoothing=eps)(logits, labels) == pytest.approx(expected.item(), rel=1e-6)
    assert targets[0, 0] == pytest.approx(0.91) and targets[0, 1] == pytest.approx(0.01)
    assert SigmoidLoss()(logits, labels) != SigmoidLoss(label_smoothing=eps)(logits, labels)


def test_a_loss_key_its_class_does_not_take_is_refused_before_anything_is_written(tmp_path, data_dir):
    from digits.config import ConfigError

    cfg = compose_train(["loss=sigmoid", "+loss.ignore_index=-100"], tmp_path / "run", data_dir)
    with pytest.raises(ConfigError, match=r"SigmoidLoss.*unexpected keyword argument 'ignore_index'"):
        train(cfg)
    assert not (tmp_path / "run").exists()
