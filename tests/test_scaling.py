"""More than one process: DistributedDataParallel on the CPU (gloo) against one process, and the
cluster launcher config."""

from __future__ import annotations

import io
import json
import math

import pytest
import torch
import torch.nn.functional as F
from harness import QUIET, compose_train, run_script
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_monitoring import logged_confusion_matrices
from torch import Tensor

ONE_EPOCH = ["trainer.max_epochs=1", "logger=none", "seed=11", *QUIET]


def test_ddp_is_the_one_process_recipe_split_over_two(tmp_path, data_dir):
    """trainer=ddp is the same recipe: 2 processes x 128 images with batch norm synchronised take the
    same first step as one process at 256 (weights, and batch norm's running statistics, which the
    first step's forward pass alone decides). Dropout off: each process draws its own masks. (Later steps
    drift apart through float32 rounding as any two runs with another thread count do: Adam amplifies it
    from step 2.) Plain batch norm would differ by ~1.6e-3: test_all_reduce_batch_norm_... holds the layer."""
    from digits.train import train

    first_step = [
        *ONE_EPOCH,
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "test=false",
        "trainer.num_sanity_val_steps=0",
        "model.dropout=0",
        "callbacks=minimal",
    ]
    train(compose_train([*first_step, "data.batch_size=256"], tmp_path / "single", data_dir))  # in this process
    ddp = tmp_path / "ddp"
    # with TensorBoard and the monitoring callbacks (they leave the weights alone): see below
    overrides = ["trainer=ddp", "trainer.devices=2", "data.batch_size=128", "logger=tensorboard", "callbacks=default"]
    result = run_script("train.py", [*first_step, *overrides, f"hydra.run.dir={ddp}"], data_dir, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (result.stdout + result.stderr).count("best val/acc") == 1  # one summary, from rank 0
    assert (ddp / "train_ddp_process_1.log").is_file()
    states = {
        name: torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True) for name in ("single", "ddp")
    }
    assert states["single"]["global_step"] == states["ddp"]["global_step"] == 1

    def largest_difference(running: bool) -> float:
        return max(
            (states["ddp"]["state_dict"][key].double() - value.double()).abs().max().item()
            for key, value in states["single"]["state_dict"].items()
            if value.is_floating_point() and ("running" in key) == running
        )

    # Measured: synchronised 1.2e-5 (statistics) / 8e-8 (weights); a thread-count change alone moves the
    # statistics by 9e-5; unsynchronised 1.6e-3.
    assert largest_difference(running=True) < 2e-4
    assert largest_difference(running=False) < 1e-6

    # The confusion counts rank 0 logs cover both processes' validation batch (2 x 1000 images, not
    # rank 0's 1000), and their diagonal is the synchronised val/acc.
    events = EventAccumulator(str(next(ddp.glob("events.out.tfevents.*"))))
    events.Reload()
    [counts] = logged_confusion_matrices(events).values()
    [accuracy] = events.Scalars("val/acc")
    assert counts.sum() == 2000
    assert counts.trace() / counts.sum() == pytest.approx(accuracy.value, abs=1e-6)


@pytest.mark.slow
def test_each_ddp_process_takes_its_half_of_the_epoch(tmp_path, data_dir):
    """A whole epoch of 6,000 training images (data.val_size=54000): each process takes every other image,
    ceil(3,000 / 128) = 24 steps, as one process at 256 takes; without the split each would take 47."""
    run = tmp_path / "run"
    overrides = ["trainer=ddp", "trainer.devices=2", "data.batch_size=128", "data.val_size=54000"]
    overrides += ["trainer.limit_val_batches=1", "test=false", "callbacks=minimal", f"hydra.run.dir={run}"]
    result = run_script("train.py", [*ONE_EPOCH, *overrides], data_dir, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == math.ceil(math.ceil(6000 / 2) / 128) == math.ceil(6000 / 256) == 24
    assert (run / "checkpoints" / "last.ckpt").is_file()


def _forward_backward(net, images: Tensor, labels: Tensor) -> tuple[Tensor, dict, dict]:
    logits = net(images)
    F.cross_entropy(logits, labels).backward()
    return (
        logits.detach(),
        {k: p.grad for k, p in net.named_parameters()},
        {k: b for k, b in net.named_buffers() if "running" in k},
    )


def _sync_batchnorm_worker(rank: int, images: Tensor, labels: Tensor, port: int, results) -> None:
    """One of two processes: its half of the batch through the network with synchronised and with
    plain batch norm, gradients averaged over the processes as DDP does."""
    import torch.distributed as dist

    from digits.models import DigitCNN
    from digits.sync_batchnorm import SyncBatchNorm

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    state = {}
    for synchronised in (True, False):
        torch.manual_seed(0)
        net = DigitCNN(dropout=0.0).double()
        net = SyncBatchNorm("cpu").apply(net) if synchronised else net
        state[synchronised] = _forward_backward(net, images[rank::2], labels[rank::2])
        for grad in state[synchronised][1].values():
            dist.all_reduce(grad)
            grad /= 2
    buffer = io.BytesIO()  # bytes, not tensors: a shared tensor would vanish with this process
    torch.save(state, buffer)
    results.put((rank, buffer.getvalue()))
    dist.destroy_process_group()


@pytest.mark.slow
def test_all_reduce_batch_norm_is_one_process_batch_norm_in_float64(data_dir):
    """The CPU layer behind trainer=ddp, exactly: two gloo processes with 128 real MNIST images each give
    one process's logits, gradients and running statistics over all 256, to float64 rounding; plain
    batch norm in the same two processes does not."""
    import socket

    import torch.multiprocessing as mp

    from digits.data import load_mnist, normalize
    from digits.models import DigitCNN

    images, labels = load_mnist(data_dir, train=True, download=False)
    images, labels = normalize(images[:256]).double(), labels[:256]
    torch.manual_seed(0)
    logits, grads, buffers = _forward_backward(DigitCNN(dropout=0.0).double(), images, labels)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    results = context.Queue()
    workers = [
        context.Process(target=_sync_batchnorm_worker, args=(rank, images, labels, port, results)) for rank in range(2)
    ]
    for worker in workers:
        worker.start()
    states = dict(
        (rank, torch.load(io.BytesIO(state), weights_only=True))
        for rank, state in (results.get(timeout=300) for _ in workers)
    )
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0

    def largest_difference(synchronised: bool) -> float:
        differences = []
        for rank, state in states.items():
            rank_logits, rank_grads, rank_buffers = state[synchronised]
            differences.append((rank_logits - logits[rank::2]).abs().max().item())
            differences += [(rank_grads[k] - g).abs().max().item() / g.abs().max().item() for k, g in grads.items()]
            differences += [(rank_buffers[k] - b).abs().max().item() for k, b in buffers.items()]
        return max(differences)

    assert largest_difference(synchronised=True) < 1e-10
    assert largest_difference(synchronised=False) > 1e-3


def test_slurm_launcher_config_composes_for_a_ddp_sweep():
    from harness import CONFIG_DIR
    from hydra import compose, initialize_config_dir
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    overrides = [
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "trainer=ddp",
        "trainer.devices=4",
        "trainer.num_nodes=2",
    ]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"] == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert get_class(launcher["_target_"]).__name__ == "SlurmLauncher"  # the plugin is installed
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (2, 4, 4)
    assert launcher["partition"] == "gpu" and launcher["max_num_timeout"] == 0
    assert cfg.trainer.strategy == "ddp"


@pytest.mark.slow
def test_a_sweep_runs_through_the_submitit_plugin(tmp_path, data_dir):
    """The SLURM launcher's code path with submitit's local executor: each sweep point is pickled,
    run as its own process by submitit and writes its own run folder. Only sbatch is not exercised."""
    sweep = tmp_path / "sweep"
    result = run_script(
        "train.py",
        [
            "-m",
            "hydra/launcher=submitit_local",
            "loss=cross_entropy,nll",
            "debug=limit",
            "logger=none",
            f"hydra.sweep.dir={sweep}",
            *QUIET,
        ],
        data_dir,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Submitit 'local' sweep output dir" in result.stdout + result.stderr
    runs = sorted(p for p in sweep.iterdir() if p.name[:2] in ("0_", "1_"))
    metrics = [json.loads((run / "metrics.json").read_text()) for run in runs]
    assert [m["loss"] for m in metrics] == ["cross_entropy", "nll"]  # the choices, recorded in each job
    assert all(m["steps"] == 20 and m["test/acc"] > 0.5 for m in metrics)
    assert len([p for p in (sweep / ".submitit").iterdir() if p.name.isdigit()]) == 2  # submitit's job folders
