"""Audio reading (bad files), feature computation, lengths and segments, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from mts_lightning.data import (
    BadAudioError,
    DataError,
    FeatureConfig,
    FeatureExtractor,
    SpecAugment,
    fix_length,
    load_audio,
    segment_starts,
)
from mts_lightning.data.audio import audio_duration
from mts_lightning.data.frontend import check_pad_mode
from tests.helpers.data_fixtures import write_bad_file, write_stereo, write_tone


@pytest.mark.parametrize(
    "kind,message",
    [
        ("empty", "empty file"),
        ("truncated", "truncated WAV file"),
        ("garbage", "unreadable audio file"),
        ("silent", "silent file"),
        ("short", "fewer than one analysis frame"),
        ("lfs_pointer", "is a Git LFS pointer, not audio: run `git lfs pull`"),
    ],
)
def test_bad_audio_is_named_and_explained(tmp_path, kind, message):
    path = write_bad_file(tmp_path / f"{kind}.wav", kind)
    with pytest.raises(BadAudioError, match=message) as err:
        load_audio(path, 16000, min_samples=1024)
    assert err.value.path == str(path) and str(path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(BadAudioError, match="does not exist"):
        load_audio(tmp_path / "gone.wav", 16000)


def test_stereo_is_averaged_and_resampled(tmp_path):
    path = write_tone(tmp_path / "s.wav", seconds=0.5, sample_rate=8000, channels=2)
    mono = load_audio(path, 16000)
    assert mono.shape == (16000 // 2,) and mono.dtype == torch.float32
    data, _ = sf.read(str(path), dtype="float32")
    assert np.allclose(load_audio(path, 8000).numpy(), data.mean(axis=1), atol=1e-6)


def test_a_git_lfs_pointer_is_named_as_such_also_from_its_header(tmp_path):
    path = write_bad_file(tmp_path / "1001_DFA_ANG_XX.wav", "lfs_pointer")
    with pytest.raises(BadAudioError, match="is a Git LFS pointer, not audio"):
        audio_duration(path)
    assert isinstance(BadAudioError(path, "x"), DataError)


def test_stereo_whose_channels_cancel_keeps_the_loudest_channel(tmp_path):
    path = write_stereo(tmp_path / "wired.wav", right="inverted")
    data, _ = sf.read(str(path), dtype="float32")
    with pytest.warns(UserWarning, match="channels cancel") as record:
        mono = load_audio(path, 8000)
    assert str(path) in str(record[0].message)
    assert np.array_equal(mono.numpy(), data[:, 0])  # |left| == |right|: the first is kept
    louder = tmp_path / "louder_right.wav"
    sf.write(str(louder), np.stack([-0.5 * data[:, 0], data[:, 0]], 1), 8000, subtype="PCM_16")
    with pytest.warns(UserWarning, match="using channel 1 alone"):
        assert load_audio(louder, 8000).abs().max() > 0.25


@pytest.mark.parametrize("right", ["silent", "same"])
def test_stereo_that_does_not_cancel_is_averaged_without_a_warning(tmp_path, right, recwarn):
    path = write_stereo(tmp_path / f"{right}.wav", right=right)
    data, _ = sf.read(str(path), dtype="float32")
    mono = load_audio(path, 8000)
    assert np.allclose(mono.numpy(), data.mean(axis=1), atol=1e-6)
    assert not [w for w in recwarn if "cancel" in str(w.message)]


def test_stft_is_the_papers_compressed_magnitude():
    config = FeatureConfig(kind="stft", sample_rate=16000, n_fft=1024, hop_length=512)
    wave = torch.randn(16000)
    feature = FeatureExtractor(config)(wave)
    assert feature.shape == (config.num_frames(16000), 513) == (32, 513)
    window = torch.hann_window(1024)
    magnitude = torch.stft(wave, 1024, 512, window=window, return_complex=True).abs()
    assert torch.allclose(feature, magnitude.pow(2 / 3).T, atol=1e-3)


def test_logmel_shape_and_settings_key():
    config = FeatureConfig(kind="logmel", n_mels=40, n_fft=512, hop_length=256)
    assert FeatureExtractor(config)(torch.randn(8000)).shape == (1 + 8000 // 256, 40)
    assert config.key() != FeatureConfig(kind="logmel", n_mels=41, n_fft=512, hop_length=256).key()
    # settings that do not change STFT features do not enter its key
    assert (
        FeatureConfig(kind="stft", n_mels=40).key() == FeatureConfig(kind="stft", n_mels=80).key()
    )


def test_feature_config_is_validated():
    with pytest.raises(ValueError, match="features.kind must be"):
        FeatureConfig(kind="mfcc")
    with pytest.raises(ValueError, match="win_length"):
        FeatureConfig(n_fft=256, win_length=512)


def test_fix_length_crops_and_pads():
    x = torch.arange(10.0)[:, None].repeat(1, 3)
    assert torch.equal(fix_length(x, 4, start=2)[:, 0], torch.tensor([2.0, 3, 4, 5]))
    padded = fix_length(x, 12)
    assert padded.shape == (12, 3) and padded[10:].abs().sum() == 0


def test_fix_length_repeat_plays_the_clip_again_and_crops_alike():
    x = torch.arange(4.0)[:, None].repeat(1, 2)
    assert fix_length(x, 10, pad_mode="repeat")[:, 0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert fix_length(x, 3, start=1, pad_mode="repeat")[:, 1].tolist() == [1, 2, 3]
    # From a start near the end, what is left of the clip is what repeats.
    assert fix_length(x, 5, start=2, pad_mode="repeat")[:, 0].tolist() == [2, 3, 2, 3, 2]
    assert fix_length(x[:0], 3, pad_mode="repeat").abs().sum() == 0
    with pytest.raises(ValueError, match="pad_mode must be one of zeros, repeat, got 'wrap'"):
        check_pad_mode("wrap")


def test_segments_overlap_and_cover_the_end():
    assert segment_starts(5, 8, 0.5) == [0]
    assert segment_starts(16, 8, 0.5) == [0, 4, 8]
    assert segment_starts(17, 8, 0.5) == [0, 4, 8, 9]
    assert segment_starts(16, 8, 0.0) == [0, 8]


def test_spec_augment_keeps_shape_and_masks():
    torch.manual_seed(0)
    augment = SpecAugment(
        time_masks=2, time_mask_frames=5, freq_masks=2, freq_mask_bins=4, stretch=(0.7, 1.4)
    )
    x = torch.randn(50, 20)
    y = augment(x)
    assert y.shape == x.shape and (y == 0).any()
    assert torch.equal(SpecAugment(0, 0, 0, 0, stretch=(1.0, 1.0))(x), x)
    with pytest.raises(ValueError, match="stretch"):
        SpecAugment(stretch=(1.2, 0.8))
