"""``EmotionRecognizer``: a trained checkpoint as a plain Python object.

It needs nothing but the checkpoint: the model, the class names, the feature settings and the
normalisation statistics of the training split all travel inside it. Waveforms go in, labels
and class probabilities come out::

    recognizer = EmotionRecognizer.from_checkpoint("run/checkpoints/last.ckpt")
    recognizer.predict_file("clip.wav")            # Prediction(label='angry', probabilities={...})
    recognizer.timeline("call.wav", window=3.0)    # one row per window + an aggregate

A clip is turned into model input exactly as ``mts-lightning predict`` does it: read and mixed
to mono, resampled to the training rate, featurised, then made model input by the training
run's :class:`~mts_lightning.data.frontend.ModelInput`: normalised, cut to the model's input
length from its start (padded after normalisation when shorter, with zeros or by repeating the
clip: ``pad_mode``). A model trained on segments (``segment_duration``) scores every segment
of the clip and averages their logits (:func:`~mts_lightning.module.average_per_clip`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch import Tensor

from mts_lightning.data.audio import (
    BadAudioError,
    audio_info,
    frames_by_channels,
    load_audio,
    resample,
    samples_to_float,
    to_mono,
)
from mts_lightning.data.features import (
    FeatureConfig,
    SpectrogramFeature,
    analysis_waveform,
)
from mts_lightning.data.frontend import ModelInput
from mts_lightning.data.settings import saved_features
from mts_lightning.module import EmotionClassifier, average_per_clip
from mts_lightning.nn import freeze as freeze_mts_layers


@dataclass(frozen=True)
class Prediction:
    """The label of one clip and the probability of every class (in class order)."""

    label: str
    probabilities: dict[str, float]
    path: str | None = None


@dataclass(frozen=True)
class TimelineRow:
    """One analysis window of a long recording."""

    start: float
    end: float
    label: str
    probabilities: dict[str, float]


@dataclass(frozen=True)
class Timeline:
    """Per-window predictions of a recording, and the recording's aggregate.

    The aggregate averages the windows' probabilities (every window counts once).
    """

    rows: list[TimelineRow]
    aggregate: Prediction

    def to_csv(self, path: str | os.PathLike) -> None:
        """One line per window: ``start_s, end_s, label``, then one probability per class."""
        classes = list(self.aggregate.probabilities)
        lines = [",".join(["start_s", "end_s", "label", *classes])]
        for row in self.rows:
            probs = [f"{row.probabilities[c]:.6f}" for c in classes]
            lines.append(",".join([f"{row.start:.3f}", f"{row.end:.3f}", row.label, *probs]))
        Path(path).write_text("\n".join(lines) + "\n")


@dataclass(frozen=True)
class FileBatch:
    """What :meth:`EmotionRecognizer.predict_files` returns: the predictions of the usable
    files, in input order, and the files that could not be used with the reason."""

    predictions: list[Prediction]
    skipped: list[tuple[str, str]] = field(default_factory=list)


class EmotionRecognizer:
    """Speech emotion recognition with a trained ``EmotionClassifier``.

    Args:
        model: the trained classifier (its backbone is used in eval mode).
        feature_config: the feature settings of training.
        model_input: features -> model input as in training (statistics ``(F,)``, frames,
            ``pad_mode``, segments; :meth:`ModelInput.from_checkpoint
            <mts_lightning.data.frontend.ModelInput.from_checkpoint>`).
        device: where the model runs.
        freeze: precompute the MTS layers' branch kernels once (the inference form; same
            outputs, faster); see :func:`mts_lightning.nn.freeze`.

    Example:
        A checkpoint of a tiny model trained for two steps (a real one comes from
        ``mts-lightning fit``), then a waveform classified from the checkpoint alone:

        >>> import tempfile
        >>> import lightning.pytorch as pl
        >>> import torch
        >>> from mts_lightning import EmotionClassifier, EmotionRecognizer, SpectrogramDataModule
        >>> folder = tempfile.TemporaryDirectory()
        >>> data = SpectrogramDataModule(
        ...     corpus_options={"num_classes": 3, "num_speakers": 5, "clips_per_speaker": 6,
        ...                     "duration": 1.0},
        ...     duration=1.0, batch_size=4, cache_dir=folder.name)
        >>> data.setup("fit")
        >>> model = EmotionClassifier("compact_cnn", class_names=data.class_names,
        ...                           input_shape=data.input_shape,
        ...                           backbone_kwargs={"mts": {"kernel_sharing": "autograd"}})
        >>> trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False,
        ...                      enable_progress_bar=False, enable_model_summary=False,
        ...                      default_root_dir=folder.name)
        >>> trainer.fit(model, datamodule=data)
        >>> trainer.save_checkpoint(f"{folder.name}/tiny.ckpt")
        >>> recognizer = EmotionRecognizer.from_checkpoint(f"{folder.name}/tiny.ckpt")
        >>> prediction = recognizer.predict(torch.randn(16000), sample_rate=16000)  # 1 s, 16 kHz
        >>> prediction.label in recognizer.class_names
        True
        >>> sorted(prediction.probabilities), round(sum(prediction.probabilities.values()), 4)
        (['pattern_0', 'pattern_1', 'pattern_2'], 1.0)
        >>> folder.cleanup()
    """

    def __init__(
        self,
        model: EmotionClassifier,
        feature_config: FeatureConfig,
        model_input: ModelInput,
        device: str | torch.device = "cpu",
        freeze: bool = True,
    ) -> None:
        if model_input.mean is None or model_input.mean.shape != (feature_config.num_bins,):
            shape = None if model_input.mean is None else tuple(model_input.mean.shape)
            raise ValueError(
                f"model_input's statistics must have shape ({feature_config.num_bins},) (one "
                f"value per frequency bin of the features), got {shape}"
            )
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        if freeze:
            freeze_mts_layers(self.model)
        self.class_names = list(model.class_names)
        #: The label set of the classes as the checkpoint keeps it (name, shared classes,
        #: the corpus classes joining each, the training corpus), or None.
        self.label_set: dict[str, Any] | None = model.label_set_info
        self.feature_config = feature_config
        self.features: SpectrogramFeature = feature_config.kind_class(feature_config).eval()
        self.model_input = model_input

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, device: str | torch.device = "cpu", freeze: bool = True
    ) -> EmotionRecognizer:
        """Restore a recognizer from a checkpoint written by ``mts-lightning fit``.

        Raises ``ValueError`` for a file that is not a checkpoint of this library (missing
        model hyperparameters, feature settings or normalisation statistics).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist")
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - torch raises many kinds for a foreign file
            raise ValueError(
                f"{path} is not a readable PyTorch checkpoint ({type(err).__name__}: {err})"
            ) from err
        if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
            raise ValueError(
                f"{path} is not an mts-lightning checkpoint: expected a Lightning checkpoint with "
                "'state_dict' and 'hyper_parameters' (written by `mts-lightning fit`)"
            )
        model_input = ModelInput.from_checkpoint(ckpt, str(path))
        data = ckpt["datamodule_hyper_parameters"]
        model = EmotionClassifier.load_from_checkpoint(path, map_location="cpu")
        config = saved_features(data)
        return cls(model, config, model_input, device=device, freeze=freeze)

    # ------------------------------------------------------------------ single clips
    def predict(self, waveform: Tensor | np.ndarray, sample_rate: int) -> Prediction:
        """Classify a waveform at ``sample_rate`` Hz (any positive integer; resampled to the
        training rate, :func:`~mts_lightning.data.audio.resample`).

        ``waveform`` is 1-D ``(samples,)`` or 2-D with the channels on its shorter axis, at most
        :data:`~mts_lightning.data.audio.MAX_CHANNELS` of them: ``(channels, samples)`` as in
        torch, or ``(samples, channels)`` as soundfile and ``scipy.io.wavfile`` return it
        (:func:`~mts_lightning.data.audio.frames_by_channels`); the channels are averaged.
        Float samples are taken as they are (full scale 1.0); integer samples as PCM, as in a
        WAV file: int16 ``/ 32768``, int32 ``/ 2**31``, int8 ``/ 128``, uint8 ``(x - 128) /
        128`` (:func:`~mts_lightning.data.audio.samples_to_float`). Raises ``ValueError``, one
        line naming what is wrong, for an ambiguous or 3-D shape, int64, bool or complex
        samples, no samples, or NaN and infinite ones.

        A clip shorter than one analysis frame (``n_fft`` samples at the training rate) is
        zero-padded to it; the features of a clip shorter than the model input are padded
        after normalisation, as in training.
        """
        mono = self._prepare(waveform, sample_rate, "waveform")
        return self._predictions([self._windows(mono)])[0]

    def predict_file(self, path: str | os.PathLike) -> Prediction:
        """Classify one audio file (read with soundfile; every channel layout and rate)."""
        return self.predict_files([path]).predictions[0]

    def predict_files(
        self, paths: Sequence[str | os.PathLike], batch_size: int = 32, skip_bad_files: bool = False
    ) -> FileBatch:
        """Classify many files, ``batch_size`` model inputs at a time.

        A file that cannot be used raises :class:`BadAudioError` naming it, unless
        ``skip_bad_files``: then it is left out and listed in ``FileBatch.skipped``.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        predictions: list[Prediction] = []
        skipped: list[tuple[str, str]] = []
        pending: list[tuple[str, Tensor]] = []

        def flush() -> None:
            names = [p for p, _ in pending]
            predictions.extend(self._predictions([w for _, w in pending], paths=names))
            pending.clear()

        for path in paths:
            try:
                waveform = load_audio(path, self.feature_config.sample_rate, min_samples=1)
            except BadAudioError as err:
                if not skip_bad_files:
                    raise
                skipped.append((err.path, err.reason))
                continue
            pending.append((str(path), self._windows(waveform)))
            if sum(w.shape[0] for _, w in pending) >= batch_size:
                flush()
        if pending:
            flush()
        return FileBatch(predictions, skipped)

    # ------------------------------------------------------------------ long recordings
    def timeline(
        self,
        source: str | os.PathLike | Tensor | np.ndarray,
        sample_rate: int | None = None,
        window: float | None = None,
        hop: float | None = None,
        batch_size: int = 32,
    ) -> Timeline:
        """Classify a long recording window by window.

        Args:
            source: an audio file, or a waveform with its ``sample_rate``, taken as
                :meth:`predict` takes it (any layout of channels, float or integer PCM).
            window: seconds per window; default: the model's input length.
            hop: seconds between window starts; default: half a window.
            batch_size: windows per model call.

        A file is read window by window with soundfile, so memory stays bounded whatever the
        recording's length. The last window ends at the end of the recording; a recording
        shorter than one window gives one (padded) window.
        """
        model_seconds = (
            (self.model_input.frames - 1)
            * self.feature_config.hop_length
            / self.feature_config.sample_rate
        )
        window = model_seconds if window is None else float(window)
        hop = window / 2 if hop is None else float(hop)
        if not window > 0 or not math.isfinite(window):
            raise ValueError(f"window must be a positive number of seconds, got {window}")
        if not hop > 0 or not math.isfinite(hop):
            raise ValueError(f"hop must be a positive number of seconds, got {hop}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rows: list[TimelineRow] = []
        batch: list[tuple[float, float, Tensor]] = []

        def flush() -> None:
            preds = self._predictions([w for _, _, w in batch])
            for (start, end, _), pred in zip(batch, preds, strict=True):
                rows.append(TimelineRow(start, end, pred.label, pred.probabilities))
            batch.clear()

        for start, end, chunk in self._window_chunks(source, sample_rate, window, hop):
            batch.append((start, end, self.model_input.cut(self._features(chunk))[None, None]))
            if len(batch) >= batch_size:
                flush()
        if batch:
            flush()
        mean = {c: float(np.mean([r.probabilities[c] for r in rows])) for c in self.class_names}
        label = max(mean, key=mean.__getitem__)
        path = None if isinstance(source, (Tensor, np.ndarray)) else os.fspath(source)
        return Timeline(rows, Prediction(label, mean, path))

    def _window_chunks(
        self,
        source: str | os.PathLike | Tensor | np.ndarray,
        sample_rate: int | None,
        window: float,
        hop: float,
    ) -> Iterator[tuple[float, float, Tensor]]:
        """``(start_s, end_s, mono waveform at the training rate)`` per window."""
        if isinstance(source, (Tensor, np.ndarray)):
            if sample_rate is None:
                raise ValueError("sample_rate is required with a waveform source")
            mono = self._prepare(source, sample_rate, "waveform")
            rate = self.feature_config.sample_rate
            for start, stop in _window_bounds(mono.numel(), rate, window, hop):
                yield start / rate, stop / rate, mono[start:stop]
            return
        path = Path(source)
        info = audio_info(path, check_truncation=True)  # load_audio's checks, header only
        if info.frames == 0:
            raise BadAudioError(path, "no audio samples (0 frames)")
        with sf.SoundFile(str(path)) as f:
            for start, stop in _window_bounds(info.frames, info.samplerate, window, hop):
                f.seek(start)
                data = f.read(stop - start, dtype="float32", always_2d=True)
                if not np.isfinite(data).all():
                    raise BadAudioError(
                        path,
                        f"audio contains NaN or infinite samples near {start / info.samplerate:.2f} s",
                    )
                mono = torch.from_numpy(to_mono(data, path))
                mono = resample(mono, info.samplerate, self.feature_config.sample_rate)
                yield start / info.samplerate, stop / info.samplerate, mono

    # ------------------------------------------------------------------ internals
    def _prepare(self, waveform: Tensor | np.ndarray, sample_rate: int, what: str) -> Tensor:
        """Check a waveform argument and return it mono, float32, at the training rate."""
        if (
            isinstance(sample_rate, bool)
            or not isinstance(sample_rate, (int, np.integer))
            or sample_rate <= 0
        ):
            raise ValueError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
        samples = samples_to_float(waveform, what)
        if samples.numel() == 0:
            raise ValueError(f"{what} has no samples (shape {tuple(samples.shape)})")
        frames = frames_by_channels(samples, what)
        if not torch.isfinite(frames).all():
            raise ValueError(f"{what} contains NaN or infinite samples")
        mono = torch.from_numpy(to_mono(frames.numpy(), what))
        return resample(mono, int(sample_rate), self.feature_config.sample_rate)

    def _features(self, mono: Tensor) -> Tensor:
        """Normalised features ``(time, freq)`` of a mono waveform of >= 1 sample; one shorter
        than an analysis frame counts as zero-padded to it (:func:`analysis_waveform`, the
        rule that the exported graph applies too)."""
        with torch.inference_mode():
            extended, frames = analysis_waveform(mono[None], self.feature_config)
            features = self.features(extended)[0, : int(frames)]
            return self.model_input.normalise(features)

    def _windows(self, mono: Tensor) -> Tensor:
        """Model inputs ``(N, 1, frames, F)`` of one clip: one, or one per segment."""
        return self.model_input.segments(self._features(mono))

    @torch.inference_mode()
    def _predictions(
        self, clips: Sequence[Tensor], paths: Sequence[str] | None = None
    ) -> list[Prediction]:
        """One prediction per clip; a clip of several segments averages their logits."""
        clip_index = torch.cat([torch.full((len(c),), i) for i, c in enumerate(clips)])
        logits = self.model(torch.cat(list(clips)).to(self.device)).float().cpu()
        per_clip = average_per_clip(logits, clip_index, len(clips))
        probabilities = torch.softmax(per_clip, dim=-1)
        results = []
        for i, probs in enumerate(probabilities.tolist()):
            mapping = dict(zip(self.class_names, probs, strict=True))
            label = self.class_names[int(np.argmax(probs))]
            results.append(Prediction(label, mapping, paths[i] if paths else None))
        return results


def _window_bounds(total: int, rate: int, window: float, hop: float) -> list[tuple[int, int]]:
    """Sample ranges ``[start, stop)`` of windows over ``total`` samples at ``rate``."""
    size = max(1, round(window * rate))
    step = max(1, round(hop * rate))
    if total <= size:
        return [(0, total)]
    starts = list(range(0, total - size + 1, step))
    if starts[-1] + size < total:
        starts.append(total - size)
    return [(s, s + size) for s in starts]


#: What names a recording's timeline, in place of the recording's extension (``.png``: plot).
TIMELINE_SUFFIX = ".timeline.csv"


def timeline_outputs(
    files: Sequence[str | os.PathLike], output_dir: str | os.PathLike = "."
) -> dict[str, Path]:
    """Where the timeline of each recording goes in ``output_dir``.

    A recording's timeline mirrors its path below the recordings' deepest common folder, with
    its extension replaced by :data:`TIMELINE_SUFFIX`: ``a/call.wav`` and ``b/call.wav`` give
    ``a/call.timeline.csv`` and ``b/call.timeline.csv``; recordings of one folder give
    ``<name>.timeline.csv`` each. So no output of one command replaces another.

    Returns:
        One entry per distinct recording, in order, keyed by the path as first given: a path
        given again (however spelled, ``./x`` or ``d/../x``) is the same recording. Links to
        one file under different names are different recordings with different outputs.

    Raises:
        ValueError: naming two recordings that would still share an output (the same folder
            and name but for the extension, ``call.wav`` and ``call.flac``).
    """
    distinct: dict[str, str] = {}
    for file in files:
        distinct.setdefault(os.path.abspath(file), os.fspath(file))
    common = os.path.commonpath([os.path.dirname(path) for path in distinct])
    outputs: dict[str, Path] = {}
    owners: dict[Path, str] = {}
    for absolute, given in distinct.items():
        relative = Path(os.path.relpath(absolute, common))
        output = Path(output_dir, relative.with_name(relative.stem + TIMELINE_SUFFIX))
        if output in owners:
            raise ValueError(
                f"{owners[output]} and {given} would both be written to {output} (same folder, "
                "same name but for the extension): rename one, or run them separately"
            )
        owners[output] = given
        outputs[given] = output
    return outputs


def timeline_main(argv: list[str]) -> list[Path]:
    """``mts-lightning predict --timeline --ckpt_path CKPT FILE... [--window S] [--hop S]
    [--output_dir DIR] [--plot]``: one ``<name>.timeline.csv`` per recording (and with
    ``--plot`` a ``<name>.timeline.png`` of the class probabilities over time), named by
    :func:`timeline_outputs`; files of those names from an earlier command are replaced.
    Errors are one line, exit 2; outputs that would collide are refused before any work."""
    import argparse
    import sys
    from collections import Counter

    from mts_lightning.plotting import save_figure, timeline_figure

    parser = argparse.ArgumentParser(
        prog="mts-lightning predict --timeline",
        description="Classify long recordings window by window (read in blocks, any length).",
    )
    parser.add_argument("files", nargs="+", help="audio files")
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `fit`")
    parser.add_argument("--window", type=float, default=None, help="seconds (default: model input)")
    parser.add_argument("--hop", type=float, default=None, help="seconds (default: half a window)")
    parser.add_argument(
        "--output_dir",
        default=".",
        help="where the CSV (and PNG) files go, in subfolders mirroring the recordings' own "
        "below their common folder; files of the same names are replaced",
    )
    parser.add_argument("--plot", action="store_true", help="also write probabilities as PNG")
    args = parser.parse_args([a for a in argv if a != "--timeline"])
    output_dir = Path(args.output_dir)
    written: list[Path] = []
    try:
        outputs = timeline_outputs(args.files, output_dir)
        times_given = Counter(os.path.abspath(file) for file in args.files)
        for file in outputs:
            if times_given[os.path.abspath(file)] > 1:
                print(f"{file} is given {times_given[os.path.abspath(file)]} times: analysed once")
        output_dir.mkdir(parents=True, exist_ok=True)
        recognizer = EmotionRecognizer.from_checkpoint(args.ckpt_path)
        for file, csv_path in outputs.items():
            timeline = recognizer.timeline(file, window=args.window, hop=args.hop)
            csv_path.parent.mkdir(parents=True, exist_ok=True)
            timeline.to_csv(csv_path)
            written.append(csv_path)
            if args.plot:
                probabilities = {
                    c: [r.probabilities[c] for r in timeline.rows] for c in recognizer.class_names
                }
                fig = timeline_figure(
                    [r.start for r in timeline.rows],
                    [r.end for r in timeline.rows],
                    probabilities,
                    f"{Path(file).name}: {timeline.aggregate.label} overall",
                )
                png_path = csv_path.with_suffix(".png")
                save_figure(fig, png_path)
                written.append(png_path)
            print(
                f"{file}: {len(timeline.rows)} windows, overall {timeline.aggregate.label} "
                f"({timeline.aggregate.probabilities[timeline.aggregate.label]:.3f}) -> {csv_path}"
            )
    except (ValueError, OSError) as err:
        sys.stderr.write(f"mts-lightning predict --timeline: error: {err}\n")
        sys.exit(2)
    return written
