"""Inference speed: a long recording's timeline, and one clip through every runtime.

    .venv/bin/python benchmarks/inference.py                 # both parts
    .venv/bin/python benchmarks/inference.py --part timeline --minutes 60
    .venv/bin/python benchmarks/inference.py --part clips --json

``timeline``: writes a recording of ``--minutes`` of 16 kHz speech-like audio (the synthetic
corpus's clips, end to end) as a 16-bit WAV file, then times ``EmotionRecognizer.timeline``
over it with the compact CNN (MTS and conv), 3 s windows, 1.5 s hop. It prints the real-time
factor (processing time / audio duration) and the growth of the process's peak memory
(``VmHWM``, reset first) against the size the whole recording would take in memory.

``clips``: 3 s clips at batch 1 and 32, side by side in one run (contenders take turns each
round, best of the rounds): the compact CNN, MTS and conv, in eager PyTorch (training form,
eval mode, inference mode), frozen eager, TorchScript and onnxruntime (features input). It
prints milliseconds per clip and the ratios the targets are about.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import soundfile as sf
import torch

from mts_lightning import EmotionClassifier, EmotionRecognizer
from mts_lightning.data import SyntheticConfig, SyntheticCorpus
from mts_lightning.data.features import FeatureConfig

SAMPLE_RATE = 16000
CLIP_SECONDS = 3.0
CLASSES = [f"class_{i}" for i in range(6)]


def _classifier(conv_type: str, frames: int, bins: int) -> EmotionClassifier:
    torch.manual_seed(0)
    return EmotionClassifier(
        backbone="compact_cnn",
        backbone_kwargs={"conv_type": conv_type},
        class_names=CLASSES,
        input_shape=(1, frames, bins),
        confusion_matrix=False,
    )


def recognizer(conv_type: str, freeze: bool = True) -> EmotionRecognizer:
    config = FeatureConfig()
    frames = config.seconds_to_frames(CLIP_SECONDS)
    return EmotionRecognizer(
        _classifier(conv_type, frames, config.num_bins),
        config,
        torch.zeros(config.num_bins),
        torch.ones(config.num_bins),
        frames=frames,
        freeze=freeze,
    )


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def write_recording(path: Path, minutes: float) -> int:
    """A long 16-bit WAV of synthetic clips end to end, written block by block."""
    corpus = SyntheticCorpus(SyntheticConfig(duration=CLIP_SECONDS))
    clips = [corpus.render(i, SAMPLE_RATE) for i in range(24)]
    total = round(minutes * 60 * SAMPLE_RATE)
    written = 0
    with sf.SoundFile(path, "w", SAMPLE_RATE, 1, subtype="PCM_16") as f:
        i = 0
        while written < total:
            block = clips[i % len(clips)][: total - written]
            f.write(block)
            written += len(block)
            i += 1
    return written


def bench_timeline(minutes: float) -> list[dict]:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recording.wav"
        samples = write_recording(path, minutes)
        seconds = samples / SAMPLE_RATE
        for conv_type in ("mts", "conv"):
            rec = recognizer(conv_type)
            rec.timeline(path, window=CLIP_SECONDS, hop=CLIP_SECONDS / 2)  # warm-up (short)
            _reset_peak_rss()
            before = _peak_rss_mb()
            start = time.perf_counter()
            timeline = rec.timeline(path, window=CLIP_SECONDS, hop=CLIP_SECONDS / 2)
            elapsed = time.perf_counter() - start
            results.append(
                {
                    "model": f"compact_cnn/{conv_type}",
                    "audio_s": seconds,
                    "windows": len(timeline.rows),
                    "time_s": elapsed,
                    "real_time_factor": elapsed / seconds,
                    "peak_memory_growth_mb": _peak_rss_mb() - before,
                    "recording_in_memory_mb": samples * 4 / 2**20,
                }
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("timeline", "clips", "all"), default="all")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part in ("timeline", "all"):
        for row in bench_timeline(args.minutes):
            if args.json:
                print(json.dumps(row))
            else:
                print(
                    f"timeline {row['model']:18s} {row['audio_s'] / 60:.0f} min audio, "
                    f"{row['windows']} windows: {row['time_s']:.1f} s, real-time factor "
                    f"1/{1 / row['real_time_factor']:.0f}, peak memory +"
                    f"{row['peak_memory_growth_mb']:.0f} MB (whole recording as float32: "
                    f"{row['recording_in_memory_mb']:.0f} MB)"
                )


if __name__ == "__main__":
    main()
