"""One budgeted training loop for every model (policies, the world model and its phases, the probe).

A model supplies its batch loss, the parameters it trains and what to validate and save; the loop
does the rest the same way for all: a learning rate warming up linearly, then decaying on a cosine
over whichever of the step limit or the wall-clock budget runs out first; gradient clipping; bf16
autocast on CUDA; under ``torchrun`` (``WORLD_SIZE`` > 1) DDP over the process group (nccl on CUDA,
gloo on CPU) with the stop decision all-reduced, so every rank stops at the same step; the
validate-and-save hook on rank 0 only; progress through :class:`hiwm.progress.BudgetBar`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from hiwm.progress import BudgetBar

DEVICES = ("auto", "cpu", "cuda")


def pick_device(name: str = "auto", local_rank: int = 0, cuda_available: bool | None = None) -> torch.device:
    """The device to train on: ``auto`` is this rank's GPU when CUDA is there, else the CPU; ``cuda``
    without CUDA is an error rather than a silent CPU run."""
    if name not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    if name == "cuda" and not cuda:
        raise ValueError("device 'cuda' asked for, but CUDA is not available")
    return torch.device("cuda", local_rank) if name != "cpu" and cuda else torch.device("cpu")


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 on CUDA (no loss scaling needed, unlike fp16); None (float32) on the CPU, where bf16
    matmuls are slower than float32 ones on most machines."""
    return torch.bfloat16 if device.type == "cuda" else None


def autocast(device: torch.device) -> AbstractContextManager[Any]:
    """The mixed-precision context for forward passes on ``device``."""
    dtype = autocast_dtype(device)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


@dataclass(frozen=True)
class Ranks:
    """Where this process trains: its rank among ``world`` processes and its device."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        """Rank 0: validates, logs and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def start_ranks(device: str = "auto") -> Ranks:
    """This process's ranks; under torchrun also joins the process group (nccl on CUDA, else gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local)
    if world <= 1:
        return Ranks(device=dev)
    if not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size(), dev)


def stop_ranks(ranks: Ranks) -> None:
    """Wait for every rank, then leave the process group (a no-op in a single process or once left)."""
    if ranks.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


@contextmanager
def ranks_started(device: str = "auto") -> Iterator[Ranks]:
    """:func:`start_ranks` for a block, :func:`stop_ranks` after it (an error leaves the group too)."""
    ranks = start_ranks(device)
    try:
        yield ranks
    finally:
        if ranks.distributed and dist.is_initialized():
            dist.destroy_process_group()  # no barrier: the other ranks may never reach it


@dataclass(frozen=True)
class Budget:
    """How long to train and the learning-rate schedule. ``steps`` is the step count to reach (a
    resumed run counts from its checkpoint's), ``minutes`` the wall time of this run; 0 means no
    such limit, and with neither nothing runs. The rate rises linearly over ``warmup`` steps, then
    follows a cosine from ``lr`` down to ``final_lr`` times ``lr``, along whichever limit is nearer
    its end."""

    steps: int = 0
    minutes: float = 0.0
    lr: float = 1e-3
    warmup: int = 0
    final_lr: float = 0.0
    grad_clip: float = 0.0  # max gradient norm; 0: no clipping

    def __post_init__(self) -> None:
        if self.steps < 0 or self.minutes < 0 or self.warmup < 0 or self.grad_clip < 0:
            raise ValueError("steps, minutes, warmup and grad_clip must be >= 0")
        if self.lr <= 0 or not 0.0 <= self.final_lr <= 1.0:
            raise ValueError(f"lr must be > 0 and final_lr in [0, 1], got {self.lr}, {self.final_lr}")

    @property
    def bounded(self) -> bool:
        return self.steps > 0 or self.minutes > 0

    def lr_at(self, step: int, time_fraction: float = 0.0) -> float:
        """The rate for step ``step`` (0-based) when ``time_fraction`` of the time budget is used."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = time_fraction if self.minutes > 0 else 0.0
        if self.steps:
            progress = max(progress, (step - self.warmup) / max(1, self.steps - self.warmup))
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, max(0.0, progress))))
        return self.lr * (self.final_lr + (1 - self.final_lr) * cosine)


@dataclass
class TrainStep:
    """What the validate-and-save hook sees after each optimiser step (on rank 0)."""

    step: int  # steps done, counting a resumed run's
    losses: dict[str, torch.Tensor]
    lr: float
    minutes: float
    done: bool  # the last step of the loop: every rank stops here

    @property
    def loss(self) -> float:
        return float(self.losses["loss"].detach())


@dataclass
class TrainResult:
    step: int  # the step reached
    steps: int  # the steps this run took
    minutes: float
    loss: float  # the last batch's (NaN when no step ran)


LossFn = Callable[[], "torch.Tensor | dict[str, torch.Tensor]"]


class _Objective(torch.nn.Module):
    """The batch loss as the forward of a module holding the model, so DDP hooks the gradients of
    whatever model methods the loss calls (an encoder here, a rollout there), not just ``forward``."""

    def __init__(self, model: torch.nn.Module, batch_loss: LossFn) -> None:
        super().__init__()
        self.model = model
        self._batch_loss = batch_loss

    def forward(self) -> dict[str, torch.Tensor]:
        out = self._batch_loss()
        return out if isinstance(out, dict) else {"loss": out}


def _agree(stop: bool, time_fraction: float, ranks: Ranks) -> tuple[bool, float]:
    """Whether any rank stops, and the furthest rank's share of the time budget: every rank then
    stops at the same step and sets the same rate (their clocks differ a little)."""
    if not ranks.distributed:
        return stop, time_fraction
    t = torch.tensor([float(stop), time_fraction], device=ranks.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t[0].item()), float(t[1].item())


def train_loop(
    name: str,
    model: torch.nn.Module,
    batch_loss: LossFn,
    optimizer: torch.optim.Optimizer,
    budget: Budget,
    ranks: Ranks | None = None,
    *,
    params: Iterable[torch.nn.Parameter] | None = None,
    start: int = 0,
    on_step: Callable[[TrainStep], dict[str, Any] | None] | None = None,
    progress: bool = True,
    leave: bool = True,
    log_every: int = 20,
) -> TrainResult:
    """Optimise ``params`` (default: all of ``model``'s) on ``batch_loss()`` within ``budget``.

    ``batch_loss`` draws this rank's batch and returns its loss, or a dict of figures with the loss
    under ``"loss"`` (the others shown on the bar). It runs under :func:`autocast`. ``model`` holds
    the parameters; under DDP it is wrapped for the loop's duration and the parameters it does not
    train are frozen meanwhile. ``on_step`` (rank 0 only, after every step) validates and saves when
    it is due, and may return figures for the bar. ``optimizer`` holds ``params``; the loop sets its
    rate every step.
    """
    ranks = ranks or Ranks()
    trained = list(params) if params is not None else list(model.parameters())
    result = TrainResult(step=start, steps=0, minutes=0.0, loss=float("nan"))
    if not budget.bounded or (budget.steps and start >= budget.steps):
        return result
    objective: torch.nn.Module = _Objective(model, batch_loss)
    ids = {id(p) for p in trained}
    frozen = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    for p in frozen:
        p.requires_grad_(False)
    if ranks.distributed:  # also broadcasts rank 0's weights, so every rank starts from them
        objective = torch.nn.parallel.DistributedDataParallel(
            objective, device_ids=[ranks.device.index] if ranks.device.type == "cuda" else None
        )
    bar = BudgetBar(
        name, budget.steps, budget.minutes, initial=start, disable=not (progress and ranks.main), leave=leave
    )
    step, losses, time_fraction = start, {}, 0.0
    try:
        model.train()
        while True:
            lr = budget.lr_at(step, time_fraction)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with autocast(ranks.device):
                losses = objective()
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].float().backward()
            if budget.grad_clip:
                torch.nn.utils.clip_grad_norm_(trained, budget.grad_clip)
            optimizer.step()
            step += 1
            used = bar.elapsed / (60 * budget.minutes) if budget.minutes else 0.0
            done, time_fraction = _agree((budget.steps > 0 and step >= budget.steps) or bar.out_of_time(), used, ranks)
            extra: dict[str, Any] = {}
            if ranks.main and on_step is not None:
                extra = on_step(TrainStep(step, losses, lr, bar.elapsed_minutes, done)) or {}
            if ranks.main and (done or (step - start) % log_every == 1 or log_every == 1):
                extra = {**{k: float(v.detach()) for k, v in losses.items()}, **extra}
            bar.update(step, loss=extra.pop("loss", None), **extra)
            if done:
                break
    finally:
        for p in frozen:
            p.requires_grad_(True)
        bar.close()
    return TrainResult(step, step - start, bar.elapsed_minutes, float(losses["loss"].detach()))
