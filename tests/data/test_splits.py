"""Splits: speaker independence, fold coverage, the paper's protocols, refusals."""

from __future__ import annotations

import pytest

from mts_lightning.data import Clip, make_split, split_speakers


def clips_for(speakers, per_speaker=4, num_classes=2):
    return [Clip(f"{s}/{i}.wav", i % num_classes, s) for s in speakers for i in range(per_speaker)]


def speakers_of(clips, indices):
    return {clips[i].speaker for i in indices}


@pytest.mark.parametrize("method,num_folds,speakers", [("speaker_kfold", 5, 12), ("loso", 0, 6)])
def test_speaker_independent_folds_cover_every_speaker_once(method, num_folds, speakers):
    clips = clips_for([f"s{i:02d}" for i in range(speakers)])
    folds = speakers if method == "loso" else num_folds
    tested = []
    for fold in range(folds):
        split = make_split(clips, method, fold=fold, num_folds=num_folds, seed=3)
        parts = {name: speakers_of(clips, idx) for name, idx in split.items()}
        assert not parts["train"] & parts["val"]
        assert not parts["train"] & parts["test"]
        assert not parts["val"] & parts["test"]
        assert sorted(sum(split.values(), [])) == list(range(len(clips)))
        assert parts["train"] and parts["val"] and parts["test"]
        tested += sorted(parts["test"])
    assert sorted(tested) == sorted({c.speaker for c in clips})


def test_speaker_kfold_is_seeded():
    clips = clips_for([f"s{i}" for i in range(10)])
    assert make_split(clips, "speaker_kfold", seed=1) == make_split(clips, "speaker_kfold", seed=1)
    assert make_split(clips, "speaker_kfold", seed=1) != make_split(clips, "speaker_kfold", seed=2)


def test_paper_window_ravdess():
    clips = clips_for([f"Actor_{i:02d}" for i in range(1, 25)])
    tests = []
    for fold in range(3):
        split = make_split(clips, "paper", fold=fold, corpus="ravdess")
        speakers = split_speakers(clips, split)
        assert [len(speakers[n]) for n in ("train", "val", "test")] == [17, 5, 2]
        tests.append(tuple(speakers["test"]))
    assert len(set(tests)) == 3  # the window shifts per fold
    with pytest.raises(ValueError, match="fold must be in"):
        make_split(clips, "paper", fold=3, corpus="ravdess")


def test_paper_iemocap_by_session():
    speakers = [f"Ses{s:02d}{g}" for s in range(1, 6) for g in "FM"]
    clips = clips_for(speakers)
    split = make_split(clips, "paper", fold=4, corpus="iemocap")
    assert split_speakers(clips, split) == {
        "train": ["Ses02F", "Ses02M", "Ses03F", "Ses03M", "Ses04F", "Ses04M"],
        "val": ["Ses01F", "Ses01M"],
        "test": ["Ses05F", "Ses05M"],
    }


def test_paper_tess_halves_each_speaker():
    clips = clips_for(["OAF", "YAF"], per_speaker=8, num_classes=2)
    split = make_split(clips, "paper", fold=0, corpus="tess")
    assert sorted(sum(split.values(), [])) == list(range(len(clips)))
    for speaker in ("OAF", "YAF"):
        for label in (0, 1):
            group = [i for i, c in enumerate(clips) if c.speaker == speaker and c.label == label]
            assert len(set(group) & set(split["train"])) == len(group) // 2
    other = make_split(clips, "paper", fold=1, corpus="tess")
    assert not set(other["train"]) & set(split["train"])


def test_random_split_is_stratified_and_seeded():
    clips = clips_for(["a", "b"], per_speaker=50, num_classes=4)
    split = make_split(clips, "random", seed=0, ratios=(0.7, 0.2, 0.1))
    assert sorted(sum(split.values(), [])) == list(range(len(clips)))
    for label in range(4):  # 25 clips per class: about 17.5 / 5 / 2.5
        counts = [sum(clips[i].label == label for i in split[n]) for n in ("train", "val", "test")]
        assert abs(counts[0] - 17.5) <= 1 and counts[1] == 5 and abs(counts[2] - 2.5) <= 1
    assert split == make_split(clips, "random", seed=0)
    assert split != make_split(clips, "random", seed=1)


def test_too_few_speakers_is_refused():
    two = clips_for(["OAF", "YAF"])
    for method in ("speaker_kfold", "loso", "paper"):
        with pytest.raises(ValueError, match="needs at least 3 speakers.*OAF, YAF"):
            make_split(two, method, corpus="ravdess")
    four = clips_for(["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="5 folds needs at least 5 speakers.*has 4"):
        make_split(four, "speaker_kfold", num_folds=5)
    with pytest.raises(ValueError, match="num_folds >= 3"):
        make_split(four, "speaker_kfold", num_folds=2)


def test_missing_speakers_and_bad_arguments_are_refused():
    clips = [Clip(f"{i}.wav", i % 2, None) for i in range(10)]
    with pytest.raises(ValueError, match="no speaker.*split='random'"):
        make_split(clips, "speaker_kfold")
    assert len(make_split(clips, "random")["train"]) in (7, 8)
    with pytest.raises(ValueError, match="split must be one of"):
        make_split(clips, "by_magic")
    with pytest.raises(ValueError, match="fold must be in"):
        make_split(clips_for("abcde"), "speaker_kfold", fold=5, num_folds=5)


@pytest.mark.parametrize("method", ["speaker_kfold", "loso", "paper", "random"])
def test_train_speaker_fraction_keeps_nested_training_speakers(method):
    clips = clips_for([f"s{i:02d}" for i in range(12)])
    full = make_split(clips, method, fold=1, num_folds=4, seed=5)
    train = speakers_of(clips, full["train"])
    kept = {}
    for fraction in (0.25, 0.5, 1.0):
        split = make_split(
            clips, method, fold=1, num_folds=4, seed=5, train_speaker_fraction=fraction
        )
        assert split["val"] == full["val"] and split["test"] == full["test"]
        kept[fraction] = speakers_of(clips, split["train"])
        assert len(kept[fraction]) == max(1, round(fraction * len(train)))
        # every clip of a kept speaker trains
        assert split["train"] == [i for i in full["train"] if clips[i].speaker in kept[fraction]]
    assert kept[0.25] < kept[0.5] < kept[1.0] == train
    again = make_split(clips, method, fold=1, num_folds=4, seed=5, train_speaker_fraction=0.5)
    assert speakers_of(clips, again["train"]) == kept[0.5]


def test_train_speaker_fraction_is_checked():
    clips = clips_for([f"s{i}" for i in range(6)])
    for bad in (0, 1.5, -0.5, True, "half"):
        with pytest.raises(ValueError, match=r"train_speaker_fraction must be in \(0, 1\]"):
            make_split(clips, "speaker_kfold", num_folds=3, train_speaker_fraction=bad)
    anonymous = [Clip(f"{i}.wav", i % 2, None) for i in range(20)]
    with pytest.raises(ValueError, match="train_speaker_fraction needs the speaker of every"):
        make_split(anonymous, "random", train_speaker_fraction=0.5)
