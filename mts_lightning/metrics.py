"""Class-averaged metrics over the classes present in the targets: UA and macro-F1.

Speech-emotion splits often lack a class (small corpora, one speaker left out). Averaging a
per-class score over every class of the corpus then counts an absent class as 0 and lowers
the figure for a reason that has nothing to do with the model. Here a class counts when it
has at least one target in the data seen so far:

- ``PresentClassRecall``, the SER field's UA (unweighted accuracy): the mean recall over the
  present classes, scikit-learn's ``balanced_accuracy_score``.
- ``PresentClassF1``: the mean F1 over the same classes. A class that is only predicted, never
  a target, is left out (its false positives still lower nothing else's score, as in any
  per-class F1); scikit-learn's ``f1_score(average="macro")`` would count it as 0, since it
  averages over the union of targets and predictions.

Both sum per-class counts (``add_state(..., dist_reduce_fx="sum")``), so they are exact across
batches and devices. With no target at all they give NaN, not a made-up number.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class _PerClassCounts(Metric):
    """Per-class hits, predictions and targets of a multiclass problem.

    ``update(preds, target)`` takes class indices ``(N,)`` (or logits/probabilities ``(N, C)``,
    reduced with ``argmax``) and targets ``(N,)``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        self.num_classes = num_classes
        for name in ("hits", "predicted", "support"):
            self.add_state(name, torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        if preds.ndim == target.ndim + 1:
            preds = preds.argmax(dim=-1)
        preds, target = preds.reshape(-1).long(), target.reshape(-1).long()
        if preds.shape != target.shape:
            raise ValueError(
                f"preds and target must hold one class each per item, got {tuple(preds.shape)} "
                f"and {tuple(target.shape)}"
            )
        for name, values in (("preds", preds), ("target", target)):
            if values.numel() and (values.min() < 0 or values.max() >= self.num_classes):
                raise ValueError(f"{name} must be class indices in [0, {self.num_classes - 1}]")
        n = self.num_classes
        self.hits += torch.bincount(target[preds == target], minlength=n)
        self.predicted += torch.bincount(preds, minlength=n)
        self.support += torch.bincount(target, minlength=n)


class PresentClassRecall(_PerClassCounts):
    """UA: the mean recall over the classes that have targets (balanced accuracy)."""

    def compute(self) -> Tensor:
        present = self.support > 0
        recall = self.hits[present].double() / self.support[present].double()
        return recall.mean().float()  # NaN when nothing is present


class PresentClassF1(_PerClassCounts):
    """Macro-F1 over the classes that have targets."""

    def compute(self) -> Tensor:
        present = self.support > 0
        hits = self.hits[present].double()
        # F1 = 2 TP / (2 TP + FP + FN) = 2 TP / (predicted + support); support > 0 here.
        f1 = 2 * hits / (self.predicted[present] + self.support[present]).double()
        return f1.mean().float()
