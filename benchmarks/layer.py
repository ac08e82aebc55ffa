"""Speed and memory of MultiscaleConv2d, measured side by side in one run.

For each configuration it times forward+backward of:
- the floor: plain ``F.conv2d`` forward+backward with each branch's kernel, summed (the
  convolutions alone, without any merging);
- the reference: the plain step-by-step implementation kept in ``tests/helpers/reference_mts.py``;
- the layer, with ``fmap_align="interpolate"`` and with ``fmap_align="crop"``;
- with ``--merge-rules``, also the layer (``"interpolate"``) with each soft ``merge`` rule
  (``mean``, ``logsumexp``, ``softmax``, ``attention``), reported as its time over the
  default ``max``'s (``merge_vs_max``).

Times are the best of several rounds in which the contenders run in turn, in an order that
rotates from round to round (the minimum is the figure least disturbed by other work on a
shared machine). Torch uses every core unless
``--threads`` says otherwise; ``--threads 1`` gives steadier ratios on a busy machine. Peak memory of one forward+backward is measured for the reference and the layer:
on CUDA with the allocator's peak, on CPU as the growth of the peak RSS (VmHWM, reset
first) of a fresh subprocess that runs only that contender (Linux).

    python benchmarks/layer.py [--json] [--device cpu|cuda] [--rounds N] [--quick] [--merge-rules]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mts_lightning.nn import MultiscaleConv2d  # noqa: E402
from mts_lightning.nn.kernel_sharing import resample_kernel  # noqa: E402
from mts_lightning.nn.options import MERGE_RULES  # noqa: E402
from tests.helpers.reference_mts import ReferenceMultiscaleConv2d  # noqa: E402

LAYERS = {
    # name: (input shape, out channels, kernel size); a first layer's input needs no grad.
    "first_layer": ((16, 1, 512, 128), 10, (10, 5)),
    "middle_layer": ((16, 16, 128, 64), 32, (5, 5)),
}
FACTOR_SETS = {
    "2_factors": ((0.7, 1.0), (1.428, 1.0)),
    "4_factors": ((0.5, 1.0), (0.7, 1.0), (1.428, 1.0), (2.0, 1.0)),
}
CONTENDERS = ("floor", "reference", "interpolate", "crop")
#: With ``--merge-rules``: the layer ("interpolate") merging by each rule other than max.
MERGE_CONTENDERS = tuple(f"merge_{rule}" for rule in MERGE_RULES if rule != "max")


def build(layer_name: str, factor_name: str, contender: str, device: str):
    """Return a closure running one forward+backward of ``contender``."""
    shape, out_channels, kernel_size = LAYERS[layer_name]
    factors = FACTOR_SETS[factor_name]
    torch.manual_seed(0)
    x = torch.randn(shape, device=device, requires_grad=shape[1] > 1)
    in_channels = shape[1]
    if contender == "floor":
        base = torch.randn(out_channels, in_channels, *kernel_size, device=device)
        kernels = [base] + [resample_kernel(base, s) for s in factors]
        kernels = [k.clone().requires_grad_(True) for k in kernels]
        bias = torch.zeros(out_channels, device=device, requires_grad=True)

        def step():
            for kernel in kernels:
                F.conv2d(x, kernel, bias).sum().backward()

        return step
    if contender == "reference":
        module = ReferenceMultiscaleConv2d(
            in_channels, out_channels, kernel_size, scale_factors=factors
        ).to(device)
    elif contender.startswith("merge_"):
        module = MultiscaleConv2d(
            in_channels, out_channels, kernel_size, scale_factors=factors,
            merge=contender.removeprefix("merge_"),
        ).to(device)  # fmt: skip
    else:
        module = MultiscaleConv2d(
            in_channels, out_channels, kernel_size, scale_factors=factors, fmap_align=contender
        ).to(device)

    def step():
        module(x).sum().backward()

    return step


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_config(
    layer_name: str, factor_name: str, device: str, rounds: int, contenders=CONTENDERS
) -> dict:
    steps = {c: build(layer_name, factor_name, c, device) for c in contenders}
    for step in steps.values():  # warm-up: allocator, kernels, lazy init
        step()
    timings = {c: [] for c in contenders}
    for round_index in range(rounds):
        # Rotate who goes first: a contender that runs right after the reference (which
        # leaves hundreds of MB of freed memory behind) is slowed, and must not always be
        # the same one.
        shift = round_index % len(contenders)
        for contender in contenders[shift:] + contenders[:shift]:
            step = steps[contender]
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            timings[contender].append(time.perf_counter() - start)
    return {c: min(t) for c, t in timings.items()}


def peak_memory(layer_name: str, factor_name: str, contender: str, device: str) -> int:
    """Bytes of peak memory one forward+backward adds on top of its inputs."""
    if device == "cuda":
        step = build(layer_name, factor_name, contender, device)
        step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    command = [
        sys.executable,
        __file__,
        "--measure-rss",
        layer_name,
        factor_name,
        contender,
    ]
    return int(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line")


def measure_rss(layer_name: str, factor_name: str, contender: str) -> None:
    torch.set_num_threads(1)  # thread pools grow RSS differently; memory is not about speed
    step = build(layer_name, factor_name, contender, "cpu")
    # Reset the RSS high-water mark (importing torch peaks far above what follows).
    Path("/proc/self/clear_refs").write_text("5")
    before = _status_kib("VmRSS")
    step()
    print((_status_kib("VmHWM") - before) * 1024)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per configuration")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 rounds, for a smoke run")
    parser.add_argument("--threads", type=int, help="torch threads (default: every core)")
    parser.add_argument("--only", help="run only configurations whose name contains this")
    parser.add_argument(
        "--merge-rules", action="store_true", help="also time every merge rule against max"
    )
    parser.add_argument("--measure-rss", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_rss:
        measure_rss(*args.measure_rss)
        return
    rounds = 3 if args.quick else args.rounds
    if args.threads:
        torch.set_num_threads(args.threads)

    for layer_name in LAYERS:
        for factor_name in FACTOR_SETS:
            if args.only and args.only not in f"{layer_name}/{factor_name}":
                continue
            contenders = CONTENDERS + (MERGE_CONTENDERS if args.merge_rules else ())
            times = time_config(layer_name, factor_name, args.device, rounds, contenders)
            memory = {
                c: peak_memory(layer_name, factor_name, c, args.device)
                for c in ("reference", "interpolate", "crop")
            }
            result = {
                "config": f"{layer_name}/{factor_name}",
                "device": args.device,
                "threads": torch.get_num_threads(),
                "time_ms": {c: round(t * 1000, 1) for c, t in times.items()},
                "overhead_vs_convs": {
                    align: round(times[align] / times["floor"], 3)
                    for align in ("interpolate", "crop")
                },
                "speedup_vs_reference": {
                    align: round(times["reference"] / times[align], 3)
                    for align in ("interpolate", "crop")
                },
                "peak_memory_mb": {c: round(m / 2**20, 1) for c, m in memory.items()},
                "peak_memory_vs_reference": {
                    align: round(memory[align] / memory["reference"], 3)
                    for align in ("interpolate", "crop")
                },
            }
            if args.merge_rules:
                result["merge_vs_max"] = {
                    c.removeprefix("merge_"): round(times[c] / times["interpolate"], 3)
                    for c in MERGE_CONTENDERS
                }
            if args.json:
                print(json.dumps(result), flush=True)
            else:
                print(
                    f"{result['config']:<28} floor {times['floor'] * 1e3:7.1f} ms | "
                    f"overhead interp {result['overhead_vs_convs']['interpolate']:.2f} "
                    f"crop {result['overhead_vs_convs']['crop']:.2f} | speedup vs ref "
                    f"interp {result['speedup_vs_reference']['interpolate']:.2f} "
                    f"crop {result['speedup_vs_reference']['crop']:.2f} | memory vs ref "
                    f"interp {result['peak_memory_vs_reference']['interpolate']:.2f} "
                    f"crop {result['peak_memory_vs_reference']['crop']:.2f}"
                    + "".join(
                        f" | {rule} {ratio:.2f}x max"
                        for rule, ratio in result.get("merge_vs_max", {}).items()
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
