"""Check MultiscaleConv2d on an accelerator against the CPU, in one short run.

The test suite runs on CPU only; this script is the check for a machine with a GPU. For each
configuration (separate and fused branches, both alignments, every output type, both
kernel-sharing modes) it runs one forward+backward on ``--device`` in float64, float32,
under autocast (bfloat16 and float16) and under ``torch.compile``, and compares output,
input gradient, weight gradient and usage counts with the same layer on the CPU in float64.
Errors are relative Euclidean norms (bfloat16 and float16 flip a few near-ties between
branches, which moves single elements but not the norm); counts must agree exactly in
float64 and within 1% otherwise. It prints one line per check and exits with status 1 if
any check fails. On CPU (``--device cpu``) it checks the merge kernel path the same way.

    python benchmarks/device_check.py --device cuda
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mts_lightning.nn import MultiscaleConv2d  # noqa: E402

CONFIGS = {
    # name: (constructor arguments, input shape)
    "first layer, separate": (dict(in_channels=1, out_channels=6, kernel_size=(10, 5)), 1),
    "first layer, fused": (
        dict(in_channels=1, out_channels=6, kernel_size=(10, 5), fuse_branches="always"),
        1,
    ),
    "middle layer, stride 2": (
        dict(in_channels=8, out_channels=8, kernel_size=(5, 3), stride=2, padding="valid"),
        8,
    ),
}
OPTIONS = [
    dict(fmap_align="interpolate"),
    dict(fmap_align="crop", stretch_penalty_lambda=0.1),
    dict(output_type="interleave_chdim", kernel_sharing="autograd"),
    dict(output_type="concat_fmaps"),
    dict(training_mode="only_gradients", kernel_sharing="autograd"),
]
# (name, dtype of the layer and input, autocast dtype or None, compile, tolerance)
MODES = [
    ("float64", torch.float64, None, False, 1e-9),
    ("float32", torch.float32, None, False, 1e-4),
    ("autocast bfloat16", torch.float32, torch.bfloat16, False, 0.1),
    ("autocast float16", torch.float32, torch.float16, False, 0.04),
    ("compile float32", torch.float32, None, True, 1e-4),
]
FACTORS = ((0.5, 1.0), (0.7, 1.0), (1.428, 1.0), (2.0, 1.0))


def run(layer: MultiscaleConv2d, x: torch.Tensor, autocast, compiled: bool):
    """Output, input gradient, weight gradient and usage counts of one forward+backward."""
    x = x.detach().clone().requires_grad_(True)
    forward = torch.compile(layer, fullgraph=True) if compiled else layer
    with torch.autocast(x.device.type, dtype=autocast, enabled=autocast is not None):
        out = forward(x)
    weights = torch.linspace(-1, 1, out.numel(), device=out.device).view_as(out)
    (out.float() * weights).sum().backward()
    return out, x.grad, layer.weight.grad, layer.last_stretch_usage_counts


def relative_error(value: torch.Tensor, expected: torch.Tensor) -> float:
    """``|value - expected| / |expected|`` (Euclidean norms). In low precision a few near-ties
    between branches flip, which moves single elements a lot (the winner's gradient, the
    interleaved log scale) but the norm little."""
    value, expected = value.detach().double().cpu(), expected.detach().double().cpu()
    return ((value - expected).norm() / expected.norm().clamp(min=1e-12)).item()


def check(
    name: str, arguments: dict, channels: int, options: dict, device: str, with_compile: bool
) -> bool:
    torch.manual_seed(0)
    cpu_layer = MultiscaleConv2d(**arguments, scale_factors=FACTORS, **options).double()
    pristine = copy.deepcopy(cpu_layer)
    x = torch.randn(3, channels, 64, 24, dtype=torch.float64)
    expected = run(cpu_layer, x, None, False)
    passed = True
    for mode, dtype, autocast, compiled, tolerance in MODES:
        if compiled and not with_compile:
            continue
        layer = copy.deepcopy(pristine).to(device=device, dtype=dtype)
        got = run(layer, x.to(device=device, dtype=dtype), autocast, compiled)
        errors = [relative_error(g, e) for g, e in zip(got[:3], expected[:3], strict=True)]
        # Rounding flips near-ties between branches: counts are exact in float64 only.
        count_error = relative_error(got[3], expected[3])
        ok = max(errors) <= tolerance and count_error <= (0 if dtype == torch.float64 else 0.01)
        passed &= ok
        print(
            f"{'ok  ' if ok else 'FAIL'} {name:<24} {str(options):<70} {mode:<18} "
            f"output {errors[0]:.1e} input grad {errors[1]:.1e} weight grad {errors[2]:.1e} "
            f"counts {count_error:.1e}",
            flush=True,
        )
    return passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("device_check: --device cuda, but torch sees no CUDA device")
    # float32 is held to float32 rounding: TF32 convolutions would differ by ~1e-3.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    # Compiling takes a while on a GPU: once per configuration, with the first options.
    results = [
        check(name, arguments, channels, options, args.device, with_compile=index == 0)
        for name, (arguments, channels) in CONFIGS.items()
        for index, options in enumerate(OPTIONS)
    ]
    print(f"{sum(results)} of {len(results)} configurations passed on {args.device}")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
