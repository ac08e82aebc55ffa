"""benchmarks/make_speech_corpus.py run as a user runs it: RAVDESS names that the library reads,
16 kHz mono float WAV, the same seed giving the same bytes, the rate cue (sad longer than
angry), reruns that keep complete files, and its errors. The script's logic runs on a small
stand-in synthesizer (tests/helpers/fake_espeak.py); what needs espeak-ng itself runs where it is
installed. One end-to-end check trains and tests the RAVDESS recipe on a generated corpus."""

from __future__ import annotations

import filecmp
import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mts_lightning.cli import cli_main
from mts_lightning.data.corpora import scan_crema_d, scan_emodb, scan_ravdess

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "make_speech_corpus.py"
FAKE = Path(__file__).resolve().parents[1] / "helpers" / "fake_espeak.py"
ESPEAK = shutil.which("espeak-ng")
needs_espeak = pytest.mark.skipif(
    ESPEAK is None, reason="espeak-ng is not installed (Debian/Ubuntu package espeak-ng)"
)

spec = importlib.util.spec_from_file_location("make_speech_corpus", SCRIPT)
corpus_script = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = corpus_script  # its dataclasses look their module up
spec.loader.exec_module(corpus_script)


def generate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        timeout=300,
    )


def wav_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.wav"))


def mean_duration(root: Path, emotion: int) -> float:
    return float(np.mean([sf.info(p).duration for p in root.rglob(f"03-01-{emotion:02d}-*.wav")]))


def active_db(path: Path) -> float:
    audio, _ = sf.read(path)
    frames = audio[: len(audio) // 160 * 160].reshape(-1, 160)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    return float(20 * np.log10(np.sqrt(np.mean(rms[rms > rms.max() / 100] ** 2))))


@pytest.fixture(scope="module")
def fake_espeak(tmp_path_factory) -> Path:
    """An executable with espeak-ng's command line, and a data folder with the voice files
    the script reads."""
    folder = tmp_path_factory.mktemp("fake-espeak")
    data = folder / "data"
    (data / "lang" / "gmw").mkdir(parents=True)
    (data / "lang" / "gmw" / "en-US").write_text("name English (America)\nlanguage en-us 2\n")
    (data / "lang" / "gmw" / "de").write_text("name German\nlanguage de\n")
    (data / "voices" / "!v").mkdir(parents=True)
    namings = corpus_script.NAMINGS.values()
    for name in {v for n in namings for v in (*n.male, *n.female)}:
        (data / "voices" / "!v" / name).write_text(f"language variant\nname {name}\npitch 80 120\n")
    exe = folder / "espeak-ng"
    exe.write_text(f'#!/bin/sh\nFAKE_ESPEAK_DATA="{data}" exec "{sys.executable}" "{FAKE}" "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


FAKE_ARGS = ["--actors", "2", "--emotions", "neutral,sad,angry", "--seed", "3"]


@pytest.fixture(scope="module")
def fake_corpus(tmp_path_factory, fake_espeak) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("fake-corpus") / "corpus"
    result = generate(
        "--output", str(root), *FAKE_ARGS, "--espeak", str(fake_espeak), "--jobs", "2"
    )
    assert result.returncode == 0, result.stderr
    return root, result.stdout


# ---------------------------------------------------------------------- the script's logic
def test_names_labels_and_speakers_read_by_the_ravdess_scanner(fake_corpus):
    root, out = fake_corpus
    corpus = scan_ravdess(root)
    assert len(corpus.clips) == 40 and not corpus.skipped  # 2 x (4 neutral + 8 sad + 8 angry)
    names = [corpus.class_names[c.label] for c in corpus.clips]
    assert {n: names.count(n) for n in set(names)} == {"neutral": 8, "sad": 16, "angry": 16}
    assert corpus.speakers == ["Actor_01", "Actor_02"]
    for clip in corpus.clips:
        code = Path(clip.path).stem.split("-")
        assert corpus.class_names[clip.label] == corpus_script.EMOTIONS[int(code[2]) - 1]
        assert clip.speaker == f"Actor_{code[6]}" == Path(clip.path).parent.name
    neutral = [Path(c.path).stem for c in corpus.clips if corpus.class_names[c.label] == "neutral"]
    assert {n.split("-")[3] for n in neutral} == {"01"}  # neutral has no strong intensity
    assert "40 files written, 0 already complete" in out and "total time:" in out
    assert "scaled down to a peak of 0.99; espeak-ng's output saturated in 0" in out


def test_files_are_16k_mono_float_with_a_fixed_silent_margin(fake_corpus):
    root, _ = fake_corpus
    for path in wav_files(root):
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "FLOAT")
        audio, _ = sf.read(path)
        margin = round(corpus_script.MARGIN * 16000)
        loud = np.flatnonzero(np.abs(audio) > np.abs(audio).max() / 100)
        # 10 ms frames decide what is sound: the first and last sound lie within one frame
        # of the margin
        assert abs(loud[0] - margin) <= 160 and abs(len(audio) - 1 - loud[-1] - margin) <= 160
        assert 0 < np.abs(audio).max() < 1


def test_the_rate_cue_sad_clips_are_longer_than_angry_ones(fake_corpus):
    root, out = fake_corpus
    sad, angry, neutral = (mean_duration(root, code) for code in (4, 5, 1))
    assert sad > 1.2 * neutral and angry < 0.95 * neutral
    row = next(line for line in out.splitlines() if line.strip().startswith("sad"))
    assert float(row.split()[3]) == pytest.approx(sad, abs=1e-3)  # the summary's "all" column


def test_a_rerun_keeps_complete_files_and_makes_the_same_missing_ones(
    fake_corpus, fake_espeak, tmp_path
):
    """Complete files are kept untouched; a lost one comes back byte for byte although this run
    differs in --jobs and --actors (a clip depends on the seed and its name only); the
    temporary file of an interrupted run is removed; a new actor is added."""
    source, _ = fake_corpus
    root = tmp_path / "corpus"
    shutil.copytree(source, root)
    lost = root / "Actor_02" / "03-01-04-02-01-02-02.wav"
    lost.unlink()
    (root / "Actor_01" / ".03-01-05-01-01-01-01.wav.part").write_bytes(b"half a file")
    before = {p: p.stat().st_mtime_ns for p in wav_files(root)}

    args = [*FAKE_ARGS, "--actors", "3", "--espeak", str(fake_espeak), "--jobs", "1"]
    result = generate("--output", str(root), *args)
    assert result.returncode == 0, result.stderr
    assert "21 files written, 39 already complete, 1 unfinished temporary files removed" in (
        result.stdout
    )
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert filecmp.cmp(lost, source / lost.relative_to(root), shallow=False)
    assert not list(root.rglob("*.part"))
    assert scan_ravdess(root).speakers == ["Actor_01", "Actor_02", "Actor_03"]


def test_another_seed_gives_other_voices_and_jitter(fake_corpus, fake_espeak, tmp_path):
    root, _ = fake_corpus
    other = tmp_path / "other"
    args = ["--actors", "2", "--emotions", "neutral", "--seed", "4", "--jobs", "1"]
    result = generate("--output", str(other), *args, "--espeak", str(fake_espeak))
    assert result.returncode == 0, result.stderr
    files = [p.relative_to(other) for p in wav_files(other)]
    assert len(files) == 8
    _, mismatch, _ = filecmp.cmpfiles(root, other, files, shallow=False)
    assert len(mismatch) == 8


def test_a_failing_synthesizer_stops_the_run_and_leaves_no_partial_file(fake_espeak, tmp_path):
    root = tmp_path / "corpus"
    result = generate(
        "--output",
        str(root),
        *FAKE_ARGS,
        "--espeak",
        str(fake_espeak),
        env={"FAKE_ESPEAK_FAIL": "1"},
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "failed (exit 1): Error: the fake synthesizer was told to fail" in result.stderr
    assert not list(root.rglob("*.wav")) and not list(root.rglob("*.part"))


def test_a_missing_espeak_names_the_package(tmp_path):
    result = generate("--output", str(tmp_path / "c"), "--espeak", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"--espeak {tmp_path / 'nowhere'}: not an executable file" in result.stderr
    assert "package `espeak-ng` (apt-get install espeak-ng)" in result.stderr

    empty = tmp_path / "bin"
    empty.mkdir()
    result = generate("--output", str(tmp_path / "c"), env={"PATH": str(empty)})
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert corpus_script.MISSING_ESPEAK in result.stderr
    assert not (tmp_path / "c").exists()


def test_a_synthesizer_without_the_voice_files_is_refused(tmp_path):
    data = tmp_path / "data"
    (data / "voices" / "!v").mkdir(parents=True)
    exe = tmp_path / "espeak-ng"
    exe.write_text(f'#!/bin/sh\nFAKE_ESPEAK_DATA="{data}" exec "{sys.executable}" "{FAKE}" "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    result = generate("--output", str(tmp_path / "c"), "--espeak", str(exe))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"espeak-ng's data folder {data} lacks {data / 'lang' / 'gmw' / 'en-US'}, " in (
        result.stderr
    )
    assert "the voice files of espeak-ng 1.49 or later" in result.stderr

    exe.write_text("#!/bin/sh\necho 'some other program'\n")
    result = generate("--output", str(tmp_path / "c"), "--espeak", str(exe))
    assert result.returncode == 2
    assert "`--version` printed no 'Data at: FOLDER' line" in result.stderr
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--actors", "1"], "argument --actors: expected a whole number of actors from 2 to 24"),
        (["--actors", "25"], "argument --actors: expected a whole number of actors from 2 to 24"),
        (["--actors", "two"], "argument --actors: expected a whole number of actors from 2"),
        (["--emotions", "sad,joy"], "argument --emotions: unknown emotion(s) 'joy': expected"),
        (["--emotions", ","], "argument --emotions: unknown emotion(s) ','"),
        (["--jobs", "0"], "argument --jobs: expected a whole number >= 1, got '0'"),
        (["--seed", "-1"], "argument --seed: expected a whole number >= 0, got '-1'"),
    ],
)
def test_bad_arguments(tmp_path, args, message):
    result = generate("--output", str(tmp_path / "c"), *args)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "c").exists()


def test_output_is_required():
    result = generate()
    assert result.returncode == 2
    assert "the following arguments are required: --output" in result.stderr


def test_an_output_folder_of_other_settings_is_refused(fake_corpus, fake_espeak, tmp_path):
    root, _ = fake_corpus
    files = {p: p.stat().st_mtime_ns for p in wav_files(root)}
    result = generate("--output", str(root), *FAKE_ARGS[:-1], "5", "--espeak", str(fake_espeak))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"--output {root} holds a corpus made with other settings (seed: 3 there, 5 now)" in (
        result.stderr
    )
    assert {p: p.stat().st_mtime_ns for p in wav_files(root)} == files

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    result = generate("--output", str(foreign), "--espeak", str(fake_espeak))
    assert result.returncode == 2
    assert "is not empty and holds no corpus.json of this script" in result.stderr
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]

    result = generate("--output", str(foreign / "notes.txt"), "--espeak", str(fake_espeak))
    assert result.returncode == 2
    assert f"--output {foreign / 'notes.txt'} is a file, not a folder" in result.stderr


# ---------------------------------------------------------------------- other namings
SHARED4 = "neutral,happy,sad,angry"
#: actors 1 and 2 of seed 0, as the script drew them before it had other namings
RAVDESS_SEED0_ACTORS = [("robert", 58), ("linda", 59)]
#: naming -> its scanner, the speakers of 2 actors, and a file name -> class name reader
OTHER_NAMINGS = {
    "crema_d": (
        scan_crema_d,
        ["1001", "1002"],
        lambda stem: {"NEU": "neutral", "HAP": "happy", "SAD": "sad", "ANG": "angry"}[
            stem.split("_")[2]
        ],
    ),
    "emodb": (
        scan_emodb,
        ["03", "04"],
        lambda stem: {"N": "neutral", "F": "happy", "T": "sad", "W": "angry"}[stem[5]],
    ),
}


@pytest.fixture(scope="module", params=sorted(OTHER_NAMINGS))
def named_corpus(request, tmp_path_factory, fake_espeak) -> tuple[str, Path, str]:
    naming = request.param
    root = tmp_path_factory.mktemp(f"fake-{naming}") / "corpus"
    args = ["--actors", "2", "--emotions", SHARED4, "--naming", naming, "--jobs", "2"]
    result = generate("--output", str(root), *args, "--espeak", str(fake_espeak))
    assert result.returncode == 0, result.stderr
    return naming, root, result.stdout


def test_other_namings_are_read_by_their_corpus_scanner(named_corpus):
    """2 actors x (4 sentences x (1 neutral + 3 emotions x 2 intensities)) = 56 clips, flat
    folder, classes and speakers as the corpus's scanner reads them from the names."""
    naming, root, out = named_corpus
    scan, speakers, emotion_of = OTHER_NAMINGS[naming]
    corpus = scan(root)
    assert len(corpus.clips) == 56 and not corpus.skipped
    assert corpus.speakers == speakers
    names = [corpus.class_names[c.label] for c in corpus.clips]
    assert {n: names.count(n) for n in set(names)} == {
        "neutral": 8, "happy": 16, "sad": 16, "angry": 16
    }  # fmt: skip
    for clip in corpus.clips:
        assert Path(clip.path).parent == root
        assert corpus.class_names[clip.label] == emotion_of(Path(clip.path).stem)
    assert f"56 files written, 0 already complete: 56 clips of 2 actors in {root}" in out
    assert f"{naming} naming; seed 0" in out


def test_other_namings_same_seed_same_bytes(named_corpus, fake_espeak, tmp_path):
    """A second run of the same naming and seed, with other --jobs, gives the same bytes; a
    lost clip comes back byte for byte."""
    naming, source, _ = named_corpus
    again = tmp_path / "again"
    args = ["--actors", "2", "--emotions", SHARED4, "--naming", naming, "--jobs", "1"]
    result = generate("--output", str(again), *args, "--espeak", str(fake_espeak))
    assert result.returncode == 0, result.stderr
    files = [p.relative_to(source) for p in wav_files(source)]
    assert [p.relative_to(again) for p in wav_files(again)] == files
    match, mismatch, errors = filecmp.cmpfiles(source, again, files, shallow=False)
    assert len(match) == 56 and not mismatch and not errors
    lost = again / files[7]
    lost.unlink()
    result = generate("--output", str(again), *args, "--espeak", str(fake_espeak))
    assert "1 files written, 55 already complete" in result.stdout
    assert filecmp.cmp(lost, source / files[7], shallow=False)


def test_each_naming_has_its_own_voices_and_sentences():
    namings = corpus_script.NAMINGS
    actors = {n: corpus_script.make_actors(0, 24, naming) for n, naming in namings.items()}
    for a, b in [("ravdess", "crema_d"), ("ravdess", "emodb"), ("crema_d", "emodb")]:
        assert not set(namings[a].male) & set(namings[b].male)
        assert not set(namings[a].statements) & set(namings[b].statements)
        voices = {(x.variant, x.pitch) for x in actors[a]}
        assert not voices & {(x.variant, x.pitch) for x in actors[b]}
    mean_pitch = {n: np.mean([x.pitch for x in v]) for n, v in actors.items()}
    assert mean_pitch["crema_d"] < mean_pitch["ravdess"] < mean_pitch["emodb"]
    assert namings["emodb"].language == "gmw/de"
    assert [(x.variant, x.pitch) for x in actors["ravdess"][:2]] == RAVDESS_SEED0_ACTORS


def test_naming_errors(fake_corpus, fake_espeak, tmp_path):
    args = ["--naming", "crema_d", "--emotions", "calm,sad", "--espeak", str(fake_espeak)]
    result = generate("--output", str(tmp_path / "c"), *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--emotions: the crema_d naming has no calm: expected a subset of neutral, happy, " in (
        result.stderr
    )
    assert not (tmp_path / "c").exists()

    result = generate("--output", str(tmp_path / "c"), "--naming", "opera")
    assert result.returncode == 2
    assert "argument --naming: invalid choice: 'opera' (choose from" in result.stderr

    root, _ = fake_corpus
    result = generate("--output", str(root), *FAKE_ARGS, "--naming", "emodb", "--espeak",
                      str(fake_espeak))  # fmt: skip
    assert result.returncode == 2
    assert "(naming: 'ravdess' there, 'emodb' now)" in result.stderr


def test_a_folder_made_before_namings_existed_reads_as_ravdess(fake_corpus, fake_espeak, tmp_path):
    source, _ = fake_corpus
    root = tmp_path / "corpus"
    shutil.copytree(source, root)
    manifest = json.loads((root / "corpus.json").read_text())
    del manifest["naming"]
    (root / "corpus.json").write_text(json.dumps(manifest))
    result = generate("--output", str(root), *FAKE_ARGS, "--espeak", str(fake_espeak))
    assert result.returncode == 0, result.stderr
    assert "0 files written, 40 already complete" in result.stdout


# ---------------------------------------------------------------------- espeak-ng itself
@pytest.fixture(scope="module")
def real_corpus(tmp_path_factory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("espeak-corpus") / "corpus"
    args = ["--actors", "2", "--emotions", "neutral,sad,angry,fear", "--jobs", "2"]
    result = generate("--output", str(root), *args)
    assert result.returncode == 0, result.stderr
    return root, result.stdout


@needs_espeak
def test_espeak_corpus_reads_as_ravdess_with_rate_and_loudness_cues(real_corpus):
    root, out = real_corpus
    corpus = scan_ravdess(root)
    assert len(corpus.clips) == 56 and corpus.speakers == ["Actor_01", "Actor_02"]
    assert "synthesizer: eSpeak NG text-to-speech: 1.5" in out
    assert "0 scaled down to a peak of 0.99; espeak-ng's output saturated in 0" in out
    for path in wav_files(root):
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "FLOAT")
    neutral, sad, angry, fear = (mean_duration(root, code) for code in (1, 4, 5, 6))
    assert sad > 1.2 * neutral  # sad ~25% slower, with longer pauses
    assert angry < 0.95 * neutral and fear < 0.95 * neutral
    # Loudness is a cue of its own: angry louder than neutral, sad softer
    level = {
        code: np.mean([active_db(p) for p in root.rglob(f"03-01-{code:02d}-*.wav")])
        for code in (1, 4, 5)
    }
    assert level[5] > level[1] + 2 and level[4] < level[1] - 2


@needs_espeak
@pytest.mark.parametrize("naming", sorted(OTHER_NAMINGS))
def test_espeak_voices_the_other_namings(naming, tmp_path):
    """espeak-ng itself takes each naming's voices and language (EmoDB's German)."""
    root = tmp_path / "corpus"
    args = ["--actors", "2", "--emotions", "neutral,angry", "--naming", naming, "--jobs", "2"]
    result = generate("--output", str(root), *args)
    assert result.returncode == 0, result.stderr
    scan, speakers, _ = OTHER_NAMINGS[naming]
    corpus = scan(root)
    assert len(corpus.clips) == 24 and corpus.speakers == speakers
    assert "espeak-ng's output saturated in 0" in result.stdout


@needs_espeak
def test_espeak_corpus_same_seed_same_bytes(real_corpus, tmp_path):
    """Lost clips come back byte for byte from a run with other --jobs and --emotions."""
    source, _ = real_corpus
    root = tmp_path / "corpus"
    shutil.copytree(source, root)
    lost = [
        root / "Actor_01" / "03-01-06-02-01-01-01.wav",
        root / "Actor_02" / "03-01-04-01-02-02-02.wav",
    ]
    for path in lost:
        path.unlink()
    args = ["--actors", "2", "--emotions", "sad,fear", "--jobs", "1"]
    result = generate("--output", str(root), *args)
    assert result.returncode == 0, result.stderr
    assert "2 files written, 30 already complete" in result.stdout
    for path in lost:
        assert filecmp.cmp(path, source / path.relative_to(root), shallow=False)


# ---------------------------------------------------------------------- end to end
def test_the_ravdess_recipe_trains_and_tests_on_a_generated_corpus(
    fake_espeak, tmp_path, capsys, one_thread
):
    """4 actors x 2 emotions, generated with espeak-ng where it is installed (else the
    stand-in), then ``mts-lightning fit`` and ``test`` with configs/ravdess/modern.yaml."""
    root = tmp_path / "corpus"
    synthesizer = [] if ESPEAK else ["--espeak", str(fake_espeak)]
    result = generate(
        "--output",
        str(root),
        "--actors",
        "4",
        "--emotions",
        "sad,angry",
        "--jobs",
        "2",
        *synthesizer,
    )
    assert result.returncode == 0, result.stderr
    config = REPO / "configs" / "ravdess" / "modern.yaml"
    logs = tmp_path / "logs"
    fit = cli_main(
        [
            "fit",
            f"--config={config}",
            f"--data.root={root}",
            "--data.num_folds=4",
            "--data.batch_size=8",
            "--data.num_workers=0",
            "--trainer.max_epochs=1",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
            f"--trainer.logger.init_args.save_dir={logs}",
        ]
    )
    assert fit.trainer.current_epoch == 1 and fit.trainer.global_step > 0
    corpus = fit.datamodule.load_corpus()
    assert len(corpus.clips) == 64 and len(corpus.speakers) == 4
    assert {corpus.class_names[c.label] for c in corpus.clips} == {"sad", "angry"}
    best = Path(fit.trainer.checkpoint_callback.best_model_path)
    run = best.parent.parent
    test = cli_main(
        [
            "test",
            f"--config={run / 'config.yaml'}",
            f"--ckpt_path={best}",
            "--trainer.enable_progress_bar=false",
        ]
    )
    metrics = test.trainer.callback_metrics
    assert {"test/WA", "test/UA", "test/macro_F1"} <= set(metrics)
    assert 0 <= float(metrics["test/UA"]) <= 1
