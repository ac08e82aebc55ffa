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
eval mode, inference mode), frozen eager, TorchScript and onnxruntime (features input); and,
in onnxruntime only, the conv twin with 15-frame kernels (``conv_15tap``): a plain CNN doing the
multiply-adds of the MTS model's three branch convolutions (kernels of 5, 3 and 7 frames) in
the form onnxruntime runs fastest, a floor for any MTS graph that convolves every branch. It
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
from mts_lightning.data import FeatureConfig, ModelInput, SyntheticConfig, SyntheticCorpus

SAMPLE_RATE = 16000
CLIP_SECONDS = 3.0
CLASSES = [f"class_{i}" for i in range(6)]


def _classifier(conv_type: str, frames: int, bins: int, **backbone_kwargs) -> EmotionClassifier:
    torch.manual_seed(0)
    return EmotionClassifier(
        backbone="compact_cnn",
        backbone_kwargs={"conv_type": conv_type, **backbone_kwargs},
        class_names=CLASSES,
        input_shape=(1, frames, bins),
        confusion_matrix=False,
    )


def recognizer(conv_type: str, freeze: bool = True, **backbone_kwargs) -> EmotionRecognizer:
    config = FeatureConfig()
    frames = config.seconds_to_frames(CLIP_SECONDS)
    return EmotionRecognizer(
        _classifier(conv_type, frames, config.num_bins, **backbone_kwargs),
        config,
        ModelInput(frames, mean=torch.zeros(config.num_bins), std=torch.ones(config.num_bins)),
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
            rec.predict(torch.zeros(SAMPLE_RATE), SAMPLE_RATE)  # warm-up
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


def _best_ms(fn, inputs: torch.Tensor, rounds: int) -> float:
    """Best wall time of ``fn(inputs)`` over ``rounds``, in ms (after one warm-up call)."""
    fn(inputs)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn(inputs)
        best = min(best, time.perf_counter() - start)
    return best * 1000


def onnx_runner(rec: EmotionRecognizer, path: Path):
    """A callable from normalised features to probabilities: ``rec`` exported to ONNX at
    ``path`` and run in onnxruntime (CPU, every graph optimisation (its default), as many
    intra-op threads as torch)."""
    import onnxruntime

    from mts_lightning.export import export_recognizer

    onnx_path = export_recognizer(rec, path, "onnx", "features")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(
        str(onnx_path), options, providers=["CPUExecutionProvider"]
    )
    return lambda x: session.run(["probabilities"], {"features": x.numpy()})[0]


def clip_contenders(conv_type: str, tmp: Path) -> dict:
    """Callables from normalised features ``(B, time, freq)`` to probabilities, per runtime."""
    from mts_lightning.export import InferenceGraph, export_recognizer

    trained = recognizer(conv_type, freeze=False)
    frozen = recognizer(conv_type, freeze=True)
    eager_training = InferenceGraph(trained, "features").eval()
    eager_frozen = InferenceGraph(frozen, "features").eval()
    ts_path = export_recognizer(frozen, tmp / f"{conv_type}.pt", "torchscript", "features")
    scripted = torch.jit.load(str(ts_path))

    def torch_runner(module):
        def run(x):
            with torch.inference_mode():
                return module(x)[1]

        return run

    return {
        "eager_training_form": torch_runner(eager_training),
        "eager_frozen": torch_runner(eager_frozen),
        "torchscript": torch_runner(scripted),
        "onnxruntime": onnx_runner(frozen, tmp / f"{conv_type}.onnx"),
    }


def bench_clips(rounds: int) -> list[dict]:
    config = FeatureConfig()
    frames = config.seconds_to_frames(CLIP_SECONDS)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        contenders = {c: clip_contenders(c, Path(tmp)) for c in ("mts", "conv")}
        floor = recognizer("conv", kernel_size=(15, 3))
        contenders["conv_15tap"] = {"onnxruntime": onnx_runner(floor, Path(tmp) / "conv15.onnx")}
        for batch in (1, 32):
            x = torch.randn(batch, frames, config.num_bins)
            times: dict[tuple[str, str], float] = {}
            # Contenders take turns: one timing block each per round, best of the rounds.
            for _ in range(rounds):
                for conv_type, runners in contenders.items():
                    for runtime, fn in runners.items():
                        ms = _best_ms(fn, x, 5) / batch
                        key = (conv_type, runtime)
                        times[key] = min(times.get(key, float("inf")), ms)
            for (conv_type, runtime), ms in times.items():
                results.append(
                    {
                        "model": f"compact_cnn/{conv_type}",
                        "runtime": runtime,
                        "batch": batch,
                        "ms_per_clip": ms,
                    }
                )
            results.append(
                {
                    "batch": batch,
                    "mts_onnx_vs_mts_eager_training": times[("mts", "onnxruntime")]
                    / times[("mts", "eager_training_form")],
                    "mts_onnx_vs_conv_onnx": times[("mts", "onnxruntime")]
                    / times[("conv", "onnxruntime")],
                    "mts_frozen_vs_training_eager": times[("mts", "eager_frozen")]
                    / times[("mts", "eager_training_form")],
                    "conv_15tap_onnx_vs_conv_onnx": times[("conv_15tap", "onnxruntime")]
                    / times[("conv", "onnxruntime")],
                }
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("timeline", "clips", "all"), default="all")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part in ("clips", "all"):
        for row in bench_clips(args.rounds):
            if args.json:
                print(json.dumps(row))
            elif "runtime" in row:
                print(
                    f"clip {row['model']:22s} {row['runtime']:20s} batch {row['batch']:2d}: "
                    f"{row['ms_per_clip']:.2f} ms per 3 s clip"
                )
            else:
                print(
                    f"ratios at batch {row['batch']}: MTS onnxruntime / MTS eager training form "
                    f"{row['mts_onnx_vs_mts_eager_training']:.2f}, MTS / conv in onnxruntime "
                    f"{row['mts_onnx_vs_conv_onnx']:.2f}, MTS frozen / training form (eager) "
                    f"{row['mts_frozen_vs_training_eager']:.2f}, conv with 15-frame kernels / conv "
                    f"in onnxruntime {row['conv_15tap_onnx_vs_conv_onnx']:.2f}"
                )
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
