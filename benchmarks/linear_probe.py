"""What a bag of frames can read, fitted to convergence: a logistic-regression probe.

    .venv/bin/python benchmarks/linear_probe.py --root data/speech --folds 0 1 2 3 \\
        --tempos 0.5 0.7 1.0 1.4 2.0 [--corpus ravdess] [--output probe.csv]

Each clip becomes the model input the ``modern`` recipe gives a network (log-mel, 64 bins,
hop 256, 3 s, short clips repeated, normalised with the training statistics); the probe reads
the mean and standard deviation of every bin over time (the zoo's ``bag_of_frames``
statistics), standardised with the training clips', and fits a multinomial logistic
regression by L-BFGS to convergence, its L2 weight chosen on the validation speakers. Printed
and written per fold and test tempo: the test UA. The reference that the ``bag_of_frames``
network of an experiment has to reach before it counts as a trained baseline.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import torch

from mts_lightning.data import SpectrogramDataModule
from mts_lightning.data.augment import Augment
from mts_lightning.data.features import FeatureConfig
from mts_lightning.metrics import PresentClassRecall
from mts_lightning.models.baseline import BagOfFrames

L2_WEIGHTS = (1e-4, 1e-3, 1e-2, 1e-1)
RECIPE = dict(
    features=FeatureConfig(kind="logmel", hop_length=256, n_mels=64),
    duration=3.0,
    pad_mode="repeat",
    num_folds=4,
)


def statistics(dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 2 * bins)`` per-clip statistics and ``(N,)`` labels of a dataset's items."""
    inputs, labels = zip(*(dataset[i][:2] for i in range(len(dataset))), strict=True)
    return BagOfFrames.statistics(torch.stack(inputs)), torch.as_tensor(labels)


def unweighted_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The library's UA: mean recall over the classes present (:class:`PresentClassRecall`)."""
    return PresentClassRecall(logits.shape[1])(logits, labels).item()


def fit(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float) -> torch.nn.Linear:
    """Multinomial logistic regression, L-BFGS until the gradient vanishes."""
    torch.manual_seed(0)
    model = torch.nn.Linear(x.shape[1], classes).double()
    optimiser = torch.optim.LBFGS(
        model.parameters(), max_iter=2000, tolerance_grad=1e-9, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y) + l2 * model.weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    return model


def training_set(
    corpus: str, root: str, fold: int, train_tempos: list[float]
) -> tuple[SpectrogramDataModule, torch.Tensor, torch.Tensor]:
    """The fold's DataModule and the statistics of every training clip at every tempo of
    ``train_tempos`` (the recipe's re-timed training audio, each tempo once)."""
    inputs, labels = [], []
    for tempo in train_tempos:
        data = SpectrogramDataModule(
            corpus=corpus, root=root, fold=fold, augment=Augment(tempos=[tempo]), **RECIPE
        )
        data.setup("fit")
        data.val_dataloader()  # sets the training statistics the inputs are normalised with
        torch.manual_seed(fold)  # training items longer than the input are cropped at random
        x, y = statistics(data.train_dataset)
        inputs.append(x)
        labels.append(y)
    return data, torch.cat(inputs), torch.cat(labels)


def probe_fold(
    corpus: str, root: str, fold: int, tempos: list[float], train_tempos: list[float]
) -> dict[float, float]:
    """Test UA of the probe on ``fold`` at every tempo."""
    data, x_train, y_train = training_set(corpus, root, fold, train_tempos)
    x_val, y_val = statistics(data.val_dataset)
    mean, std = x_train.mean(0), x_train.std(0).clamp_min(1e-8)

    def standardise(x: torch.Tensor) -> torch.Tensor:
        return ((x - mean) / std).double()

    best = max(
        L2_WEIGHTS,
        key=lambda l2: unweighted_accuracy(
            fit(standardise(x_train), y_train, data.num_classes, l2)(standardise(x_val)), y_val
        ),
    )
    model = fit(standardise(x_train), y_train, data.num_classes, best)
    scores = {}
    for tempo in tempos:
        test = SpectrogramDataModule(
            corpus=corpus, root=root, fold=fold, test_tempo=tempo, **RECIPE
        )
        test.model_input.set_statistics(data.model_input.mean, data.model_input.std)
        test.setup("test")
        x_test, y_test = statistics(test.test_dataset)
        with torch.no_grad():
            scores[tempo] = unweighted_accuracy(model(standardise(x_test)), y_test)
    print(f"fold {fold} (L2 {best:g}): " + ", ".join(f"{t:g}: {u:.3f}" for t, u in scores.items()))
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--corpus", default="ravdess")
    parser.add_argument("--root", required=True)
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--tempos", type=float, nargs="+", default=[0.5, 0.7, 1.0, 1.4, 2.0])
    parser.add_argument(
        "--train_tempos",
        type=float,
        nargs="+",
        default=[0.7, 0.85, 1.0, 1.2, 1.4],
        help="the training clips at each of these tempos (default: the recipe's augment_tempos)",
    )
    parser.add_argument("--output", type=Path, help="CSV of fold, tempo, UA")
    args = parser.parse_args(argv)
    rows = [
        (fold, tempo, ua)
        for fold in args.folds
        for tempo, ua in probe_fold(
            args.corpus, args.root, fold, args.tempos, args.train_tempos
        ).items()
    ]
    for tempo in args.tempos:
        values = [ua for _, t, ua in rows if t == tempo]
        print(f"tempo {tempo:g}: mean test UA {sum(values) / len(values):.3f} over {len(values)}")
    if args.output:
        with args.output.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["fold", "tempo", "UA"])
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
