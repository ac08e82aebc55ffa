"""``EmotionRecognizer``: restored from a checkpoint alone, the same probabilities as
``mts-lightning predict``, batches, timelines of long recordings, and every bad input."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mts_lightning import EmotionRecognizer
from mts_lightning.cli import cli_main
from mts_lightning.commands import main
from mts_lightning.data import SyntheticConfig, SyntheticCorpus
from mts_lightning.data.audio import BadAudioError
from mts_lightning.inference import _window_bounds
from tests.helpers import doc_pages
from tests.helpers.tiny_runs import synthetic_corpus

REPO = Path(__file__).resolve().parents[2]
SAMPLE_RATE = 16000
# Two classes of the synthetic corpus without time stretch, small enough to learn in seconds.
SYNTHETIC = dict(num_classes=2, num_speakers=4, clips_per_speaker=8, duration=1.0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A checkpoint trained for a few epochs through the CLI, and clips rendered as files."""
    root = tmp_path_factory.mktemp("inference")
    argv = sys.argv
    sys.argv = ["mts-lightning"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        fit = cli_main(
            [
                "fit",
                f"--config={REPO / 'configs' / 'synthetic.yaml'}",
                "--data.corpus_options.num_classes=2",
                *synthetic_corpus(clips_per_speaker=8),
                "--data.duration=1.0",
                "--data.num_folds=4",
                "--data.batch_size=4",
                f"--data.cache_dir={root / 'cache'}",
                "--data.corpus_options.train_stretch=[1.0, 1.0]",
                "--trainer.max_epochs=8",
                "--trainer.max_time=null",
                "--trainer.enable_progress_bar=false",
                "--trainer.enable_model_summary=false",
                f"--trainer.logger.init_args.save_dir={root / 'logs'}",
            ]
        )
    finally:
        sys.argv = argv
        torch.set_num_threads(threads)
    checkpoint = Path(fit.trainer.checkpoint_callback.best_model_path)
    corpus = SyntheticCorpus(SyntheticConfig(**SYNTHETIC), stretch=(1.0, 1.0))
    clips = root / "clips"
    clips.mkdir()
    files = []
    for index, clip in enumerate(corpus.clips):
        path = clips / f"clip{index:02d}_class{clip.label}.wav"
        sf.write(path, corpus.render(index, SAMPLE_RATE), SAMPLE_RATE)
        files.append(path)
    return checkpoint, files, [clip.label for clip in corpus.clips]


@pytest.fixture(scope="module")
def recognizer(trained):
    return EmotionRecognizer.from_checkpoint(trained[0])


@pytest.mark.slow
def test_recognizer_matches_cli_predict(trained, recognizer, tmp_path, monkeypatch):
    checkpoint, files, _ = trained
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])
    output = tmp_path / "predictions.csv"
    cli_main(
        [
            "predict",
            f"--ckpt_path={checkpoint}",
            f"--data.predict_paths=[{', '.join(str(f) for f in files[:6])}]",
            f"--prediction_writer.output_path={output}",
            f"--trainer.default_root_dir={tmp_path}",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
        ]
    )
    with open(output, newline="") as f:
        rows = list(csv.DictReader(f))
    assert recognizer.class_names == ["pattern_0", "pattern_1"]
    batch = recognizer.predict_files(files[:6], batch_size=4)
    assert [p.path for p in batch.predictions] == [str(f) for f in files[:6]] and not batch.skipped
    for row, file, many in zip(rows, files[:6], batch.predictions, strict=True):
        one = recognizer.predict_file(file)
        assert one.label == row["predicted_emotion"] == many.label
        for name in recognizer.class_names:
            assert one.probabilities[name] == pytest.approx(float(row[f"prob_{name}"]), abs=1e-5)
            assert many.probabilities[name] == pytest.approx(one.probabilities[name], abs=1e-6)


@pytest.mark.slow
def test_pad_mode_follows_the_checkpoint_in_the_recognizer_and_the_cli(
    trained, recognizer, tmp_path, monkeypatch
):
    checkpoint, files, _ = trained
    ckpt = torch.load(checkpoint, weights_only=True, map_location="cpu")
    ckpt["datamodule_hyper_parameters"]["pad_mode"] = "repeat"
    repeat_ckpt = tmp_path / "repeat.ckpt"
    torch.save(ckpt, repeat_ckpt)
    short = tmp_path / "short.wav"
    wave, rate = sf.read(files[0], dtype="float32")
    sf.write(short, wave[: rate * 2 // 5], rate)  # 0.4 s: under the 1 s model input
    repeating = EmotionRecognizer.from_checkpoint(repeat_ckpt)
    assert (repeating.model_input.pad_mode, recognizer.model_input.pad_mode) == ("repeat", "zeros")
    ours = repeating.predict_file(short).probabilities
    assert ours != pytest.approx(recognizer.predict_file(short).probabilities, abs=1e-4)
    monkeypatch.setattr(sys, "argv", ["mts-lightning"])
    for given, expected in (([], ours), (["--data.pad_mode=zeros"], None)):
        output = tmp_path / f"predictions{len(given)}.csv"
        cli_main(
            [
                "predict",
                f"--ckpt_path={repeat_ckpt}",
                f"--data.predict_paths=[{short}]",
                f"--prediction_writer.output_path={output}",
                f"--trainer.default_root_dir={tmp_path}",
                "--trainer.logger=false",
                "--trainer.enable_progress_bar=false",
                *given,
            ]
        )
        with open(output, newline="") as f:
            (row,) = list(csv.DictReader(f))
        # Restored from the checkpoint unless given; a given one is honoured.
        want = expected or recognizer.predict_file(short).probabilities
        for name, probability in want.items():
            assert float(row[f"prob_{name}"]) == pytest.approx(probability, abs=1e-5)


@pytest.mark.slow
def test_predict_arrays_any_layout_and_rate(trained, recognizer):
    _, files, _ = trained
    data, rate = sf.read(files[0], dtype="float32")
    reference = recognizer.predict_file(files[0])
    for waveform in (data, torch.from_numpy(data), np.stack([data, data])):
        got = recognizer.predict(waveform, rate)
        assert got.label == reference.label
        assert got.probabilities == pytest.approx(reference.probabilities, abs=1e-5)
    # Another sample rate is resampled to the training rate.
    resampled = torch.nn.functional.interpolate(
        torch.from_numpy(data)[None, None], scale_factor=0.5, mode="linear"
    )[0, 0]
    assert recognizer.predict(resampled, rate // 2).label in recognizer.class_names
    # Shorter than one analysis frame: padded, still a prediction.
    tiny = recognizer.predict(data[:100], rate)
    assert sum(tiny.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def assert_same_prediction(got, want, tolerance: float = 1e-5) -> None:
    assert got.label == want.label
    assert got.probabilities == pytest.approx(want.probabilities, abs=tolerance)


@pytest.mark.slow
@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_32", "PCM_U8", "PCM_24"])
def test_integer_pcm_arrays_mean_what_they_mean_in_the_wav_file(
    trained, recognizer, tmp_path, subtype
):
    """The int16 array of ``scipy.io.wavfile.read`` (and every other width) is the WAV
    file it came from, not values 32768 times too large."""
    from scipy.io import wavfile

    _, files, _ = trained
    data, rate = sf.read(files[0], dtype="float32")
    path = tmp_path / f"{subtype}.wav"
    sf.write(path, data, rate, subtype)
    read_rate, ints = wavfile.read(path)
    assert read_rate == rate and ints.dtype.kind in "iu"
    from_file = recognizer.predict_file(path)
    assert_same_prediction(recognizer.predict(ints, rate), from_file)
    assert_same_prediction(recognizer.predict(torch.from_numpy(ints), rate), from_file)
    if ints.dtype == np.uint8:  # the same samples as signed 8-bit
        signed = (ints.astype(np.int16) - 128).astype(np.int8)
        assert_same_prediction(recognizer.predict(signed, rate), from_file)


def test_int64_and_other_sample_types_are_refused_in_one_line(trained, recognizer):
    _, files, _ = trained
    ints, rate = sf.read(files[0], dtype="int16")
    cases = [
        (ints.astype(np.int64), "int64"),
        (torch.from_numpy(ints).long(), "int64"),
        (ints.astype(bool), "bool"),
        (ints.astype(np.complex64), "complex64"),
    ]
    for samples, dtype in cases:
        with pytest.raises(ValueError) as info:
            recognizer.predict(samples, rate)
        message = str(info.value)
        assert message.startswith(f"waveform has dtype {dtype}, ") and "\n" not in message
        with pytest.raises(ValueError, match=f"waveform has dtype {dtype}"):
            recognizer.timeline(samples, sample_rate=rate)


def test_stereo_in_either_layout_is_the_stereo_file(trained, recognizer, tmp_path):
    """soundfile's ``(samples, channels)`` and torch's ``(channels, samples)`` alike."""
    _, files, _ = trained
    left, rate = sf.read(files[0], dtype="float32")
    right, _ = sf.read(files[1], dtype="float32")
    stereo = np.stack([left, 0.5 * right], axis=1)
    path = tmp_path / "stereo.wav"
    sf.write(path, stereo, rate, "FLOAT")
    read, _ = sf.read(path, dtype="float32")
    assert read.shape == (len(left), 2)
    from_file = recognizer.predict_file(path)
    for samples in (read, read.T, torch.from_numpy(read), torch.from_numpy(read.T)):
        assert_same_prediction(recognizer.predict(samples, rate), from_file)
    # One channel in either layout is the mono clip; the timeline takes the same rule.
    mono = recognizer.predict(left, rate)
    assert_same_prediction(recognizer.predict(left[:, None], rate), mono)
    assert_same_prediction(recognizer.predict(left[None, :], rate), mono)
    by_file = recognizer.timeline(path, window=0.5, hop=0.5)
    by_array = recognizer.timeline(read, sample_rate=rate, window=0.5, hop=0.5)
    assert [r.label for r in by_array.rows] == [r.label for r in by_file.rows]
    for a, b in zip(by_array.rows, by_file.rows, strict=True):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)


@pytest.mark.parametrize(
    ("shape", "words"),
    [
        ((2, 2), "shape (2, 2) is ambiguous"),
        ((16, 30), "shape (16, 30) is ambiguous"),
        ((40, 16000), "shape (40, 16000) has no channel axis"),
        ((16000, 2, 1), "got shape (16000, 2, 1)"),
    ],
)
def test_layouts_that_stay_unclear_are_refused(recognizer, shape, words):
    samples = np.full(shape, 0.1, dtype=np.float32)
    for call in (
        lambda: recognizer.predict(samples, SAMPLE_RATE),
        lambda: recognizer.timeline(samples, sample_rate=SAMPLE_RATE),
    ):
        with pytest.raises(ValueError) as info:
            call()
        assert words in str(info.value) and "\n" not in str(info.value)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rate", "common"), [(16001, 16016), (44101, 44100), (22051, 22050), (96001, 96000)]
)
def test_odd_sample_rates_are_resampled_in_bounded_memory(
    trained, recognizer, tmp_path, rate, common
):
    """A file at 16001 Hz (the report: 16 s and 5 GB) or 44101 Hz (a memory error) is read in
    bounded memory and classified as the same audio at a nearby rate that was always
    resampled well (a small reduced ratio: the polyphase kernel)."""
    from scipy.signal import resample_poly

    from tests.data.test_audio import LargestTensor

    _, files, _ = trained
    data, _ = sf.read(files[0], dtype="float64")
    paths = {}
    for r in (rate, common):
        divisor = math.gcd(r, SAMPLE_RATE)
        paths[r] = tmp_path / f"clip_{r}.wav"
        sf.write(paths[r], resample_poly(data, r // divisor, SAMPLE_RATE // divisor), r, "FLOAT")
    with LargestTensor() as mode:
        got = recognizer.predict_file(paths[rate])
        timeline = recognizer.timeline(paths[rate], window=0.5, hop=0.5)
    assert mode.largest < 2_000_000, mode.largest
    want = recognizer.predict_file(paths[common])
    assert_same_prediction(got, want, tolerance=1e-2)
    # Windows are cut in the file's samples: the last one may end a sample off the other's.
    expected = recognizer.timeline(paths[common], window=0.5, hop=0.5)
    for row in timeline.rows:
        ref = min(expected.rows, key=lambda r: abs(r.start - row.start))
        assert (row.start, row.end) == pytest.approx((ref.start, ref.end), abs=1e-3)
        assert row.probabilities == pytest.approx(ref.probabilities, abs=1e-2)


@pytest.mark.slow
def test_timeline_switches_label_at_the_seam(trained, recognizer, tmp_path):
    _, files, labels = trained
    per_clip = recognizer.predict_files(files).predictions
    confident = {
        label: [
            f
            for f, p, true in zip(files, per_clip, labels, strict=True)
            if true == label and p.probabilities[f"pattern_{label}"] > 0.6
        ]
        for label in (0, 1)
    }
    assert len(confident[0]) >= 3 and len(confident[1]) >= 3, "the fixture model did not learn"
    first = [sf.read(f, dtype="float32")[0] for f in confident[0][:3]]
    second = [sf.read(f, dtype="float32")[0] for f in confident[1][:3]]
    recording = np.concatenate(first + second)
    path = tmp_path / "call.wav"
    sf.write(path, recording, SAMPLE_RATE)
    seam = sum(len(c) for c in first) / SAMPLE_RATE

    # Windows that coincide with the clips give the clips' own predictions.
    aligned = recognizer.timeline(path, window=1.0, hop=1.0)
    assert [r.label for r in aligned.rows] == ["pattern_0"] * 3 + ["pattern_1"] * 3
    assert [r.start for r in aligned.rows] == pytest.approx([0, 1, 2, 3, 4, 5])

    # Overlapping windows (which also straddle two clips of a class, unlike any training
    # clip): the windows wholly on each side of the seam favour that side's class.
    timeline = recognizer.timeline(path, window=1.0, hop=0.5)
    assert timeline.rows[-1].end == pytest.approx(len(recording) / SAMPLE_RATE)
    assert [r.start for r in timeline.rows] == pytest.approx(np.arange(0, 5.5, 0.5))
    before = [r.probabilities["pattern_0"] for r in timeline.rows if r.end <= seam]
    after = [r.probabilities["pattern_1"] for r in timeline.rows if r.start >= seam]
    assert len(before) == len(after) == 5
    assert np.mean(before) > 0.5 and np.mean(after) > 0.5
    assert sum(timeline.aggregate.probabilities.values()) == pytest.approx(1.0, abs=1e-5)

    # The same recording as an array gives the same timeline; the CSV has one line per window.
    from_array = recognizer.timeline(recording, sample_rate=SAMPLE_RATE, window=1.0, hop=0.5)
    assert [r.label for r in from_array.rows] == [r.label for r in timeline.rows]
    timeline.to_csv(tmp_path / "timeline.csv")
    lines = (tmp_path / "timeline.csv").read_text().splitlines()
    assert lines[0] == "start_s,end_s,label,pattern_0,pattern_1"
    assert len(lines) == len(timeline.rows) + 1


def test_window_bounds_cover_the_recording():
    assert _window_bounds(10, 1, 4, 2) == [(0, 4), (2, 6), (4, 8), (6, 10)]
    assert _window_bounds(11, 1, 4, 3) == [(0, 4), (3, 7), (6, 10), (7, 11)]
    assert _window_bounds(3, 1, 4, 2) == [(0, 3)]


# ---------------------------------------------------------------------- bad input
def test_bad_waveforms(recognizer):
    with pytest.raises(ValueError, match="no samples"):
        recognizer.predict(np.zeros(0, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(ValueError, match="NaN or infinite"):
        recognizer.predict(np.array([0.1, np.nan] * 1000, dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(ValueError, match="NaN or infinite"):
        recognizer.predict(np.array([0.1, np.inf] * 1000, dtype=np.float32), SAMPLE_RATE)
    for rate in (0, -16000, 16000.5):
        with pytest.raises(ValueError, match="sample_rate must be a positive integer"):
            recognizer.predict(np.ones(2000, dtype=np.float32), rate)
    with pytest.raises(ValueError, match=r"1-D \(samples,\) or 2-D"):
        recognizer.predict(np.ones((1, 2, 2000), dtype=np.float32), SAMPLE_RATE)
    with pytest.raises(ValueError, match="window must be a positive"):
        recognizer.timeline(np.ones(2000), sample_rate=SAMPLE_RATE, window=0)
    with pytest.raises(ValueError, match="sample_rate is required"):
        recognizer.timeline(np.ones(2000))


def test_bad_files_and_skipping(trained, recognizer, tmp_path):
    _, files, _ = trained
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.wav"
    text.write_text("not audio")
    with pytest.raises(BadAudioError, match="empty file"):
        recognizer.predict_file(empty)
    with pytest.raises(BadAudioError, match="unreadable audio"):
        recognizer.predict_file(text)
    with pytest.raises(BadAudioError, match="does not exist"):
        recognizer.predict_file(tmp_path / "missing.wav")
    with pytest.raises(BadAudioError, match=r"notes\.wav"):
        recognizer.predict_files([files[0], text])
    batch = recognizer.predict_files([files[0], text, files[1], empty], skip_bad_files=True)
    assert [p.path for p in batch.predictions] == [str(files[0]), str(files[1])]
    assert [Path(path).name for path, _ in batch.skipped] == ["notes.wav", "empty.wav"]
    with pytest.raises(BadAudioError, match="unreadable audio"):
        recognizer.timeline(text)
    # A long recording gets the checks of any audio file before its header is read.
    with pytest.raises(BadAudioError, match="empty file"):
        recognizer.timeline(empty)
    pointer = tmp_path / "call.wav"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 9\n")
    with pytest.raises(BadAudioError, match="Git LFS pointer"):
        recognizer.timeline(pointer)


def test_foreign_checkpoints_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        EmotionRecognizer.from_checkpoint(tmp_path / "none.ckpt")
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00\x01 not a checkpoint")
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        EmotionRecognizer.from_checkpoint(garbage)
    plain = tmp_path / "plain.ckpt"
    torch.save({"weight": torch.zeros(3)}, plain)
    with pytest.raises(ValueError, match="not an mts-lightning checkpoint"):
        EmotionRecognizer.from_checkpoint(plain)
    no_data = tmp_path / "no_data.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}}, no_data)
    with pytest.raises(ValueError, match="normalisation statistics of training"):
        EmotionRecognizer.from_checkpoint(no_data)


# ---------------------------------------------------------------------- command line
@pytest.mark.slow
def test_predict_timeline_command(trained, tmp_path, capsys):
    checkpoint, files, _ = trained
    recording = np.concatenate([sf.read(f, dtype="float32")[0] for f in files[:4]])
    path = tmp_path / "call.wav"
    sf.write(path, recording, SAMPLE_RATE)
    out = tmp_path / "timelines"
    main(
        [
            "predict",
            "--timeline",
            f"--ckpt_path={checkpoint}",
            str(path),
            "--window=1.0",
            "--hop=0.5",
            f"--output_dir={out}",
            "--plot",
        ]
    )
    lines = (out / "call.timeline.csv").read_text().splitlines()
    assert lines[0] == "start_s,end_s,label,pattern_0,pattern_1" and len(lines) == 1 + 7
    assert (out / "call.timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "call.wav: 7 windows, overall pattern_" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--timeline", f"--ckpt_path={tmp_path / 'none.ckpt'}", str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("mts-lightning predict --timeline: error: checkpoint")
        and err.count("\n") == 1
    )


@pytest.mark.slow
def test_timelines_of_recordings_with_one_name_do_not_replace_each_other(trained, tmp_path):
    """The reported command: a/call.wav and b/call.wav both went to out/call.timeline.csv."""
    checkpoint, files, labels = trained
    first = files[labels.index(0)]
    second = files[labels.index(1)]
    for folder, source in (("a", first), ("b", second)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "call.wav").write_bytes(source.read_bytes())
    out = tmp_path / "out"
    recordings = [str(tmp_path / "a" / "call.wav"), str(tmp_path / "b" / "call.wav")]
    main(["predict", "--timeline", f"--ckpt_path={checkpoint}", *recordings, f"--output_dir={out}"])
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == [
        "a",
        "a/call.timeline.csv",
        "b",
        "b/call.timeline.csv",
    ]
    recognizer = EmotionRecognizer.from_checkpoint(checkpoint)
    for folder, source in (("a", first), ("b", second)):
        recognizer.timeline(source).to_csv(tmp_path / "expected.csv")
        expected = (tmp_path / "expected.csv").read_text()
        assert (out / folder / "call.timeline.csv").read_text() == expected


@pytest.mark.slow
@pytest.mark.parametrize(("fmt", "input_kind"), [("onnx", "waveform"), ("torchscript", "features")])
def test_export_command_from_a_checkpoint(trained, recognizer, tmp_path, capsys, fmt, input_kind):
    """The fixture checkpoint is an MTS model: exported in its frozen form."""
    checkpoint, files, _ = trained
    output = tmp_path / ("model.onnx" if fmt == "onnx" else "model.pt")
    main(
        [
            "export",
            f"--ckpt_path={checkpoint}",
            f"--format={fmt}",
            f"--output={output}",
            f"--input={input_kind}",
        ]
    )
    assert f"Wrote {output} ({fmt}, {input_kind} input, 2 classes)" in capsys.readouterr().out
    data, _ = sf.read(files[0], dtype="float32")
    expected = recognizer.predict_file(files[0]).probabilities
    wave = torch.from_numpy(data)
    x = wave[None] if input_kind == "waveform" else recognizer._features(wave)[None]
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
        got = session.run(["probabilities"], {input_kind: x.numpy()})[0][0]
    else:
        got = torch.jit.load(str(output))(x)[1][0].detach().numpy()
    assert got == pytest.approx([expected[c] for c in recognizer.class_names], abs=1e-4)


def test_export_command_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", f"--ckpt_path={tmp_path / 'none.ckpt'}", f"--output={tmp_path / 'm'}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (
        err == f"mts-lightning export: error: checkpoint {tmp_path / 'none.ckpt'} does not exist\n"
    )
    with pytest.raises(SystemExit):
        main(["export", "--ckpt_path=x", "--output=y", "--format=tflite"])
    assert "invalid choice: 'tflite'" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.e2e
def test_readme_inference_examples_run_as_written(trained, tmp_path, monkeypatch, capsys):
    """The inference page's recognizer snippet and its three command lines, with the run
    folder and the audio files made here."""
    checkpoint, files, _ = trained
    section = doc_pages.section("inference.md", "# From a checkpoint to a product")
    python = doc_pages.first_block(section, "python")
    shell = doc_pages.first_block(section, "bash")
    run = tmp_path / "RUN" / "checkpoints"
    run.mkdir(parents=True)
    (run / "last.ckpt").symlink_to(checkpoint)
    recording = np.concatenate([sf.read(f, dtype="float32")[0] for f in files[:7]])
    sf.write(tmp_path / "call.wav", recording, SAMPLE_RATE)
    sf.write(tmp_path / "clip.wav", sf.read(files[0], dtype="float32")[0], SAMPLE_RATE)
    (tmp_path / "other.wav").write_text("version https://git-lfs.github.com/spec/v1\n")
    monkeypatch.chdir(tmp_path)
    exec(compile(python, "docs/inference.md", "exec"), {})
    out = capsys.readouterr().out
    assert "Prediction(label='pattern_" in out and (tmp_path / "call.timeline.csv").is_file()
    for line in shell.strip().splitlines():
        argv = line.split()
        assert argv[0] == "mts-lightning"
        main(argv[1:])
    assert (tmp_path / "call.timeline.png").is_file()
    assert (tmp_path / "model.onnx").is_file() and (tmp_path / "model.pt").is_file()
