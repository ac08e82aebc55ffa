"""The embedded synthetic corpus: deterministic waveforms with time-stretched class patterns.

Each class is a spectro-temporal pattern: a sequence of harmonic "syllables", each with its
own pitch contour, duration, pause, energy envelope and brightness. A clip renders its class's
pattern for one of several synthetic speakers (own base pitch and formant envelope), with a
random global time stretch drawn log-uniformly from a configurable range, plus a random
onset, gain, per-syllable jitter (duration, pitch, amplitude) and white noise. Everything
derives from ``seed``, so the same configuration always gives the same corpus; the same clip
rendered with another stretch range keeps its label, speaker, jitter, gain and noise.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch

from .base import Clip, Corpus
from .protocols import speaker_window
from .registry import CorpusSpec, register_corpus

#: Bumped whenever the renderer changes, so cached features of older renders are not reused.
SYNTHETIC_VERSION = 2
#: Longest class pattern at stretch 1, in seconds (leaves room for a 1.6x stretch in 3 s).
MAX_PATTERN_SECONDS = 1.4
#: Highest harmonic frequency rendered, in Hz, and most harmonics per syllable.
MAX_HARMONIC_HZ = 4000.0
MAX_HARMONICS = 24
#: Per-clip jitter of each syllable: relative duration, pitch in semitones, relative amplitude.
DURATION_JITTER, PITCH_JITTER, AMPLITUDE_JITTER = 0.2, 2.0, 0.3
#: Range of the global time stretch of a clip, unless configured.
DEFAULT_STRETCH = (0.6, 1.6)


@dataclass(frozen=True)
class SyntheticConfig:
    """What the synthetic corpus looks like; every field changes the rendered audio."""

    seed: int = 0
    num_classes: int = 6
    num_speakers: int = 10
    clips_per_speaker: int = 72
    duration: float = 3.0
    snr_db: tuple[float, float] = (0.0, 20.0)

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"synthetic num_classes must be at least 2, got {self.num_classes}")
        if self.num_speakers < 1 or self.clips_per_speaker < self.num_classes:
            raise ValueError(
                "synthetic corpus needs at least 1 speaker and at least num_classes clips per "
                f"speaker, got {self.num_speakers} speakers, {self.clips_per_speaker} clips each"
            )
        if self.duration <= 0:
            raise ValueError(f"synthetic duration must be positive, got {self.duration}")


def check_stretch_range(name: str, value: tuple[float, float]) -> tuple[float, float]:
    """Validate a ``(low, high)`` stretch range (positive, low <= high)."""
    low, high = (float(v) for v in value)
    if not 0 < low <= high:
        raise ValueError(f"{name} must be (low, high) with 0 < low <= high, got {tuple(value)}")
    return low, high


@dataclass(frozen=True)
class Syllable:
    """One harmonic syllable of a class pattern (times in seconds at stretch 1)."""

    start: float
    duration: float
    pitch_start: float  # semitones relative to the speaker's base pitch
    pitch_end: float
    curvature: float  # contour shape exponent: t ** curvature
    attack: float  # fraction of the syllable spent rising
    amplitude: float
    brightness: float  # harmonic roll-off per harmonic


@dataclass(frozen=True)
class Speaker:
    """A synthetic voice: base pitch and formant resonances."""

    base_pitch: float
    formants: tuple[float, ...]
    bandwidths: tuple[float, ...]

    def envelope(self, freqs: np.ndarray) -> np.ndarray:
        """Spectral envelope gain at ``freqs`` (sum of resonances plus a floor)."""
        gain = np.full_like(freqs, 0.1)
        for centre, width in zip(self.formants, self.bandwidths, strict=True):
            gain += 1.0 / (1.0 + ((freqs - centre) / width) ** 2)
        return gain


def make_patterns(config: SyntheticConfig) -> list[list[Syllable]]:
    """The syllable sequence of each class, from the seed."""
    rng = np.random.default_rng([config.seed, 1])
    counts = np.resize(rng.permutation([2, 3, 4, 5]), config.num_classes)
    patterns = []
    for count in counts:
        durations = rng.uniform(0.12, 0.32, count)
        gaps = rng.uniform(0.04, 0.18, count)
        scale = min(1.0, MAX_PATTERN_SECONDS / float(durations.sum() + gaps[:-1].sum()))
        durations, gaps = durations * scale, gaps * scale
        starts = np.concatenate([[0.0], np.cumsum(durations + gaps)[:-1]])
        pitch_start = rng.uniform(-5, 7, count)
        syllables = [
            Syllable(
                start=float(starts[i]),
                duration=float(durations[i]),
                pitch_start=float(pitch_start[i]),
                pitch_end=float(pitch_start[i] + rng.uniform(-8, 8)),
                curvature=float(rng.choice([0.5, 1.0, 2.0])),
                attack=float(rng.uniform(0.05, 0.5)),
                amplitude=float(rng.uniform(0.4, 1.0)),
                brightness=float(rng.uniform(0.55, 0.85)),
            )
            for i in range(count)
        ]
        patterns.append(syllables)
    return patterns


def make_speakers(config: SyntheticConfig) -> list[Speaker]:
    """The synthetic voices, from the seed."""
    rng = np.random.default_rng([config.seed, 2])
    speakers = []
    for _ in range(config.num_speakers):
        scale = rng.uniform(0.85, 1.2)
        formants = np.array([500.0, 1500.0, 2500.0]) * scale * rng.uniform(0.9, 1.1, 3)
        speakers.append(
            Speaker(
                base_pitch=float(math.exp(rng.uniform(math.log(90), math.log(250)))),
                formants=tuple(float(f) for f in formants),
                bandwidths=tuple(float(b) for b in rng.uniform(60, 200, 3)),
            )
        )
    return speakers


class SyntheticCorpus(Corpus):
    """The synthetic corpus, rendered with global time stretches from ``stretch``.

    Clips are balanced: every speaker has ``clips_per_speaker`` clips cycling through the
    classes. Two instances with the same config and different ``stretch`` describe the same
    clips (labels, speakers, jitter, gain, noise) rendered at different speeds.
    """

    def __init__(
        self, config: SyntheticConfig, stretch: tuple[float, float] = DEFAULT_STRETCH
    ) -> None:
        self.config = config
        self.stretch = check_stretch_range("synthetic stretch range", stretch)
        self.patterns = make_patterns(config)
        self.voices = make_speakers(config)
        clips = [
            Clip(
                f"synthetic/{s * config.clips_per_speaker + j:05d}",
                j % config.num_classes,
                f"synth_{s:02d}",
            )
            for s in range(config.num_speakers)
            for j in range(config.clips_per_speaker)
        ]
        names = [f"pattern_{c}" for c in range(config.num_classes)]
        super().__init__("synthetic", names, clips)

    @staticmethod
    def index(clip: Clip) -> int:
        """The clip's position in the corpus (encoded in its synthetic path)."""
        return int(clip.path.rsplit("/", 1)[1])

    def identity(self, clip: Clip) -> str:
        settings = {**asdict(self.config), "stretch": self.stretch, "version": SYNTHETIC_VERSION}
        return f"synthetic:{json.dumps(settings, sort_keys=True)}:{self.index(clip)}"

    def duration(self, clip: Clip) -> float:
        return self.config.duration

    def load_waveform(self, clip: Clip, sample_rate: int, min_samples: int) -> torch.Tensor:
        return torch.from_numpy(self.render(self.index(clip), sample_rate))

    def render(self, index: int, sample_rate: int) -> np.ndarray:
        """Render clip ``index`` as a float32 waveform of ``duration`` seconds."""
        cfg = self.config
        clip = self.clips[index]
        pattern, voice = self.patterns[clip.label], self.voices[index // cfg.clips_per_speaker]
        rng = np.random.default_rng([cfg.seed, 3, index])
        low, high = self.stretch
        stretch = math.exp(math.log(low) + rng.uniform() * (math.log(high) - math.log(low)))
        jitter = rng.uniform(-1.0, 1.0, (len(pattern), 3))
        end = max(s.start + s.duration for s in pattern) * stretch
        onset = rng.uniform(0.0, max(0.0, cfg.duration - end - 0.05))
        gain = 10 ** (rng.uniform(-6.0, 0.0) / 20)
        snr = rng.uniform(*cfg.snr_db)
        phases = rng.uniform(0, 2 * np.pi, MAX_HARMONICS)
        noise = rng.standard_normal(round(cfg.duration * sample_rate))

        out = np.zeros(noise.shape[0])
        for syllable, (j_dur, j_pitch, j_amp) in zip(pattern, jitter, strict=True):
            start = round((onset + syllable.start * stretch) * sample_rate)
            length = round(
                syllable.duration * stretch * (1 + DURATION_JITTER * j_dur) * sample_rate
            )
            length = min(length, out.shape[0] - start)
            if length <= 1:
                continue
            t = np.arange(length) / length
            semitones = (
                syllable.pitch_start
                + (syllable.pitch_end - syllable.pitch_start) * t**syllable.curvature
            )
            f0 = voice.base_pitch * 2 ** ((semitones + PITCH_JITTER * j_pitch) / 12)
            phase = 2 * np.pi * np.cumsum(f0) / sample_rate
            top = min(MAX_HARMONIC_HZ, 0.45 * sample_rate) / f0.max()
            harmonics = np.arange(1, int(np.clip(top, 1, MAX_HARMONICS)) + 1)
            weights = syllable.brightness ** (harmonics - 1) * voice.envelope(harmonics * f0.mean())
            tone = weights @ np.sin(np.outer(harmonics, phase) + phases[: len(harmonics), None])
            envelope = np.sin(0.5 * np.pi * np.minimum(t / syllable.attack, 1.0)) * np.sqrt(1 - t)
            out[start : start + length] += (
                syllable.amplitude * (1 + AMPLITUDE_JITTER * j_amp) * envelope * tone
            )
        out /= np.abs(out).max() + 1e-9
        rms = np.sqrt(np.mean(out**2))
        out = gain * (out + noise * rms * 10 ** (-snr / 20))
        return np.clip(out, -1.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class SyntheticOptions(SyntheticConfig):
    """The synthetic corpus's options (the DataModule's ``corpus_options``): what it looks like
    (:class:`SyntheticConfig`) and the stretch ranges it renders the train/val and the test
    clips with.

    In YAML::

        data:
          corpus: synthetic
          corpus_options: {num_speakers: 4, clips_per_speaker: 6, test_stretch: [1.0, 1.0]}
    """

    train_stretch: tuple[float, float] = DEFAULT_STRETCH
    test_stretch: tuple[float, float] = DEFAULT_STRETCH

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("train_stretch", "test_stretch"):
            check_stretch_range(name, getattr(self, name))

    @property
    def config(self) -> SyntheticConfig:
        """The :class:`SyntheticConfig` part (what identifies a rendered clip)."""
        return SyntheticConfig(**{f.name: getattr(self, f.name) for f in fields(SyntheticConfig)})


def load_synthetic(
    root: str | None = None, skip_bad_files: bool = False, part: str = "train", **options: Any
) -> SyntheticCorpus:
    """The embedded corpus with ``options`` (:class:`SyntheticOptions`; ``root`` and
    ``skip_bad_files`` do not apply); ``part="test"`` renders with the test stretch range."""
    settings = SyntheticOptions(**options)
    stretch = settings.test_stretch if part == "test" else settings.train_stretch
    return SyntheticCorpus(settings.config, stretch)


register_corpus(
    CorpusSpec(
        "synthetic",
        load_synthetic,
        speaker_window,
        options=SyntheticOptions,
        class_options=("num_classes",),
        needs_root=False,
        test_part_differs=True,
    )
)
