"""Stretch usage: how many output elements each branch of an MTS layer won (``merge="max"``),
or the weight each branch received, summed over the output elements (the soft rules)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor


class StretchUsage:
    """Usage per branch (base first): accumulated, and of the last forward.

    ``dtype`` int64 counts wins; float64 sums weights. Plain tensors, not module buffers: DDP
    broadcasts buffers from rank zero before every forward, which would overwrite each rank's
    own counts. Recording never waits for the device (no ``.item()``), so it is cheap on a
    GPU and compiles.
    """

    def __init__(self, num_branches: int, dtype: torch.dtype = torch.long) -> None:
        self.total = torch.zeros(num_branches, dtype=dtype)
        self.last = torch.zeros(num_branches, dtype=dtype)
        self.seen = False

    def record(self, counts: Tensor) -> None:
        """Add one forward's usage ``counts`` (``(num_branches,)``)."""
        if self.total.device != counts.device:
            self.total, self.last = self.total.to(counts.device), self.last.to(counts.device)
        self.total.add_(counts)
        self.last.copy_(counts)
        self.seen = True

    def fractions(self, owner: str) -> np.ndarray:
        """The last forward's counts as fractions summing to 1 (``owner`` names the layer
        in the error raised before any forward has counted)."""
        if not self.seen:
            raise RuntimeError(
                f"{owner}.get_stretch_percs(): no forward has computed the branches yet (or "
                "track_stretch_usage=False), so there is no usage to report"
            )
        counts = self.last.detach().to("cpu", torch.float64).numpy()
        return counts / counts.sum()

    def apply(self, fn: Callable[[Tensor], Tensor]) -> None:
        """Follow a module's ``_apply`` to its device (``.to(device)``); a cast of the
        module's floating-point tensors (``.half()``) must not reach float64 sums."""
        if not self.total.is_floating_point():
            self.total, self.last = fn(self.total), fn(self.last)  # fn leaves int64 alone
            return
        device = fn(torch.zeros(0, dtype=torch.long)).device
        self.total, self.last = self.total.to(device), self.last.to(device)

    def __setstate__(self, state: dict) -> None:
        # Unpickled in another process (ddp_spawn shares tensors through shared memory),
        # each process must count into counters of its own.
        self.__dict__.update(state)
        self.total, self.last = self.total.clone(), self.last.clone()
