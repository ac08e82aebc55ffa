"""Export a trained recognizer to ONNX or TorchScript: ``mts-lightning export``.

The exported graph maps a batch of mono 16-bit-range float waveforms ``(batch, samples)`` at
the training sample rate (or, with ``input="features"``, normalised spectrograms ``(batch,
time, freq)``) to ``logits`` and ``probabilities`` ``(batch, classes)``. The batch and time
axes are dynamic. Each row is one clip of ``samples`` samples (at least 1), treated exactly as
:class:`~mts_lightning.EmotionRecognizer` treats a clip of that length: one shorter than an
analysis frame (``n_fft`` samples) counts as zero-padded to it
(:func:`~mts_lightning.data.features.analysis_waveform`, shared by both), and the features are
made model input by the checkpoint's :class:`~mts_lightning.data.frontend.ModelInput` (the
recognizer's): normalised (waveform input), cut to the model's input length from their start,
or filled as its ``pad_mode`` says when shorter. Clips of different lengths are separate
calls: zeros appended to batch a clip with longer ones are part of that clip (its features and, with ``pad_mode: repeat``, what
is repeated). A segment-trained model scores the first input length only (the recognizer
averages every segment). An empty waveform (0 samples) fails in the runtime (an index out of
range), as the recognizer refuses it. MTS layers are exported in their frozen (inference) form.

The file carries its settings as JSON (ONNX: the ``mts_lightning`` metadata property;
TorchScript: the ``mts_lightning.json`` extra file): class names, input kind, sample rate,
feature settings, model input frames, and the normalisation statistics that a features-input
caller must apply.

Every export is checked before it is kept: the runtime (onnxruntime, or the TorchScript
interpreter) must give the PyTorch result within ``CHECK_TOLERANCE`` on inputs of four or five
lengths (one sample or frame among them) and batches of 1 to 3. The file is written next to
its destination and renamed into place only after the check, so a failed export leaves
nothing behind.
"""

from __future__ import annotations

import io
import json
import os
import re
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from mts_lightning.data.features import analysis_waveform
from mts_lightning.inference import EmotionRecognizer
from mts_lightning.io import atomic_path

ExportFormat = Literal["onnx", "torchscript"]
InputKind = Literal["waveform", "features"]
EXPORT_FORMATS: tuple[str, ...] = ("onnx", "torchscript")
INPUT_KINDS: tuple[str, ...] = ("waveform", "features")
#: Largest absolute difference allowed between the exported runtime and PyTorch.
CHECK_TOLERANCE = 1e-4
#: ONNX opset: 17 brought the STFT operator the waveform front end needs.
ONNX_OPSET = 18


class ExportError(RuntimeError):
    """A model that cannot be exported in the asked form; the message names the module."""


class InferenceGraph(nn.Module):
    """The exported computation: front end (optional), model input, backbone.

    ``forward`` maps waveforms ``(batch, samples)`` (or normalised features ``(batch, time,
    freq)``) to ``logits`` and ``probabilities`` ``(batch, classes)``. Every row is one clip of
    ``samples`` samples (``time`` frames), turned into model input by the recognizer's rules:
    :func:`~mts_lightning.data.features.analysis_waveform` for clips shorter than one analysis
    frame, then the recognizer's :class:`~mts_lightning.data.frontend.ModelInput`
    (normalisation of the front end's features, and :meth:`~ModelInput.cut` to the model's
    input from the clip's start).
    """

    def __init__(self, recognizer: EmotionRecognizer, input_kind: InputKind) -> None:
        super().__init__()
        self.front_end = recognizer.features if input_kind == "waveform" else None
        self.feature_config = recognizer.feature_config
        self.model_input = recognizer.model_input
        self.backbone = recognizer.model.backbone

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        # Counts are tensors computed from x, so that both exporters keep the axes dynamic.
        if self.front_end is not None:
            extended, length = analysis_waveform(x, self.feature_config)
            x = self.model_input.normalise(self.front_end(extended))
        else:
            length = torch.ones_like(x[:1, :, 0].sum(0), dtype=torch.long).sum()
        logits = self.backbone(self.model_input.cut(x, length=length).unsqueeze(1))
        return logits, torch.softmax(logits, dim=-1)


def export_metadata(recognizer: EmotionRecognizer, input_kind: InputKind) -> dict:
    """What a runtime caller needs to feed the graph and read its outputs."""
    model_input = recognizer.model_input
    return {
        "class_names": recognizer.class_names,
        "label_set": recognizer.label_set,
        "input": input_kind,
        "sample_rate": recognizer.feature_config.sample_rate,
        "features": asdict(recognizer.feature_config),
        "frames": model_input.frames,
        "pad_mode": model_input.pad_mode,
        "normalisation": {
            "mean": model_input.mean.tolist(),
            "std": model_input.std.tolist(),
            "applied_inside": input_kind == "waveform",
        },
        "outputs": ["logits", "probabilities"],
    }


def export_recognizer(
    recognizer: EmotionRecognizer,
    output: str | os.PathLike,
    format: ExportFormat = "onnx",
    input_kind: InputKind = "waveform",
) -> Path:
    """Write ``recognizer`` as an ONNX or TorchScript file, checked against PyTorch.

    Raises :class:`ExportError` naming the module that cannot be exported, or the mismatch
    the check found; ``ValueError`` for an unknown format or input kind.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")
    if input_kind not in INPUT_KINDS:
        raise ValueError(f"input_kind must be one of {', '.join(INPUT_KINDS)}, got {input_kind!r}")
    output = Path(output)
    if not output.parent.is_dir():
        raise ValueError(f"output folder {output.parent} does not exist")
    graph = InferenceGraph(recognizer, input_kind).cpu().eval()
    inputs = _check_inputs(recognizer, input_kind)
    metadata = json.dumps(export_metadata(recognizer, input_kind))
    writer = _write_onnx if format == "onnx" else _write_torchscript
    with atomic_path(output) as tmp:
        run = writer(graph, inputs[0], tmp, metadata, input_kind)
        _check(graph, run, inputs, format)
    return output


# ---------------------------------------------------------------------- writers
def _write_onnx(
    graph: InferenceGraph, example: Tensor, path: Path, metadata: str, input_kind: InputKind
) -> Callable[[Tensor], np.ndarray]:
    import onnx
    import onnxruntime

    time_axis = torch.export.Dim("samples" if input_kind == "waveform" else "time", min=1)
    batch_axis = torch.export.Dim("batch", min=1)
    try:
        _onnx_export(graph, example, path, {0: batch_axis, 1: time_axis}, input_kind)
    except Exception as err:  # noqa: BLE001 - exporters raise many kinds; named below
        raise ExportError(_culprit(graph, example, err, "ONNX")) from err
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = "mts_lightning", metadata
    onnx.save(model, str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: session.run(["probabilities"], {input_kind: x.numpy()})[0]


def _onnx_export(
    module: nn.Module, example: Tensor, path: str | io.BytesIO, axes: dict | None, name: str
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's progress notes and deprecations
        torch.onnx.export(
            module,
            (example,),
            path,
            input_names=[name],
            output_names=["logits", "probabilities"],
            dynamic_shapes=(axes,) if axes else None,
            opset_version=ONNX_OPSET,
            dynamo=True,
            verbose=False,
        )


def _write_torchscript(
    graph: InferenceGraph, example: Tensor, path: Path, metadata: str, input_kind: InputKind
) -> Callable[[Tensor], np.ndarray]:
    try:
        traced = _trace(graph, example)
    except Exception as err:  # noqa: BLE001 - the tracer raises many kinds; named below
        raise ExportError(_culprit(graph, example, err, "TorchScript")) from err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        torch.jit.save(traced, str(path), _extra_files={"mts_lightning.json": metadata})
        loaded = torch.jit.load(str(path))

    def run(x: Tensor) -> np.ndarray:
        with torch.inference_mode():
            return loaded(x)[1].numpy()

    return run


def _trace(module: nn.Module, example: Tensor) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` that refuses what a trace would bake in (a number or array taken
    from a tensor), instead of warning and recording a graph that is wrong for other inputs.

    Python booleans taken from tensors pass: they are mostly shape checks that hold for every
    input; one that steers the computation is caught by the check on several input lengths.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        traced = torch.jit.trace(module, (example,), check_trace=False)
    baked = [str(w.message) for w in caught if _BAKED_VALUE.search(str(w.message))]
    if baked:
        raise RuntimeError(baked[0].split(". ")[0])
    return traced


#: Tracer warnings about a value that the trace records as a constant.
_BAKED_VALUE = re.compile(
    r"Converting a tensor to a (NumPy array|Python (number|integer|float|index))"
)


# ---------------------------------------------------------------------- checks
def _check_inputs(recognizer: EmotionRecognizer, input_kind: InputKind) -> list[Tensor]:
    """Deterministic inputs ``(batch, length)``, batches of 1 to 3, of the model input's length,
    longer, shorter, (waveforms) shorter than the STFT's reflect padding, and one sample or
    frame. The first is the export example: it has no axis of size 1, which the exporter
    would fix."""
    generator = torch.Generator().manual_seed(0)
    config = recognizer.feature_config
    if input_kind == "waveform":
        full = max(config.n_fft, (recognizer.model_input.frames - 1) * config.hop_length)
        sizes = [(2, full), (3, full * 3 // 2 + 123), (1, full // 2), (1, config.n_fft // 2)]
        return [0.1 * torch.randn(*size, generator=generator) for size in [*sizes, (1, 1)]]
    full = max(2, recognizer.model_input.frames)
    sizes = [(2, full), (3, full * 3 // 2), (1, full // 2), (1, 1)]
    return [torch.randn(*size, config.num_bins, generator=generator) for size in sizes]


def _check(
    graph: InferenceGraph,
    run: Callable[[Tensor], np.ndarray],
    inputs: list[Tensor],
    format: str,
) -> None:
    for x in inputs:
        with torch.inference_mode():
            expected = graph(x)[1].numpy()
        got = run(x)
        error = float(np.abs(got - expected).max()) if got.shape == expected.shape else np.inf
        if not error <= CHECK_TOLERANCE:
            raise ExportError(
                f"the {format} export does not reproduce PyTorch on an input of shape "
                f"{tuple(x.shape)}: largest difference {error:.3g} (allowed "
                f"{CHECK_TOLERANCE:g}); a module computes something the exporter cannot follow "
                "(a Python value taken from a tensor, or shape-dependent Python code)"
            )


def _culprit(graph: nn.Module, example: Tensor, err: Exception, target: str) -> str:
    """Name the innermost module that fails to export on its own (the module that the
    exporter cannot handle), with the exporter's first line."""
    captured: dict[nn.Module, tuple] = {}

    def capture(module: nn.Module, args: tuple, output: object) -> None:
        captured.setdefault(module, args)

    hooks = [m.register_forward_hook(capture) for m in graph.modules()]
    try:
        with torch.no_grad():
            graph(example)
    finally:
        for hook in hooks:
            hook.remove()
    names = {m: n for n, m in graph.named_modules()}
    exports = _onnx_probe if target == "ONNX" else _trace_probe

    culprit = graph
    while True:
        failing = next(
            (c for c in culprit.children() if c in captured and not exports(c, captured[c])),
            None,
        )
        if failing is None:
            break
        culprit = failing
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    where = names.get(culprit) or "the model"
    return (
        f"cannot export to {target}: module {where!r} ({type(culprit).__module__}."
        f"{type(culprit).__qualname__}) is not exportable ({type(err).__name__}: "
        f"{first_line[:300]}); replace it with exportable operations, or export with "
        "--input features if it is the waveform front end"
    )


def _onnx_probe(module: nn.Module, args: tuple) -> bool:
    if len(args) != 1 or not isinstance(args[0], Tensor):
        return True  # not probed alone: only single-tensor modules are tried
    try:
        _onnx_export(module, args[0], io.BytesIO(), None, "input")
    except Exception:  # noqa: BLE001
        return False
    return True


def _trace_probe(module: nn.Module, args: tuple) -> bool:
    if len(args) != 1 or not isinstance(args[0], Tensor):
        return True
    try:
        _trace(module, args[0])
    except Exception:  # noqa: BLE001
        return False
    return True


# ---------------------------------------------------------------------- command line
def export_main(argv: list[str]) -> Path:
    """``mts-lightning export --ckpt_path CKPT --format onnx|torchscript --output FILE
    [--input waveform|features]``; errors are one line and exit status 2."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(
        prog="mts-lightning export",
        description="Write a trained checkpoint as an ONNX or TorchScript file (waveform or "
        "normalised-spectrogram input, dynamic batch and time axes; logits and probabilities "
        "out; class names and feature settings in the file's metadata).",
    )
    parser.add_argument("--ckpt_path", required=True, help="checkpoint written by `fit`")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx")
    parser.add_argument("--output", required=True, help="file to write (.onnx or .pt)")
    parser.add_argument(
        "--input",
        choices=INPUT_KINDS,
        default="waveform",
        help="waveform: the front end is inside the graph; features: normalised spectrograms "
        "(time, freq) computed by the caller with the settings in the metadata",
    )
    args = parser.parse_args(argv)
    try:
        recognizer = EmotionRecognizer.from_checkpoint(args.ckpt_path)
        path = export_recognizer(recognizer, args.output, args.format, args.input)
    except (ValueError, OSError, ExportError) as err:
        sys.stderr.write(f"mts-lightning export: error: {err}\n")
        sys.exit(2)
    print(
        f"Wrote {path} ({args.format}, {args.input} input, {len(recognizer.class_names)} "
        f"classes); checked against PyTorch within {CHECK_TOLERANCE:g}"
    )
    return path
