"""Where do a model's predictions go when the speaking rate changes?

For each run folder of ``mts-lightning fit`` or ``mts-lightning experiment`` (its best
checkpoint and ``split_speakers.json``), the test speakers' clips of the corpus are re-timed
with the pitch kept (``mts_lightning.data.tempo.change_tempo``) at every tempo asked and
classified with :class:`mts_lightning.EmotionRecognizer`. Printed per run and tempo: the UA and
the share of clips predicted as each class, next to the clips' true class shares, and the
shift: how far those shares moved from tempo 1.0's (total variation distance, 0 to 1; when
1.0 is among the tempos). A model that
reads the speaking rate as an emotion cue moves its predictions towards the slow classes when
the clips are slowed down and towards the fast ones when they are sped up; one that does not
keeps the shares of tempo 1.0.

    python benchmarks/rate_shift.py --root data/speech --tempos 0.7,1.0,1.4 \\
        experiments/speaking_rate_speech/runs/mts_before/fold0_seed0 \\
        experiments/speaking_rate_speech/runs/mts/fold0_seed0

``--json PATH`` also writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from mts_lightning import EmotionRecognizer
from mts_lightning.data.audio import load_audio
from mts_lightning.data.corpora import get_corpus
from mts_lightning.data.tempo import change_tempo, check_tempo


def best_checkpoint(run: Path) -> Path:
    """The run's best checkpoint (``best-*.ckpt``); ``last.ckpt`` when it kept no other."""
    found = sorted((run / "checkpoints").glob("best-*.ckpt")) or sorted(
        (run / "checkpoints").glob("last.ckpt")
    )
    if not found:
        raise SystemExit(f"rate_shift: {run} holds no checkpoints/best-*.ckpt or last.ckpt")
    return found[-1]


def test_clips(run: Path, root: str, corpus_name: str) -> list:
    """The clips of the run's test speakers (``split_speakers.json``)."""
    split = run / "split_speakers.json"
    if not split.is_file():
        raise SystemExit(f"rate_shift: {run} has no split_speakers.json (not a run folder?)")
    speakers = set(json.loads(split.read_text())["test"])
    corpus = get_corpus(corpus_name).scan(root)
    clips = [c for c in corpus.clips if c.speaker in speakers]
    if not clips:
        raise SystemExit(f"rate_shift: no clip of the test speakers {sorted(speakers)} in {root}")
    return clips


def shift(run: Path, root: str, tempos: list[float]) -> dict:
    """UA and predicted class shares of one run's test clips at every tempo."""
    checkpoint = best_checkpoint(run)
    recognizer = EmotionRecognizer.from_checkpoint(checkpoint)
    saved = torch.load(checkpoint, weights_only=True, map_location="cpu")
    corpus_name = saved["datamodule_hyper_parameters"]["corpus"]
    clips = test_clips(run, root, corpus_name)
    names = recognizer.class_names
    rate = recognizer.feature_config.sample_rate
    truth = [names.index(c.label) if isinstance(c.label, str) else c.label for c in clips]
    waves = [load_audio(c.path, rate) for c in clips]
    present = sorted(set(truth))
    predictions = {
        tempo: [
            names.index(recognizer.predict(change_tempo(w, rate, tempo), rate).label) for w in waves
        ]
        for tempo in tempos
    }
    # Shares over the classes of the test clips and any other class the model predicted.
    shown = sorted(set(truth).union(*predictions.values()))
    result = {"run": str(run), "checkpoint": str(checkpoint), "classes": names, "tempos": {}}
    result["true_share"] = {names[k]: truth.count(k) / len(truth) for k in shown}
    for tempo, predicted in predictions.items():
        recalls = [
            sum(p == k for p, t in zip(predicted, truth, strict=True) if t == k) / truth.count(k)
            for k in present
        ]
        result["tempos"][f"{tempo:g}"] = {
            "UA": sum(recalls) / len(recalls),
            "predicted_share": {names[k]: predicted.count(k) / len(predicted) for k in shown},
        }
    reference = result["tempos"].get("1")
    for row in result["tempos"].values():
        row["shift"] = (
            None
            if reference is None
            else 0.5
            * sum(
                abs(row["predicted_share"][c] - reference["predicted_share"][c])
                for c in row["predicted_share"]
            )
        )
    return result


def table(results: list[dict]) -> str:
    """The results as one text table per run."""
    lines = []
    for result in results:
        classes = list(result["true_share"])
        lines.append(f"{result['run']}  ({result['checkpoint']})")
        lines.append("tempo     UA   " + " ".join(f"{c[:8]:>8}" for c in classes) + "   shift")
        share = result["true_share"]
        lines.append("truth          " + " ".join(f"{share[c]:8.2f}" for c in classes))
        for tempo, row in result["tempos"].items():
            shares = row["predicted_share"]
            moved = "" if row["shift"] is None else f"{row['shift']:8.2f}"
            lines.append(
                f"{tempo:<6} {row['UA']:6.3f}  "
                + " ".join(f"{shares[c]:8.2f}" for c in classes)
                + moved
            )
        lines.append("")
    return "\n".join(lines)


def _number(text: str) -> float | str:
    """``text`` as a float, or as it is when it is none (for the error to show it)."""
    try:
        return float(text)
    except ValueError:
        return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (with checkpoints/)")
    parser.add_argument("--root", required=True, help="the corpus folder the runs trained on")
    parser.add_argument(
        "--tempos", default="0.7,1.0,1.4", help="comma-separated tempos (default 0.7,1.0,1.4)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    try:
        tempos = [check_tempo("--tempos", _number(t)) for t in args.tempos.split(",")]
    except ValueError as err:
        parser.error(f"{err} (comma-separated, e.g. 0.7,1.0,1.4)")
    for run in args.runs:
        if not run.is_dir():
            parser.error(f"run folder {run} does not exist")
    torch.set_grad_enabled(False)
    results = [shift(run, args.root, tempos) for run in args.runs]
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
