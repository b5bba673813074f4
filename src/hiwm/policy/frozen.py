"""A TorchScript-frozen copy of a module for inference: fewer, fused ops at batch 1 on CPU.

A small conv net at batch 1 spends most of its time dispatching ops rather than computing; a
traced and frozen graph runs the Diffusion Policy's U-Net about 2.5x faster on this CPU
(``bench/policy.py``). ``torch.jit`` is deprecated in favour of ``torch.compile``, which needs a
C++ toolchain and a compiler run per shape; the frozen graph is built in about 2 s on first use
(``ModelPolicy.warm_up`` does it before serving) and works with the pinned torch. Anything that
fails to trace runs eagerly instead.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import torch
from torch import nn

log = logging.getLogger(__name__)


class _Call(nn.Module):
    def __init__(self, module: nn.Module, fn: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.module, self.fn = module, fn

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.fn(self.module, *inputs)


class FrozenCall:
    """``fn(module, *inputs)``, traced and frozen once per input shape while ``module`` is in eval mode.

    A graph is rebuilt when the module's weights change (their version counters move: an
    optimiser step or a ``load_state_dict``); in training mode, or with gradients on, the call
    runs eagerly. Not an ``nn.Module``, so it adds nothing to the owner's state dict.
    """

    def __init__(self, module: nn.Module, fn: Callable[..., torch.Tensor]) -> None:
        self.module, self.fn = module, fn
        self.graphs: dict[tuple, torch.jit.ScriptModule | None] = {}
        self.weights_version = -1

    def __getstate__(self) -> dict:
        return {**self.__dict__, "graphs": {}, "weights_version": -1}  # copies (an EMA) trace their own

    def _version(self) -> int:
        # torch's in-place version counter (pinned torch): bumps on every in-place weight update
        return sum(t._version for t in (*self.module.parameters(), *self.module.buffers()))

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.module.training or torch.is_grad_enabled():
            return self.fn(self.module, *inputs)
        version = self._version()
        if version != self.weights_version:
            self.graphs.clear()
            self.weights_version = version
        key = tuple((tuple(x.shape), x.dtype, x.device) for x in inputs)
        if key not in self.graphs:
            self.graphs[key] = self._freeze(inputs)
        graph = self.graphs[key]
        return self.fn(self.module, *inputs) if graph is None else graph(*inputs)

    def _freeze(self, inputs: tuple[torch.Tensor, ...]) -> torch.jit.ScriptModule | None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the deprecation notice, and trace's own advice
                return torch.jit.freeze(torch.jit.trace(_Call(self.module, self.fn).eval(), inputs))
        except Exception as exc:  # any tracing failure: correctness first, the eager path is the reference
            log.warning("frozen graph unavailable (%s); running %s eagerly", exc, type(self.module).__name__)
            return None
