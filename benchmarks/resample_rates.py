"""Time and peak memory of reading audio at uncommon sample rates, before and after the
bounded resampler (``mts_lightning.data.audio.resample``).

For each rate, a 3 s recording (tones and noise) is written as a WAV file and read at 16 kHz
twice, each in a fresh process: **before**, resampled as the library did until then (the
polyphase kernel for the rates' reduced ratio, whatever its size; at 16001 Hz 16000 phases of
16013 taps), and **after**, with :func:`mts_lightning.data.audio.resample`. What is read is
``EmotionRecognizer.predict_file`` of a checkpoint with ``--ckpt``, otherwise ``load_audio``
(the DataModule's reading). Peak memory is the growth of the process's peak RSS (``VmHWM``,
reset after the imports; Linux) in the first read; the time is the best of up to five reads
while they take under 2 s in all. A process that needs more than ``--memory-limit-gb`` of
heap is stopped and reported as such.

    python benchmarks/resample_rates.py [--ckpt RUN/checkpoints/last.ckpt]
        [--rates 8000,16001,44101,7919,192000] [--seconds 3] [--memory-limit-gb 6]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

TARGET_RATE = 16000
METHODS = ("before", "after")
#: Reads are repeated (best time counts) while they have taken less than this in all.
REPEAT_SECONDS = 2.0


def write_recording(path: Path, rate: int, seconds: float) -> None:
    """Three tones and a little noise, ``seconds`` long, at ``rate`` (32-bit float WAV)."""
    t = np.arange(round(seconds * rate)) / rate
    tones = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 1000.0, 3100.0)) / 4
    noise = 0.01 * np.random.default_rng(0).standard_normal(t.size)
    sf.write(path, (tones + noise).astype(np.float32), rate, "FLOAT")


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line")


def measure(method: str, path: str, ckpt: str | None) -> None:
    """In a fresh process: read ``path`` once by ``method``; print seconds and peak bytes."""
    import torch
    import torchaudio.functional as AF

    from mts_lightning.data import audio

    torch.set_num_threads(1)  # one core: comparable on a shared machine
    if method == "before":
        audio.resample = lambda waveform, orig, new: (
            waveform if orig == new else AF.resample(waveform, orig, new)
        )
    if ckpt:
        from mts_lightning import EmotionRecognizer

        recognizer = EmotionRecognizer.from_checkpoint(ckpt)
        read = lambda: recognizer.predict_file(path)  # noqa: E731
    else:
        read = lambda: audio.load_audio(path, TARGET_RATE)  # noqa: E731
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    read()
    times = [time.perf_counter() - start]
    peak = (_status_kib("VmHWM") - before) * 1024
    while sum(times) < REPEAT_SECONDS and len(times) < 5:  # best of a few when cheap
        start = time.perf_counter()
        read()
        times.append(time.perf_counter() - start)
    print(json.dumps({"seconds": min(times), "peak_bytes": peak}))


def run(method: str, path: Path, ckpt: str | None, limit_gb: float) -> dict:
    """One measurement in a child process whose heap is limited to ``limit_gb``."""
    limit = int(limit_gb * 2**30)

    def limit_heap() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))

    command = [sys.executable, __file__, "--measure", method, str(path)]
    if ckpt:
        command += ["--ckpt", ckpt]
    done = subprocess.run(command, capture_output=True, text=True, preexec_fn=limit_heap)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["killed"])[-1]
        return {"failed": f"over {limit_gb:g} GB ({last[:60]})"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def describe(result: dict) -> str:
    if "failed" in result:
        return f"{'failed':>9} {'':>10}"
    return f"{result['seconds']:8.3f}s {result['peak_bytes'] / 2**20:8.1f}MB"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="8000,16001,44101,7919,192000")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--ckpt", help="a checkpoint: time predict_file instead of load_audio")
    parser.add_argument("--memory-limit-gb", type=float, default=6.0)
    parser.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        measure(*args.measure, args.ckpt)
        return
    try:
        rates = [int(r) for r in args.rates.split(",")]
    except ValueError:
        parser.error(f"--rates must be comma-separated integers (Hz), got {args.rates!r}")
    if args.ckpt and not Path(args.ckpt).is_file():
        parser.error(f"--ckpt {args.ckpt} is not a file")
    what = "predict_file" if args.ckpt else "load_audio"
    print(f"{what} of a {args.seconds:g} s recording, read at {TARGET_RATE} Hz, one thread")
    print(
        f"{'rate':>7} {'reduced ratio':>15} | {'before':^19} | {'after':^19} | before/after: "
        "time, memory"
    )
    failures = []
    with tempfile.TemporaryDirectory() as folder:
        for rate in rates:
            path = Path(folder) / f"rec_{rate}.wav"
            write_recording(path, rate, args.seconds)
            results = {m: run(m, path, args.ckpt, args.memory_limit_gb) for m in METHODS}
            divisor = math.gcd(rate, TARGET_RATE)
            ratio = f"{rate // divisor}:{TARGET_RATE // divisor}"
            old, new = results["before"], results["after"]
            if "failed" in old or "failed" in new:
                change = "-"
                failures += [
                    f"{rate} Hz {m}: {r['failed']}" for m, r in results.items() if "failed" in r
                ]
            else:
                change = (
                    f"{old['seconds'] / new['seconds']:8.3g} "
                    f"{max(old['peak_bytes'], 1) / max(new['peak_bytes'], 1):8.3g}"
                )
            print(f"{rate:>7} {ratio:>15} | {describe(old)} | {describe(new)} | {change}")
    for failure in failures:
        print(failure)


if __name__ == "__main__":
    main()
