"""``EmotionClassifier``: the LightningModule that trains any backbone for speech emotion recognition."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from mts_lightning.callbacks.kernel_averaging import KernelAveraging, averaging_layers
from mts_lightning.metrics import PresentClassF1, PresentClassRecall
from mts_lightning.plotting import confusion_matrix_figure, log_figure, save_figure
from mts_lightning.random_state import get_random_state, set_random_state
from mts_lightning.run_dir import run_dir
from mts_lightning.scheduling import plateau_frequency

# Constructor arguments that are objects rather than configuration: kept in `hparams` only
# when they arrive as plain config (a name, or a `class_path` dict under LightningCLI).
_OBJECT_ARGS = ("backbone", "optimizer", "lr_scheduler")


def _is_config(value: Any) -> bool:
    return value is None or isinstance(value, (str, dict))


def average_per_clip(logits: Tensor, clip_index: Tensor, num_clips: int) -> Tensor:
    """Mean of the segment logits ``(S, C)`` of each clip: ``(num_clips, C)``, where
    ``clip_index`` ``(S,)`` gives the clip (``0..num_clips-1``) of every segment."""
    if clip_index.shape != logits.shape[:1]:
        raise ValueError(
            f"clip_index must give one clip per segment: {tuple(clip_index.shape)} for "
            f"{logits.shape[0]} segments"
        )
    sums = logits.new_zeros(num_clips, logits.shape[1]).index_add_(0, clip_index, logits)
    counts = torch.bincount(clip_index, minlength=num_clips).clamp_min(1).to(logits.dtype)
    return sums / counts[:, None]


class EmotionClassifier(pl.LightningModule):
    """Speech emotion classifier: a backbone, cross-entropy, WA/UA/macro-F1 and confusion matrices.

    Args:
        backbone: a model-zoo name, built with ``mts_lightning.models.build_model(name,
            num_classes=..., input_shape=..., **backbone_kwargs)``, or any ``nn.Module``
            mapping ``(B, 1, T, F)`` spectrograms to ``(B, num_classes)`` logits.
        backbone_kwargs: extra arguments for ``build_model`` (e.g. ``conv_type``,
            ``scale_factors``); only with a name.
        num_classes: number of emotion classes; defaults to ``len(class_names)``.
        class_names: names of the classes, in label order (figures and predictions).
        input_shape: ``(channels, time, freq)`` of one example; passed to the zoo model and
            used as ``example_input_array``.
        class_weights: cross-entropy class weights: a list of ``num_classes`` floats,
            ``"auto"`` (``trainer.datamodule.class_weights``, read at fit start), or ``None``.
        label_smoothing: cross-entropy label smoothing, in ``[0, 1)``.
        optimizer: a callable from the parameters to an optimizer (``OptimizerCallable``,
            as LightningCLI builds it from ``class_path``/``init_args``); Adam, lr 1e-3.
        lr_scheduler: a callable from the optimizer to an LR scheduler, or ``None``.
        lr_scheduler_interval: ``"epoch"`` or ``"step"``: when the scheduler steps.
        lr_scheduler_monitor: metric a ``ReduceLROnPlateau`` scheduler watches; for a
            validation metric the scheduler steps only after validations, and a trainer whose
            validation rhythm it cannot follow is refused at train start
            (:func:`mts_lightning.scheduling.plateau_frequency`).
        confusion_matrix: log and save a confusion-matrix figure after each validation and
            test epoch.
        label_set_info: the label set the classes come from, as the datamodule describes it
            (``SpectrogramDataModule.label_set_info``: name, shared classes, the corpus
            classes that join each, the training corpus and its mapping); ``None`` when the
            classes are the corpus's own. Kept in the checkpoint's hyperparameters, where the
            CLI, ``EmotionRecognizer`` and exported files read it.

    Batches are ``(spectrograms, labels)``, or, for clips cut into segments, ``(spectrograms
    (S, 1, T, F), labels (B,), clip_index (S,))`` (see ``SpectrogramDataModule``): then the
    segment logits of each clip are averaged (:func:`average_per_clip`) before the loss, the
    metrics, the confusion matrix (which counts clips) and the predictions, so a clip is
    scored once whatever its length.

    Logged (epoch level, summed across devices): ``{stage}/loss``, ``{stage}/WA`` (overall
    accuracy), ``{stage}/UA`` (mean recall over the classes present in the targets, i.e.
    balanced accuracy) and ``{stage}/macro_F1`` (mean F1 over the same classes), stage in
    ``train``, ``val``, ``test`` (see :mod:`mts_lightning.metrics`). Confusion matrices go to TensorBoard and W&B as
    ``{stage}/confusion_matrix`` and to ``{log_dir}/confusion_matrix/{stage}_epoch{N:03d}.png``.

    Checkpoints: hyperparameters are saved, so ``EmotionClassifier.load_from_checkpoint(path)``
    alone rebuilds a model whose backbone was given by name (or, under LightningCLI, by
    ``class_path``). A backbone given as an ``nn.Module`` object, and an optimizer or
    scheduler given as Python callables, cannot be stored as configuration: pass them again,
    ``load_from_checkpoint(path, backbone=MyNet(...))`` (the weights still come from the
    checkpoint); without them the reloaded model uses the defaults. Checkpoints also hold the
    random generators' states (``random_state``), set again when ``fit`` resumes from one, so
    a resumed run draws the batches and dropout masks the uninterrupted run would have.
    """

    def __init__(
        self,
        backbone: str | nn.Module = "compact_cnn",
        backbone_kwargs: dict[str, Any] | None = None,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        input_shape: tuple[int, int, int] | None = None,
        class_weights: list[float] | Literal["auto"] | None = None,
        label_smoothing: float = 0.0,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        lr_scheduler_interval: Literal["epoch", "step"] = "epoch",
        lr_scheduler_monitor: str = "val/loss",
        confusion_matrix: bool = True,
        label_set_info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        with warnings.catch_warnings():
            # Object arguments are left out just below; their warning is noise.
            warnings.filterwarnings("ignore", message=".*is an instance of `nn.Module`.*")
            self.save_hyperparameters()
        # Under LightningCLI the hparams hold the config that built the objects; elsewhere the
        # objects themselves, which a checkpoint cannot store as configuration.
        objects = [k for k in _OBJECT_ARGS if not _is_config(self.hparams.get(k))]
        if objects:
            self.save_hyperparameters(ignore=objects)

        if num_classes is None:
            if class_names is None:
                raise ValueError("num_classes: give num_classes or class_names")
            num_classes = len(class_names)
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(class_names)} names but num_classes is {num_classes}"
            )
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        if lr_scheduler_interval not in ("epoch", "step"):
            raise ValueError(
                f"lr_scheduler_interval must be 'epoch' or 'step', got {lr_scheduler_interval!r}"
            )
        self.num_classes = num_classes
        self.class_names = (
            list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        )
        self.label_smoothing = float(label_smoothing)
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.lr_scheduler_interval = lr_scheduler_interval
        self.lr_scheduler_monitor = lr_scheduler_monitor
        self.plot_confusion_matrix = confusion_matrix
        if label_set_info is not None and list(label_set_info["classes"]) != self.class_names:
            raise ValueError(
                f"label_set_info: its classes {label_set_info['classes']} are not the model's "
                f"class_names {self.class_names}"
            )
        self.label_set_info = label_set_info
        self._restored_random_state: dict[str, Any] | None = None

        self._auto_class_weights = isinstance(class_weights, str)
        if self._auto_class_weights and class_weights != "auto":
            raise ValueError(f"class_weights must be a list, 'auto' or None, got {class_weights!r}")
        self._weighted = class_weights is not None
        weights = torch.ones(num_classes)
        if self._weighted and not self._auto_class_weights:
            weights = self._check_class_weights(class_weights)
        # A buffer, so weights read from the datamodule at fit start are in the checkpoint.
        self.register_buffer("class_weight", weights)

        self.backbone = self._build_backbone(backbone, backbone_kwargs, input_shape)
        if input_shape is not None:
            self.example_input_array = torch.zeros(1, *input_shape)

        metrics = MetricCollection(
            {
                "WA": MulticlassAccuracy(num_classes, average="micro"),
                "UA": PresentClassRecall(num_classes),
                "macro_F1": PresentClassF1(num_classes),
            }
        )
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_confmat = MulticlassConfusionMatrix(num_classes)
        self.test_confmat = MulticlassConfusionMatrix(num_classes)

    # ------------------------------------------------------------------ construction
    def _check_class_weights(self, class_weights: Any) -> Tensor:
        weights = torch.as_tensor(class_weights, dtype=torch.float32).flatten()
        if weights.numel() != self.num_classes:
            raise ValueError(
                f"class_weights has {weights.numel()} values but num_classes is {self.num_classes}"
            )
        if not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(
                f"class_weights must be finite, >= 0 and not all 0, got {weights.tolist()}"
            )
        return weights

    def _build_backbone(
        self,
        backbone: str | nn.Module,
        backbone_kwargs: dict[str, Any] | None,
        input_shape: Sequence[int] | None,
    ) -> nn.Module:
        if isinstance(backbone, nn.Module):
            if backbone_kwargs:
                raise ValueError("backbone_kwargs only applies to a backbone given by name")
            return backbone
        if not isinstance(backbone, str):
            raise ValueError(
                f"backbone must be a model name or an nn.Module, got {type(backbone).__name__}"
            )
        from mts_lightning.models import build_model
        from mts_lightning.models.registry import ModelArgumentError

        kwargs = dict(backbone_kwargs or {})
        for key in ("num_classes", "input_shape"):
            if key in kwargs:
                raise ValueError(
                    f"backbone_kwargs: {key} is the classifier's own argument (set from the "
                    f"data under the CLI); give it as model.{key} or leave it out"
                )
        kwargs["num_classes"] = self.num_classes
        if input_shape is not None:
            kwargs["input_shape"] = tuple(input_shape)
        try:
            return build_model(backbone, **kwargs)
        except ModelArgumentError as err:
            raise ValueError(f"backbone_kwargs: {err}") from None

    # ------------------------------------------------------------------ fit set-up
    def on_fit_start(self) -> None:
        restored, self._restored_random_state = self._restored_random_state, None
        if restored is not None and self.trainer.ckpt_path:
            # Here, after the model, data and callbacks are set up and before the first batch
            # is drawn (Lightning runs the sanity check with the generators isolated).
            set_random_state(restored)
        if self._auto_class_weights:
            datamodule = getattr(self.trainer, "datamodule", None)
            weights = getattr(datamodule, "class_weights", None)
            if weights is None:
                raise ValueError(
                    "class_weights='auto' reads trainer.datamodule.class_weights, but the "
                    "trainer has no datamodule with a `class_weights` attribute; pass the "
                    "weights as a list instead"
                )
            self.class_weight.copy_(self._check_class_weights(weights).to(self.class_weight))
        has_averaging = any(isinstance(cb, KernelAveraging) for cb in self.trainer.callbacks)
        layers = averaging_layers(self)
        if layers and not has_averaging:
            rank_zero_warn(
                f"the model has {len(layers)} MTS layer(s) with kernel_sharing "
                f"'{layers[0].kernel_sharing}' but no "
                "KernelAveraging callback is attached: the branch-kernel updates are lost at "
                "every forward. Add `mts_lightning.KernelAveraging()` to the trainer's "
                "callbacks (or use kernel_sharing='autograd').",
                category=UserWarning,
            )

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameters())
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        config: dict[str, Any] = {"scheduler": scheduler, "interval": self.lr_scheduler_interval}
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            # `frequency` is set in `on_train_start`, once the validation rhythm is known.
            config.update(monitor=self.lr_scheduler_monitor, strict=True)
        return {"optimizer": optimizer, "lr_scheduler": config}

    def on_train_start(self) -> None:
        """Step plateau schedulers that watch a validation metric only after validations,
        or refuse the run now if no frequency can do that (see ``plateau_frequency``)."""
        trainer = self.trainer
        for config in trainer.lr_scheduler_configs:
            if not (config.reduce_on_plateau and str(config.monitor).startswith("val")):
                continue
            config.frequency = plateau_frequency(
                monitor=str(config.monitor),
                interval=config.interval,
                validates=trainer.enable_validation,
                check_val_every_n_epoch=trainer.check_val_every_n_epoch,
                val_check_batch=trainer.val_check_batch,
                num_training_batches=trainer.num_training_batches,
                accumulate_grad_batches=trainer.accumulate_grad_batches,
            )

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning keeps no generator states: without them a resumed run would draw other
        # batch orders and dropout masks than the run it continues.
        checkpoint["random_state"] = get_random_state()
        # What was logged up to here is on disk too, should the process be killed next.
        for logger in self.trainer.loggers:
            logger.save()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._restored_random_state = checkpoint.get("random_state")

    # ------------------------------------------------------------------ steps
    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` for spectrograms ``(B, 1, T, F)``."""
        return self.backbone(x)

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy with the configured class weights and label smoothing."""
        return F.cross_entropy(
            logits,
            labels,
            weight=self.class_weight if self._weighted else None,
            label_smoothing=self.label_smoothing,
        )

    def _logits(self, x: Tensor, clip_index: Tensor | None, num_clips: int) -> Tensor:
        """Logits per item: per clip when ``clip_index`` maps segments to clips."""
        logits = self(x)
        return logits if clip_index is None else average_per_clip(logits, clip_index, num_clips)

    def _shared_step(self, batch: Any, stage: str) -> tuple[Tensor, Tensor, Tensor]:
        x, y, *clip_index = batch
        if len(clip_index) > 1:
            raise ValueError(
                "a batch is (spectrograms, labels) or (spectrograms, labels, clip_index), got "
                f"{len(batch)} items"
            )
        logits = self._logits(x, clip_index[0] if clip_index else None, y.shape[0])
        loss = self.loss(logits, y)
        preds = logits.argmax(dim=-1)
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(preds, y)
        batch_size = y.shape[0]
        self.log(
            f"{stage}/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            sync_dist=True,
            batch_size=batch_size,
        )
        self.log_dict(metrics, on_step=False, on_epoch=True, batch_size=batch_size)
        return loss, preds, y

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss, _, _ = self._shared_step(batch, "train")
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        _, preds, y = self._shared_step(batch, "val")
        self.val_confmat.update(preds, y)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        _, preds, y = self._shared_step(batch, "test")
        self.test_confmat.update(preds, y)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """Class probabilities of a batch: a tensor, ``(spectrograms, paths)``, or, for clips
        cut into segments, ``(spectrograms, paths, clip_index)`` (one row per clip).

        Returns ``{"probabilities": (B, C), "class_names": [...]}``, plus ``"paths"`` when
        the batch carries them. Labels in place of the paths are accepted too.
        """
        paths, clip_index = None, None
        if isinstance(batch, (tuple, list)):
            if len(batch) not in (2, 3):
                raise ValueError(
                    "a predict batch is a tensor, a pair (spectrograms, paths) or a triple "
                    f"(spectrograms, paths, clip_index), got a sequence of {len(batch)} items"
                )
            batch, paths, *rest = batch
            clip_index = rest[0] if rest else None
        num_clips = len(paths) if paths is not None else 0
        if isinstance(paths, Tensor):
            paths = None  # a labelled batch: the labels play no part in prediction
        probabilities = torch.softmax(self._logits(batch, clip_index, num_clips), dim=-1)
        result: dict[str, Any] = {
            "probabilities": probabilities,
            "class_names": list(self.class_names),
        }
        if paths is not None:
            result["paths"] = list(paths)
        return result

    # ------------------------------------------------------------------ confusion matrices
    def on_validation_epoch_end(self) -> None:
        self._confusion_matrix_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._confusion_matrix_epoch_end("test")

    def _confusion_matrix_epoch_end(self, stage: str) -> None:
        confmat = getattr(self, f"{stage}_confmat")
        if not self.plot_confusion_matrix or self.trainer.sanity_checking:
            confmat.reset()
            return
        matrix = confmat.compute()  # sums across devices: every rank must call it
        confmat.reset()
        if not self.trainer.is_global_zero:
            return
        epoch = self.current_epoch
        fig = confusion_matrix_figure(
            matrix.cpu().numpy(), self.class_names, title=f"{stage}, epoch {epoch}"
        )
        log_figure(self.trainer, f"{stage}/confusion_matrix", fig)
        path = os.path.join(
            run_dir(self.trainer), "confusion_matrix", f"{stage}_epoch{epoch:03d}.png"
        )
        save_figure(fig, path)
