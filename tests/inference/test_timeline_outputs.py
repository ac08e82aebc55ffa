"""``mts-lightning predict --timeline`` output names: one file per recording, never one
replacing another (same names in different folders, the same file given twice, links, the
same name with different extensions)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mts_lightning import EmotionClassifier, EmotionRecognizer
from mts_lightning.commands import main
from mts_lightning.data.features import FeatureConfig
from mts_lightning.data.frontend import ModelInput
from mts_lightning.inference import timeline_outputs

FEATURES = FeatureConfig(n_fft=256, hop_length=128, n_mels=16)
FRAMES = 16


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["a/call.wav", "b/call.wav"], ["a/call.timeline.csv", "b/call.timeline.csv"]),
        (["d/x.wav", "d/y.flac"], ["x.timeline.csv", "y.timeline.csv"]),
        (["call.wav"], ["call.timeline.csv"]),
        (["a/call.wav", "a/sub/call.wav"], ["call.timeline.csv", "sub/call.timeline.csv"]),
        (["s1/01.wav", "s2/deep/01.wav"], ["s1/01.timeline.csv", "s2/deep/01.timeline.csv"]),
        (["a/take.2.wav", "a/take"], ["take.2.timeline.csv", "take.timeline.csv"]),
    ],
)
def test_outputs_mirror_the_recordings_below_their_common_folder(files, expected):
    outputs = timeline_outputs(files, "out")
    assert list(outputs) == files
    assert [str(name) for name in outputs.values()] == [f"out/{name}" for name in expected]


def test_a_recording_given_again_counts_once():
    outputs = timeline_outputs(["a/call.wav", "./a/call.wav", "a/../a/call.wav", "b/call.wav"])
    assert {k: str(v) for k, v in outputs.items()} == {
        "a/call.wav": "a/call.timeline.csv",
        "b/call.wav": "b/call.timeline.csv",
    }


def test_the_same_name_with_another_extension_is_refused_in_one_line():
    with pytest.raises(ValueError) as error:
        timeline_outputs(["a/call.wav", "b/x.wav", "a/call.flac"], "out")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        "a/call.wav and a/call.flac would both be written to out/a/call.timeline.csv"
    )


# ---------------------------------------------------------------------- the command
@pytest.fixture
def recognizer(monkeypatch) -> EmotionRecognizer:
    """A small untrained recognizer that the command gets for any checkpoint path."""
    model = EmotionClassifier(
        backbone="compact_cnn",
        backbone_kwargs={"conv_type": "conv"},
        class_names=["calm", "angry"],
        input_shape=(1, FRAMES, FEATURES.num_bins),
        confusion_matrix=False,
    )
    stats = torch.zeros(FEATURES.num_bins), torch.ones(FEATURES.num_bins)
    recognizer = EmotionRecognizer(model, FEATURES, ModelInput(FRAMES, mean=stats[0], std=stats[1]))
    monkeypatch.setattr(EmotionRecognizer, "from_checkpoint", lambda path: recognizer)
    return recognizer


def write_recording(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.random.default_rng(seed).normal(0, 0.1, 8000), 16000)
    return path


def timeline(*args: str) -> None:
    main(["predict", "--timeline", "--ckpt_path=model.ckpt", "--window=0.2", *args])


def expected_csv(recognizer: EmotionRecognizer, recording: Path, tmp_path: Path) -> str:
    recognizer.timeline(recording, window=0.2).to_csv(tmp_path / "expected.csv")
    return (tmp_path / "expected.csv").read_text()


@pytest.mark.slow
def test_recordings_of_the_same_name_in_two_folders_keep_their_own_timelines(
    recognizer, tmp_path, monkeypatch, capsys
):
    """The reported case: a/call.wav and b/call.wav both went to out/call.timeline.csv."""
    monkeypatch.chdir(tmp_path)
    first, second = write_recording(Path("a/call.wav"), 1), write_recording(Path("b/call.wav"), 2)
    (tmp_path / "out" / "a").mkdir(parents=True)
    (tmp_path / "out" / "a" / "call.timeline.csv").write_text("from an earlier command\n")
    timeline("a/call.wav", "b/call.wav", "--output_dir=out", "--plot")
    out = tmp_path / "out"
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == [
        "a/call.timeline.csv",
        "a/call.timeline.png",
        "b/call.timeline.csv",
        "b/call.timeline.png",
    ]
    # Each holds its own recording's timeline (an earlier command's file is replaced).
    first_csv = (out / "a" / "call.timeline.csv").read_text()
    assert first_csv == expected_csv(recognizer, first, tmp_path)
    assert (out / "b" / "call.timeline.csv").read_text() == expected_csv(
        recognizer, second, tmp_path
    )
    assert first_csv != (out / "b" / "call.timeline.csv").read_text()
    report = capsys.readouterr().out
    assert "-> out/a/call.timeline.csv" in report and "-> out/b/call.timeline.csv" in report


def test_the_same_file_given_twice_is_analysed_once(recognizer, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_recording(Path("a/call.wav"), 1)
    timeline("a/call.wav", "./a/call.wav", "--output_dir=out")
    assert [p.name for p in (tmp_path / "out").rglob("*")] == ["call.timeline.csv"]
    report = capsys.readouterr().out.splitlines()
    assert report[0] == "a/call.wav is given 2 times: analysed once" and len(report) == 2


def test_links_to_one_file_under_other_names_get_their_own_outputs(
    recognizer, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    write_recording(Path("a/call.wav"), 1)
    os.symlink("call.wav", "a/link.wav")
    os.symlink("a", "b")  # b/call.wav is a/call.wav through a linked folder
    timeline("a/call.wav", "a/link.wav", "b/call.wav", "--output_dir=out")
    out = tmp_path / "out"
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*.csv"))
    assert names == ["a/call.timeline.csv", "a/link.timeline.csv", "b/call.timeline.csv"]
    assert len({p.read_text() for p in out.rglob("*.csv")}) == 1


def test_outputs_that_would_collide_are_refused_before_any_work(
    recognizer, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    write_recording(Path("a/call.wav"), 1)
    sf.write("a/call.flac", np.zeros(4000), 16000)
    with pytest.raises(SystemExit) as exit_info:
        timeline("a/call.wav", "a/call.flac", "--output_dir=out")
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "mts-lightning predict --timeline: error: a/call.wav and a/call.flac would both be "
        "written to out/call.timeline.csv (same folder, same name but for the extension): rename "
        "one, or run them separately\n"
    )
    assert not (tmp_path / "out").exists()
