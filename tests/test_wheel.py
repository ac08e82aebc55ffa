"""The package as users install it: ``python -m build``, then the wheel (not editable) in a
fresh virtual environment, used from a folder outside the checkout.

The fresh environment borrows this one's site-packages for the dependencies (a path line in
a ``.pth`` file, added after the wheel is installed), so torch is not downloaded; such a line
does not run the ``.pth`` files of that folder, so this checkout's editable install stays out,
which the test checks.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

# What a checkout may hold at its top besides the sources: left out of the copy that is built.
NOT_SOURCE = {".git", ".venv", "build", "dist", "docs", "tests", "lightning_logs", "experiments"}
NOT_SOURCE |= {"data", "wandb", "mts_lightning.egg-info"}


def _outside_the_sources(folder: str, names: list[str]) -> set[str]:
    top = Path(folder) == REPO
    return {n for n in names if n == "__pycache__" or (top and n in NOT_SOURCE)}


# Run by the installed package's python, from outside the checkout: the layer forward and
# backward, then the same again in a process that finds no C compiler.
LAYER_SCRIPT = """
import importlib.metadata, sys, warnings
from pathlib import Path
import torch
import mts_lightning
from mts_lightning import MultiscaleConv2d
from mts_lightning.nn.merge import native_build

torch.manual_seed(0)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    layer = MultiscaleConv2d(2, 4, (5, 3), padding=(2, 1), scale_factors=[0.7, 1.428])
    x = torch.randn(3, 2, 40, 16, requires_grad=True)
    y = layer(x)
    y.square().sum().backward()
    layer(torch.randn(3, 2, 40, 16))  # a second forward: a warning is given once
ours = [str(w.message) for w in caught if "mts_lightning" in w.filename or "C compiler" in str(w.message)]
print("package", Path(mts_lightning.__file__).resolve().parent)
print("version", importlib.metadata.version("mts-lightning") == mts_lightning.__version__)
print("native", native_build.library() is not None)
print("warnings", len(ours), ours)
print("output", y.shape == (3, 4, 40, 16), float(y.sum()), float(x.grad.abs().sum()))
"""


def _run(argv, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, **kwargs)
    assert done.returncode == 0, f"{argv}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _values(out: str) -> dict[str, str]:
    return dict(line.split(" ", 1) for line in out.strip().splitlines() if " " in line)


def test_built_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    # The sdist, then the wheel built from it, as `python -m build` does; no isolation, so
    # this environment's setuptools builds it without a network.
    dist = tmp_path / "dist"
    source = tmp_path / "source"
    shutil.copytree(
        REPO,
        source,
        symlinks=True,
        ignore=_outside_the_sources,
    )
    built = _run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)]
    )
    assert "Deprecat" not in built.stdout + built.stderr
    (wheel,) = dist.glob("*.whl")
    assert len(list(dist.glob("*.tar.gz"))) == 1
    names = zipfile.ZipFile(wheel).namelist()
    for packaged in (
        "mts_lightning/nn/merge/_merge.c",
        "mts_lightning/py.typed",
        "mts_lightning/configs/synthetic.yaml",
        "mts_lightning/configs/experiments/synthetic_conv_vs_mts.yaml",
    ):
        assert packaged in names, packaged
    assert any(name.endswith("/licenses/LICENSE") for name in names)

    # A fresh environment with the wheel, then this environment's packages for the rest.
    # No PYTHONPATH anywhere: it would show pip, and Python, this checkout's package.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CC")}
    env.update(OMP_NUM_THREADS="1", MTS_LIGHTNING_BUILD_DIR=str(tmp_path / "native"))
    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "--quiet", str(wheel)], env=env)  # fmt: skip
    purelib = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], env=env
    )
    site = Path(purelib.stdout.strip())
    (site / "borrowed.pth").write_text(sysconfig.get_path("purelib") + "\n")

    work = tmp_path / "work"  # outside the checkout
    work.mkdir()
    layer = _values(_run([python, "-c", LAYER_SCRIPT], cwd=work, env=env).stdout)
    assert Path(layer["package"]) == site / "mts_lightning"  # the wheel's, not the checkout's
    assert layer["version"] == "True"  # one version, written in mts_lightning/__init__.py
    assert layer["native"] == "True" and layer["warnings"].startswith("0 ")
    assert any((tmp_path / "native").iterdir())  # compiled from the packaged _merge.c

    # No C compiler on the PATH (a folder with python only) and a fresh build folder: the
    # stock operators, the same values, one warning.
    bare = tmp_path / "bare-bin"
    bare.mkdir()
    (bare / "python").symlink_to(python)
    fallback_env = {**env, "PATH": str(bare), "MTS_LIGHTNING_BUILD_DIR": str(tmp_path / "n2")}
    stock = _values(_run([python, "-c", LAYER_SCRIPT], cwd=work, env=fallback_env).stdout)
    assert stock["native"] == "False" and stock["warnings"].startswith("1 ")
    assert "C compiler" in stock["warnings"]
    native_values = [float(v) for v in layer["output"].split()[1:]]
    stock_values = [float(v) for v in stock["output"].split()[1:]]
    assert stock_values == pytest.approx(native_values, rel=1e-5)

    # The configs come out of the installed package, and a fit trains from them.
    command = env_dir / "bin" / "mts-lightning"
    _run([command, "init-config", "synthetic.yaml"], cwd=work, env=env)
    assert (work / "configs" / "synthetic.yaml").read_bytes() == (
        REPO / "configs" / "synthetic.yaml"
    ).read_bytes()
    tiny = [
        "--data.corpus_options.num_speakers=4",
        "--data.corpus_options.clips_per_speaker=6",
        "--data.corpus_options.duration=1.0",
        "--data.duration=1.0",
        "--data.num_folds=4",
        "--data.batch_size=4",
        "--trainer.max_epochs=1",
        "--trainer.max_time=null",
        "--trainer.enable_progress_bar=false",
    ]
    fit = _run(
        [command, "fit", "--config", "configs/synthetic.yaml", *tiny],
        cwd=work,
        env={**env, "MTS_LIGHTNING_CACHE": str(tmp_path / "cache"), "WANDB_MODE": "offline"},
    )
    assert list(
        (work / "lightning_logs" / "synthetic" / "version_0" / "checkpoints").glob("*.ckpt")
    )
    assert "run folder (logs): " in fit.stdout  # the fit summary
