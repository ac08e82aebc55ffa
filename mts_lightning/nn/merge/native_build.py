"""Build and load the native merge kernel (``_merge.c``) on first use.

The kernel is plain C11 with OpenMP, compiled by the system C compiler (``$CC``, else ``cc``)
in well under a second into ``$MTS_LIGHTNING_BUILD_DIR`` (default
``~/.cache/mts-lightning/native``), under a name keyed by the source, the compiler and the
machine, and loaded through ``ctypes``. The library is written to a temporary file and moved
into place, so concurrent processes (DDP ranks, data workers) never load a half-written one.

Where no compiler works, the layers warn once and fall back to stock PyTorch operators,
which compute the same result, more slowly. ``MTS_LIGHTNING_NATIVE=0`` turns the kernel off
(no build, no warning).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import subprocess
import sys
import threading
import warnings
from pathlib import Path

from mts_lightning.io import atomic_path

SOURCE = Path(__file__).with_name("_merge.c")
BUILD_DIR_ENV = "MTS_LIGHTNING_BUILD_DIR"
SWITCH_ENV = "MTS_LIGHTNING_NATIVE"
FLAGS = ("-O3", "-std=c11", "-fPIC", "-shared", "-fopenmp")

_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_tried = False


def enabled() -> bool:
    """Whether ``MTS_LIGHTNING_NATIVE`` allows the kernel (anything but ``0``/``false``/``off``)."""
    return os.environ.get(SWITCH_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def build_dir() -> Path:
    env = os.environ.get(BUILD_DIR_ENV)
    if env:
        return Path(env).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "mts-lightning" / "native"


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("CC", "cc"))


def _library_path(compiler: list[str]) -> Path:
    version = subprocess.run(
        [*compiler, "--version"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    key = hashlib.sha1()
    for part in (SOURCE.read_bytes(), " ".join(FLAGS).encode(), version.encode()):
        key.update(part)
    key.update(f"{sys.platform}-{platform.machine()}".encode())
    return build_dir() / f"mts_merge-{key.hexdigest()[:16]}.so"


def _compile(compiler: list[str], target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        result = subprocess.run(
            [*compiler, *FLAGS, str(SOURCE), "-o", str(tmp)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(compiler)} exited with {result.returncode}: "
                f"{(result.stderr or result.stdout).strip()[-2000:]}"
            )


def _declare(library: ctypes.CDLL) -> None:
    pointer, size = ctypes.c_void_p, ctypes.c_int64
    for suffix in ("f32", "f64"):
        forward = getattr(library, f"mts_merge_forward_{suffix}")
        forward.restype = None
        forward.argtypes = [size, size, size, *[pointer] * 12, size]
        backward = getattr(library, f"mts_merge_backward_{suffix}")
        backward.restype = None
        backward.argtypes = [size, size, size, *[pointer] * 11, size]


def library() -> ctypes.CDLL | None:
    """The loaded kernel library, building it if needed; ``None`` when unavailable."""
    global _library, _tried
    if not enabled():
        return None
    if _tried:
        return _library
    with _lock:
        if _tried:
            return _library
        _tried = True
        try:
            compiler = _compiler()
            path = _library_path(compiler)
            if not path.exists():
                _compile(compiler, path)
            loaded = ctypes.CDLL(str(path))
            _declare(loaded)
            _library = loaded
        except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as error:
            warnings.warn(
                "mts_lightning: the native merge kernel could not be built or loaded, so MTS "
                f"layers use stock PyTorch operators on CPU (same results, slower): {error}. "
                f"Set {SWITCH_ENV}=0 to silence this, or CC to choose a C compiler.",
                RuntimeWarning,
                stacklevel=2,
            )
    return _library


def reset() -> None:
    """Forget the loaded library so the next :func:`library` call retries (for tests)."""
    global _library, _tried
    with _lock:
        _library, _tried = None, False
