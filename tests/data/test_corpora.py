"""Corpus parsers: labels, speakers and class order from official names; bad names."""

from __future__ import annotations

from pathlib import Path

import pytest

from mts_lightning.data import (
    CORPUS_CLASSES,
    DataError,
    SpectrogramDataModule,
    scan_crema_d,
    scan_emodb,
    scan_iemocap,
    scan_manifest,
    scan_ravdess,
    scan_savee,
    scan_tess,
)
from tests.helpers.data_fixtures import (
    make_crema_d_folder,
    make_emodb_folder,
    make_iemocap_folder,
    make_manifest,
    make_ravdess_folder,
    make_savee_folder,
    make_tess_folder,
    write_tone,
)


def labels_by_name(corpus):
    return {clip.path.rsplit("/", 1)[1]: corpus.class_names[clip.label] for clip in corpus.clips}


def test_ravdess_codes_speakers_and_class_order(tmp_path):
    make_ravdess_folder(tmp_path, actors=(1, 2), song=True)
    corpus = scan_ravdess(tmp_path)
    assert corpus.class_names == [
        "neutral",
        "calm",
        "happy",
        "sad",
        "angry",
        "fear",
        "disgust",
        "surprise",
    ]
    labels = labels_by_name(corpus)
    expected = {
        1: "neutral",
        2: "calm",
        3: "happy",
        4: "sad",
        5: "angry",
        6: "fear",
        7: "disgust",
        8: "surprise",
    }
    for code, emotion in expected.items():
        assert labels[f"03-01-{code:02d}-01-01-01-02.wav"] == emotion
    assert corpus.speakers == ["Actor_01", "Actor_02"]
    assert len(corpus.clips) == 16
    # song files are left out by design, and reported as such
    assert len(corpus.excluded) == 12
    assert all("song" in e.reason for e in corpus.excluded)
    assert len(scan_ravdess(tmp_path, include_song=True).clips) == 28


def test_corpus_folders_that_are_links_are_followed_once(tmp_path):
    """A corpus root assembled from links to actor folders kept elsewhere, with a link back
    up the tree: every file once, found through the links."""
    make_ravdess_folder(tmp_path / "disk", actors=(1, 2, 3), emotions=(1, 5))
    root = tmp_path / "corpus"
    root.mkdir()
    for actor in (1, 2, 3):
        (root / f"Actor_{actor:02d}").symlink_to(tmp_path / "disk" / f"Actor_{actor:02d}")
    (root / "Actor_01" / "loop").symlink_to(root)
    corpus = scan_ravdess(root)
    names = sorted(clip.path.rsplit("/", 1)[1] for clip in corpus.clips)
    assert len(names) == 6 and len(set(names)) == 6
    assert {clip.speaker for clip in corpus.clips} == {"Actor_01", "Actor_02", "Actor_03"}
    assert all(clip.path.startswith(str(root)) for clip in corpus.clips)


def test_ravdess_other_modalities_duplicates_and_hidden_files(tmp_path):
    make_ravdess_folder(tmp_path / "a", actors=(1,), emotions=(1,))
    make_ravdess_folder(tmp_path / "b", actors=(1,), emotions=(1,))  # a second extracted copy
    write_tone(tmp_path / "a" / "Actor_01" / "01-01-01-01-01-01-01.wav")  # audio-video modality
    write_tone(tmp_path / "a" / "Actor_01" / "._03-01-01-01-01-01-01.wav")  # AppleDouble
    corpus = scan_ravdess(tmp_path)
    assert len(corpus.clips) == 1
    reasons = sorted(e.reason for e in corpus.excluded)
    assert any(r.startswith("duplicate of") for r in reasons)
    assert any("modality 01" in r for r in reasons)
    assert any("hidden" in r for r in reasons)


@pytest.mark.parametrize(
    "name",
    ["03-01-09-01-01-01-01.wav", "03-01-01-01-01-01-25.wav", "03-01-01-01-01-01.wav", "notes.wav"],
)
def test_ravdess_rejects_names_outside_the_convention(tmp_path, name):
    make_ravdess_folder(tmp_path, actors=(1,), emotions=(1, 2))
    bad = write_tone(tmp_path / "Actor_01" / name)
    with pytest.raises(ValueError, match="RAVDESS") as err:
        scan_ravdess(tmp_path)
    assert str(bad) in str(err.value) and "03-01-06-01-02-01-12.wav" in str(err.value)
    corpus = scan_ravdess(tmp_path, skip_bad_files=True)
    assert [s.path for s in corpus.skipped] == [str(bad)]
    assert len(corpus.clips) == 2


def test_crema_d_codes(tmp_path):
    make_crema_d_folder(tmp_path, actors=(1001, 1091))
    corpus = scan_crema_d(tmp_path)
    assert corpus.class_names == ["angry", "disgust", "fear", "happy", "neutral", "sad"]
    labels = labels_by_name(corpus)
    expected = {
        "ANG": "angry",
        "DIS": "disgust",
        "FEA": "fear",
        "HAP": "happy",
        "NEU": "neutral",
        "SAD": "sad",
    }
    for code, emotion in expected.items():
        assert labels[f"1091_DFA_{code}_XX.wav"] == emotion
    assert corpus.speakers == ["1001", "1091"]
    write_tone(tmp_path / "AudioWAV" / "1001_DFA_XYZ_XX.wav")
    with pytest.raises(ValueError, match="1001_DFA_XYZ_XX.wav.*CREMA-D convention"):
        scan_crema_d(tmp_path)


def test_emodb_codes(tmp_path):
    make_emodb_folder(tmp_path, speakers=("03", "16"))
    corpus = scan_emodb(tmp_path)
    assert corpus.class_names == ["angry", "boredom", "disgust", "fear", "happy", "sad", "neutral"]
    labels = labels_by_name(corpus)
    # W Wut = anger, L Langeweile = boredom, E Ekel = disgust, A Angst = fear,
    # F Freude = happiness, T Trauer = sadness, N neutral
    expected = {
        "W": "angry",
        "L": "boredom",
        "E": "disgust",
        "A": "fear",
        "F": "happy",
        "T": "sad",
        "N": "neutral",
    }
    for letter, emotion in expected.items():
        assert labels[f"16a01{letter}a.wav"] == emotion
    assert corpus.speakers == ["03", "16"]
    write_tone(tmp_path / "wav" / "03a01Xa.wav")
    with pytest.raises(ValueError, match="03a01Xa.wav.*EmoDB convention"):
        scan_emodb(tmp_path)


def test_tess_codes_and_speakers(tmp_path):
    make_tess_folder(tmp_path)
    corpus = scan_tess(tmp_path)
    assert corpus.class_names == [
        "angry",
        "disgust",
        "fear",
        "happy",
        "neutral",
        "pleasant_surprise",
        "sad",
    ]
    labels = labels_by_name(corpus)
    for code, emotion in {
        "angry": "angry",
        "ps": "pleasant_surprise",
        "sad": "sad",
        "fear": "fear",
    }.items():
        assert labels[f"YAF_back_{code}.wav"] == emotion
    assert corpus.speakers == ["OAF", "YAF"]
    assert len(corpus.clips) == 28
    write_tone(tmp_path / "OAF_bored" / "OAF_back_bored.wav")
    corpus = scan_tess(tmp_path, skip_bad_files=True)
    assert [s.path.endswith("OAF_back_bored.wav") for s in corpus.skipped] == [True]


@pytest.mark.parametrize("flat", [False, True])
def test_savee_codes_two_letter_first(tmp_path, flat):
    make_savee_folder(tmp_path, flat=flat)
    corpus = scan_savee(tmp_path)
    assert corpus.class_names == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert corpus.speakers == ["DC", "JE", "JK", "KL"]
    labels = {
        (c.speaker, c.path.rsplit("/", 1)[1]): corpus.class_names[c.label] for c in corpus.clips
    }
    expected = {
        "a": "angry",
        "d": "disgust",
        "f": "fear",
        "h": "happy",
        "n": "neutral",
        "sa": "sad",
        "su": "surprise",
    }
    for code, emotion in expected.items():
        name = f"JK_{code}01.wav" if flat else f"{code}01.wav"
        assert labels[("JK", name)] == emotion


def test_savee_rejects_unknown_speaker_folder(tmp_path):
    make_savee_folder(tmp_path)
    write_tone(tmp_path / "AudioData" / "XX" / "a01.wav")
    with pytest.raises(ValueError, match="XX/a01.wav.*SAVEE convention"):
        scan_savee(tmp_path)


def test_iemocap_labels_merge_and_speakers(tmp_path):
    make_iemocap_folder(tmp_path, sessions=(1, 2))
    corpus = scan_iemocap(tmp_path)
    assert corpus.class_names == ["neutral", "angry", "happy", "sad"]
    labels = labels_by_name(corpus)
    assert labels["Ses01F_impro01_F000.wav"] == "neutral"
    assert labels["Ses01F_impro01_M001.wav"] == "angry"
    assert labels["Ses02F_impro01_F002.wav"] == "happy"
    assert labels["Ses02F_impro01_F003.wav"] == "happy"  # excited merged into happy
    assert labels["Ses02F_impro01_M004.wav"] == "sad"
    assert "Ses01F_impro01_F005.wav" not in labels  # frustration: outside the four classes
    assert len(corpus.excluded) == 4
    assert corpus.speakers == ["Ses01F", "Ses01M", "Ses02F", "Ses02M"]


def test_iemocap_missing_wav(tmp_path):
    files = make_iemocap_folder(tmp_path, sessions=(1,))
    files[0].unlink()
    with pytest.raises(FileNotFoundError, match="Ses01F_impro01_F000.wav.*does not exist"):
        scan_iemocap(tmp_path)
    assert len(scan_iemocap(tmp_path, skip_bad_files=True).skipped) == 1


def test_manifest(tmp_path):
    a = write_tone(tmp_path / "audio" / "a.wav")
    b = write_tone(tmp_path / "audio" / "b.wav")
    rows = [
        {"path": "audio/a.wav", "label": "joy", "speaker": "s1"},
        {"path": str(b), "label": "anger", "speaker": "s2"},
    ]
    corpus = scan_manifest(make_manifest(tmp_path, rows))
    assert corpus.class_names == ["anger", "joy"]
    assert [(c.path, c.label, c.speaker) for c in corpus.clips] == [
        (str(a), 1, "s1"),
        (str(b), 0, "s2"),
    ]


def test_manifest_without_speaker_column(tmp_path):
    write_tone(tmp_path / "a.wav")
    corpus = scan_manifest(make_manifest(tmp_path, [{"path": "a.wav", "label": "x"}]))
    assert corpus.clips[0].speaker is None


def test_manifest_missing_column(tmp_path):
    manifest = make_manifest(tmp_path, [{"file": "a.wav", "label": "x"}])
    with pytest.raises(ValueError, match=r"manifest.*missing column\(s\) path.*found columns"):
        scan_manifest(manifest)


def test_manifest_path_that_does_not_exist(tmp_path):
    write_tone(tmp_path / "a.wav")
    manifest = make_manifest(
        tmp_path, [{"path": "a.wav", "label": "x"}, {"path": "gone.wav", "label": "y"}]
    )
    with pytest.raises(FileNotFoundError, match="gone.wav.*line 3.*does not exist"):
        scan_manifest(manifest)
    corpus = scan_manifest(manifest, skip_bad_files=True)
    assert len(corpus.clips) == 1 and corpus.skipped[0].path.endswith("gone.wav")


@pytest.mark.parametrize(
    "scan",
    [scan_ravdess, scan_crema_d, scan_emodb, scan_tess, scan_savee, scan_iemocap, scan_manifest],
)
def test_missing_root(tmp_path, scan):
    with pytest.raises(FileNotFoundError, match="does not exist") as err:
        scan(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value)


@pytest.mark.parametrize(
    "scan", [scan_ravdess, scan_crema_d, scan_emodb, scan_tess, scan_savee, scan_iemocap]
)
def test_root_without_matching_files(tmp_path, scan):
    (tmp_path / "readme.txt").write_text("nothing here")
    with pytest.raises(FileNotFoundError, match="no usable audio found.*expected files named like"):
        scan(tmp_path)


def test_class_tables_are_complete():
    assert {k: len(v) for k, v in CORPUS_CLASSES.items()} == {
        "ravdess": 8,
        "crema_d": 6,
        "emodb": 7,
        "tess": 7,
        "savee": 7,
        "iemocap": 4,
    }


# ---------------------------------------------------------------------- one clip, one label
def two_clips(tmp_path):
    write_tone(tmp_path / "clips" / "a.wav")
    write_tone(tmp_path / "clips" / "b.wav")


@pytest.mark.parametrize("again", ["clips/a.wav", "clips/../clips/a.wav", "ABSOLUTE"])
def test_manifest_one_file_with_two_labels_is_refused(tmp_path, again):
    two_clips(tmp_path)
    again = str(tmp_path / "clips" / "a.wav") if again == "ABSOLUTE" else again
    rows = [
        {"path": "clips/a.wav", "label": "angry"},
        {"path": "clips/b.wav", "label": "sad"},
        {"path": again, "label": "happy"},
    ]
    with pytest.raises(DataError) as err:
        scan_manifest(make_manifest(tmp_path, rows), skip_bad_files=True)
    message = str(err.value)
    assert str(tmp_path / "clips" / "a.wav") in message
    assert "'angry' (line 2)" in message and "'happy' (line 4)" in message
    assert isinstance(err.value, ValueError)


def test_manifest_same_file_same_label_is_kept_once_and_reported(tmp_path):
    two_clips(tmp_path)
    rows = [
        {"path": "clips/a.wav", "label": "angry"},
        {"path": "clips/b.wav", "label": "sad"},
        {"path": "./clips/a.wav", "label": "angry"},
    ]
    corpus = scan_manifest(make_manifest(tmp_path, rows))
    assert [Path(c.path).name for c in corpus.clips] == ["a.wav", "b.wav"]
    assert corpus.class_names == ["angry", "sad"]
    (excluded,) = corpus.excluded
    assert excluded.reason.startswith(f"duplicate of {tmp_path / 'clips' / 'a.wav'} (line 2)")


def test_manifest_classes_come_from_the_kept_clips(tmp_path):
    two_clips(tmp_path)
    rows = [
        {"path": "clips/a.wav", "label": "angry"},
        {"path": "clips/b.wav", "label": "sad"},
        {"path": "clips/gone.wav", "label": "happy"},
    ]
    manifest = make_manifest(tmp_path, rows)
    corpus = scan_manifest(manifest, skip_bad_files=True)
    assert corpus.class_names == ["angry", "sad"]
    assert [c.label for c in corpus.clips] == [0, 1]
    dm = SpectrogramDataModule(corpus="manifest", root=str(manifest), skip_bad_files=True)
    assert dm.class_names == ["angry", "sad"] and dm.num_classes == 2


def test_iemocap_utterance_labelled_twice(tmp_path):
    make_iemocap_folder(tmp_path, sessions=(1,))
    label_file = next(tmp_path.rglob("EmoEvaluation/*.txt"))
    lines = label_file.read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if "_F001\tang" in line)
    with label_file.open("a") as f:  # the same utterance again, now sad
        f.write(lines[first].replace("\tang\t", "\tsad\t") + "\n")
    with pytest.raises(DataError) as err:
        scan_iemocap(tmp_path, skip_bad_files=True)
    message = str(err.value)
    assert "Ses01F_impro01_F001.wav" in message
    assert f"'angry' ({label_file}, line {first + 1})" in message
    assert f"'sad' ({label_file}, line {len(lines) + 1})" in message
    # listed twice with the same label: kept once, reported
    label_file.write_text("\n".join([*lines, lines[first]]) + "\n")
    corpus = scan_iemocap(tmp_path)
    assert sum(c.path.endswith("_F001.wav") for c in corpus.clips) == 1
    assert any(e.reason.startswith("duplicate of") for e in corpus.excluded)


@pytest.mark.parametrize("count", [1, 5, 7])
def test_several_bad_names_are_one_error_naming_the_first_few(tmp_path, count):
    make_ravdess_folder(tmp_path, actors=(1,), emotions=(1, 2))
    bad = [write_tone(tmp_path / "Actor_01" / f"take{i}.wav") for i in range(count)]
    with pytest.raises(DataError) as err:
        scan_ravdess(tmp_path)
    message = str(err.value)
    assert f"{count} bad file(s)" in message and "skip_bad_files=True" in message
    assert [str(p) in message for p in bad] == [True] * min(count, 5) + [False] * (count - 5)
    assert ("and 2 more" in message) == (count == 7)
    assert len(scan_ravdess(tmp_path, skip_bad_files=True).skipped) == count
