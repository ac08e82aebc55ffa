"""Shared test set-up: CPU only, seeded, W&B offline in a temporary folder."""

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["CUDA_VISIBLE_DEVICES"] = ""
# The merge kernel is built once per test run, outside the user's cache.
if "MTS_LIGHTNING_BUILD_DIR" not in os.environ:
    os.environ["MTS_LIGHTNING_BUILD_DIR"] = tempfile.mkdtemp(prefix="mts-lightning-native-")
    atexit.register(shutil.rmtree, os.environ["MTS_LIGHTNING_BUILD_DIR"], ignore_errors=True)

import torch  # noqa: E402

# Two threads (the 2-core machine) unless OMP_NUM_THREADS says otherwise: make test runs two
# pytest processes side by side with one thread each.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or 2))


@pytest.fixture(autouse=True)
def _seed_and_isolate(tmp_path, monkeypatch):
    """Every test starts from the same seed and writes W&B/cache files under its tmp folder."""
    torch.manual_seed(0)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("MTS_LIGHTNING_CACHE", str(tmp_path / "feature-cache"))
    yield


@pytest.fixture
def one_thread():
    """Tiny models: one thread, as OpenMP spin-waits dominate their ops on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def kernel_calls(monkeypatch):
    """A list that gains one entry per forward through the native merge kernel."""
    from mts_lightning.nn.merge import native

    calls, kernel_forward = [], native._Plan.forward

    def counted(plan, *args):
        calls.append(plan)
        return kernel_forward(plan, *args)

    monkeypatch.setattr(native._Plan, "forward", counted)
    return calls
