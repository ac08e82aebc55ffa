"""The process's random generators as checkpoint-friendly values, so a resumed run draws the
same numbers (batch order, dropout, augmentation) as the run it continues.

Lightning does not store them: a run resumed from ``last.ckpt`` would otherwise start every
later epoch from the seed of the new process. The values are tensors, lists and numbers only,
so a checkpoint holding them still loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def get_random_state() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's global generators (CUDA's when in use)."""
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gauss],
        "python": [version, list(internal), gauss_next],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_random_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_random_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    kind, keys, position, has_gauss, cached_gauss = state["numpy"]
    keys = torch.as_tensor(keys).numpy().astype(np.uint32)
    np.random.set_state((kind, keys, int(position), int(has_gauss), float(cached_gauss)))
    version, internal, gauss_next = state["python"]
    random.setstate((int(version), tuple(int(v) for v in internal), gauss_next))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
