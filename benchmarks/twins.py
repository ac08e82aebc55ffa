"""What a network of the ``modern`` recipe costs: multiply-adds and a training step, side by side.

    .venv/bin/python benchmarks/twins.py [--threads 1] [--rounds 5] [--batch 32] \
        [--steps_per_epoch 10]

For the input of the speech recipes (``configs/<corpus>/modern.yaml``: 3-s clips, hop 256,
64 log-mel bins: ``(1, 188, 64)``), 4 classes, it builds every network that
``configs/experiments/verdict_speech.yaml`` compares (the MTS compact CNN with scales x0.7 and
x1.428 and its equal-cost conv twin with channels x1.74; ``mts_wide``, scales x0.5-x2, the
recipe's network now, and its equal-cost twin with channels x2.34; the candidates ``mts_stats``
(statistics pooling head), ``mts_softmax`` (softmax merge, learned temperature) and
``long_twin`` (conv kernels spanning the longest branch of the x0.7-x1.428 network), the plain
conv network of the same widths, the bag of frames) and prints per network: parameters,
multiply-adds of one clip (:func:`~mts_lightning.models.complexity.count_macs`), the time of
one training step (forward, cross-entropy, backward and an AdamW step on a batch), the
networks taking turns each round (the best of the rounds counts), with ratios to the MTS
network, and the training time of an epoch of ``--steps_per_epoch`` steps (10 on the
24-voice espeak-ng corpus of the verdict grid: 12 training voices x 28 clips at batch 32).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from mts_lightning.models.complexity import count_macs
from mts_lightning.models.registry import build_model

INPUT_SHAPE = (1, 188, 64)
CLASSES = 4
NETWORKS = {
    "mts": ("compact_cnn", {"conv_type": "mts", "mts": {"kernel_sharing": "autograd"}}),
    "conv twin x1.74": ("compact_cnn", {"conv_type": "conv", "width_multiplier": 1.74}),
    "mts wide": (
        "compact_cnn",
        {
            "conv_type": "mts",
            "mts": {"kernel_sharing": "autograd", "scale_factors": [0.5, 0.7, 1.428, 2.0]},
        },
    ),
    "conv twin x2.34": ("compact_cnn", {"conv_type": "conv", "width_multiplier": 2.34}),
    "mts stats": (
        "compact_cnn",
        {"conv_type": "mts", "mts": {"kernel_sharing": "autograd"}, "pooling": "stats"},
    ),
    "mts softmax": (
        "compact_cnn",
        {
            "conv_type": "mts",
            "mts": {"kernel_sharing": "autograd", "merge": "softmax", "learn_temperature": True},
        },
    ),
    "long twin": ("compact_cnn", {"conv_type": "conv", "kernel_span": "longest_scale"}),
    "conv x1": ("compact_cnn", {"conv_type": "conv"}),
    "bag of frames": ("bag_of_frames", {}),
}


def build(name: str) -> torch.nn.Module:
    backbone, kwargs = NETWORKS[name]
    torch.manual_seed(0)
    return build_model(backbone, num_classes=CLASSES, input_shape=INPUT_SHAPE, **kwargs)


def step_seconds(model: torch.nn.Module, batch: torch.Tensor, labels: torch.Tensor) -> float:
    """Wall time of one training step of ``model``."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(batch), labels)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps_per_epoch", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = {name: build(name).train() for name in NETWORKS}
    generator = torch.Generator().manual_seed(0)
    batch = torch.randn(args.batch, *INPUT_SHAPE, generator=generator)
    labels = torch.randint(CLASSES, (args.batch,), generator=generator)
    for model in models.values():
        step_seconds(model, batch, labels)  # warm-up
    best = dict.fromkeys(models, float("inf"))
    names = list(models)
    for round_index in range(args.rounds):
        order = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in order:
            best[name] = min(best[name], step_seconds(models[name], batch, labels))
    reference = names[0]
    macs = {name: count_macs(models[name], INPUT_SHAPE) for name in names}
    print(
        f"input {INPUT_SHAPE}, batch {args.batch}, {args.threads} thread(s), "
        f"best of {args.rounds} rounds"
    )
    print(
        f"{'network':<18}{'params':>10}{'MMACs/clip':>12}{'x mts':>7}{'step ms':>10}{'x mts':>7}"
        f"{'epoch s':>9}"
    )
    for name, model in models.items():
        params = sum(p.numel() for p in model.parameters())
        print(
            f"{name:<18}{params:>10,}{macs[name] / 1e6:>12.1f}{macs[name] / macs[reference]:>7.2f}"
            f"{best[name] * 1e3:>10.1f}{best[name] / best[reference]:>7.2f}"
            f"{best[name] * args.steps_per_epoch:>9.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
