"""The one training loop: its schedule, its device choice, and two real processes over gloo training a
policy and the world model to the same step, rank 0's weights in the checkpoint."""

from __future__ import annotations

import json
import math
import os
import socket
import time

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from test_policy import TINY_ACT
from test_world_model_train import TINY

from hiwm.data.collect import CollectConfig, collect
from hiwm.training import Budget, autocast, autocast_dtype, pick_device, ranks_started, stop_ranks, train_loop


def test_warmup_then_cosine_along_whichever_limit_ends_first():
    b = Budget(steps=100, lr=1.0, warmup=10)
    assert [b.lr_at(s) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]
    assert b.lr_at(10) == 1.0 and b.lr_at(55) == pytest.approx(0.5) and b.lr_at(100) == pytest.approx(0.0)
    assert b.lr_at(20, time_fraction=0.5) == pytest.approx(b.lr_at(20))  # no time budget: time is ignored
    timed = Budget(steps=100, minutes=1.0, lr=1.0, warmup=10, final_lr=0.1)
    assert timed.lr_at(20, time_fraction=0.5) == pytest.approx(0.55)  # time is further along than steps
    assert timed.lr_at(90, time_fraction=0.1) == pytest.approx(timed.lr_at(90))  # steps are further along
    assert timed.lr_at(20, time_fraction=1.0) == pytest.approx(0.1)  # the floor
    only_time = Budget(minutes=2.0, lr=2.0)
    assert only_time.lr_at(1000, 0.0) == 2.0 and only_time.lr_at(0, 0.5) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        Budget(steps=-1)


def test_device_and_autocast_follow_the_config_without_a_gpu():
    assert pick_device("auto", 1, cuda_available=True) == torch.device("cuda", 1)
    assert pick_device("auto", 1, cuda_available=False) == torch.device("cpu")
    assert pick_device("cpu", 0, cuda_available=True) == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        pick_device("cuda", 0, cuda_available=False)
    with pytest.raises(ValueError, match="device must be"):
        pick_device("tpu")
    assert autocast_dtype(torch.device("cuda", 0)) == torch.bfloat16
    assert autocast_dtype(torch.device("cpu")) is None
    with autocast(torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32


def test_the_loop_trains_only_its_params_and_stops_at_the_first_limit():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    trained = list(model[1].parameters())
    opt = torch.optim.SGD(trained, lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    seen = []

    def on_step(s):
        seen.append((s.step, s.done, s.lr))
        return {"val": 1.0}

    def loss():
        return torch.nn.functional.mse_loss(model(x), y)

    budget = Budget(steps=5, lr=0.1, warmup=2)
    done = train_loop("t", model, loss, opt, budget, start=1, params=trained, on_step=on_step)
    assert done.step == 5 and done.steps == 4 and math.isfinite(done.loss)
    assert [s for s, _, _ in seen] == [2, 3, 4, 5] and [d for _, d, _ in seen] == [False, False, False, True]
    assert seen[0][2] == pytest.approx(0.1)  # step index 1 of a 2-step warmup
    assert torch.equal(before[0], model[0].weight) and not torch.equal(before[2], model[1].weight)
    assert all(p.requires_grad for p in model.parameters())  # unfrozen again

    t0 = time.monotonic()
    timed = train_loop("t", model, loss, opt, Budget(steps=10**9, minutes=0.01, lr=0.1), progress=False)
    assert 0.5 < time.monotonic() - t0 < 60 and 0 < timed.steps < 10**9
    assert train_loop("t", model, loss, opt, Budget(lr=0.1)).steps == 0  # unbounded: nothing runs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, kind: str, root: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    if kind == "policy":
        from hiwm.policy.train import PolicyTrainConfig, train

        cfg = PolicyTrainConfig(
            backbone="act", data=[f"{root}/ds"], out=f"{root}/out", steps=10**6, max_minutes=0.08, batch_size=4,
            val_every=10**6, val_fraction=0.34, threads=1, model=TINY_ACT, device="cpu",
        )  # fmt: skip
        trained = train(cfg)
        report = {"step": trained.step}
    else:
        from hiwm.world_model.config import ModelConfig, ProbeConfig, WorldModelTrainConfig
        from hiwm.world_model.train import train

        cfg = WorldModelTrainConfig(
            steps=10**6, max_minutes=0.08, batch=2, rollout=2, horizons=(1, 2), val_windows=1, val_every=10**6,
            checkpoint_every=10**6, probe_steps=2, probe_calibration=0, ae_minutes=0.03, ae_batch=2,
        )  # fmt: skip
        model_cfg = ModelConfig(**json.loads(TINY))
        trained = train([f"{root}/ds"], f"{root}/out", model_cfg, cfg, ProbeConfig(image_size=96), progress=False)
        report = {"step": trained.step, "ae_steps": trained.metrics["autoencoder"]["steps"]}
    state = {k: v.detach().cpu().contiguous() for k, v in trained.model.state_dict().items()}
    save_file(state, f"{root}/rank{rank}.safetensors")
    with open(f"{root}/rank{rank}.json", "w") as f:
        json.dump(report, f)


def _uneven_worker(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world)
    )
    torch.set_num_threads(1)
    torch.manual_seed(rank)  # different starting weights: DDP must hand every rank rank 0's
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    with ranks_started("cpu") as ranks:
        # rank 0 may train for 0.6 s, rank 1 for an hour: rank 1 must stop when rank 0 does
        budget = Budget(steps=10**9, minutes=0.01 if rank == 0 else 60.0, lr=0.01)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        done = train_loop("t", model, lambda: ((model(x) - y) ** 2).mean(), opt, budget, ranks, progress=False)
        stop_ranks(ranks)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, f"{root}/rank{rank}.safetensors")
    with open(f"{root}/rank{rank}.json", "w") as f:
        json.dump({"step": done.step}, f)


def test_the_rank_whose_budget_ends_first_stops_every_rank(tmp_path):
    reports = _two_ranks(None, tmp_path, _uneven_worker)
    assert reports[0]["step"] == reports[1]["step"] > 0
    rank0, rank1 = (load_file(tmp_path / f"rank{r}.safetensors") for r in range(2))
    assert _same(rank0, rank1)


def _two_ranks(kind: str | None, root, worker=None) -> list[dict]:
    args = (2, _free_port(), kind, str(root)) if worker is None else (2, _free_port(), str(root))
    ctx = mp.start_processes(worker or _worker, args, nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + 600
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            raise AssertionError("the ranks did not finish (a rank stopped at another step?)")
    return [json.loads((root / f"rank{r}.json").read_text()) for r in range(2)]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.timeout(900)
def test_two_gloo_ranks_train_a_policy_to_the_same_step_and_rank_0_saves(tmp_path):
    from hiwm.policy import load_model

    collect(CollectConfig(episodes=3, seed=1000, max_steps=12), tmp_path / "ds")
    reports = _two_ranks("policy", tmp_path)
    assert reports[0]["step"] == reports[1]["step"] > 0  # stopped by the time budget, together
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["step"] == reports[0]["step"]
    rank0, rank1 = (load_file(tmp_path / f"rank{r}.safetensors") for r in range(2))
    assert _same(rank0, rank1)  # DDP kept the ranks' weights equal
    raw = load_file(tmp_path / "out" / "train_state.safetensors")
    saved = {k.removeprefix("model."): v for k, v in raw.items() if k.startswith("model.")}
    assert _same(saved, rank0)
    assert load_model(tmp_path / "out").cfg.dim == TINY_ACT["dim"]  # the EMA weights load


@pytest.mark.timeout(900)
def test_two_gloo_ranks_train_the_world_model_to_the_same_step_and_rank_0_saves(tmp_path):
    from hiwm.world_model import checkpoint as ckpt_io

    collect(CollectConfig(episodes=3, max_steps=25, seed=0, noise=1.0), tmp_path / "ds")
    reports = _two_ranks("world_model", tmp_path)
    assert reports[0] == reports[1] and reports[0]["step"] > 0 and reports[0]["ae_steps"] > 0
    saved, model, probe = ckpt_io.load(tmp_path / "out")
    assert saved.step == reports[0]["step"] and probe is not None
    rank0, rank1 = (load_file(tmp_path / f"rank{r}.safetensors") for r in range(2))
    assert _same(rank0, rank1)
    assert _same({k: v.contiguous() for k, v in model.state_dict().items()}, rank0)
