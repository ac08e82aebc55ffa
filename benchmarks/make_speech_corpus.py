"""Generate a small acted-emotion speech corpus with espeak-ng, named as RAVDESS, CREMA-D or
EmoDB names its files (``--naming``), so that the library reads it as that corpus.

- ``ravdess`` (default): ``Actor_AA/03-01-EE-II-SS-RR-AA.wav`` (audio-only speech; emotion
  01-08 = neutral, calm, happy, sad, angry, fear, disgust, surprise; intensity 01 normal, 02
  strong, neutral only 01; statement 01 "Kids are talking by the door", 02 "Dogs are sitting
  by the door"; repetition 01-02; actor 01-24): 60 clips per actor, as in RAVDESS.
- ``crema_d``: ``AAAA_SSS_EEE_LL.wav`` (actor 1001-1024; four of CREMA-D's sentences, DFA
  "Don't forget a jacket", TAI "The airplane is almost full", MTI "Maybe tomorrow it will be
  cold", IWW "I wonder what this is about"; emotion NEU, HAP, SAD, ANG, FEA, DIS; level MD normal,
  HI strong, XX for neutral): 44 clips per actor.
- ``emodb``: ``SSTTTEV.wav`` (speaker 03-26; four of EmoDB's German texts a01, a02, a04, a07
  spoken by a German voice; emotion letter N, F, T, W, A, E; version a normal, b strong,
  neutral only a): 44 clips per actor.

Each naming has voices of its own (espeak-ng variants and a base pitch of its own) and its
own sentences; odd actors are male voices, even ones female. The folder is readable by
``mts_lightning.data.corpora.scan_ravdess`` (``scan_crema_d``, ``scan_emodb``) and
``--data.corpus ravdess`` (``crema_d``, ``emodb``).

Each emotion is a manner of speaking that combines several cues, as acted speech does:
speaking rate, base pitch, pitch range, intonation (espeak-ng's tune sets and sentence
punctuation), loudness, pauses between words and hesitations, and voice quality (breath,
creak, F0 flutter, spectral tilt, a tremolo for fear). The strong intensity exaggerates the
manner. Each actor is a distinct voice: an espeak-ng voice variant with its own base pitch,
speaking rate and level; repetitions differ by a small seeded jitter. Everything follows from
``--seed``: the same arguments give the same files.

Output: 16 kHz mono float WAV, leading and trailing silence trimmed to a fixed margin, each
written to a hidden temporary file and renamed when complete, so an interrupted run can be
run again: complete files are kept, the rest is made. The corpus is a benchmark input, not
shipped data.

    python benchmarks/make_speech_corpus.py --output /data/speech_corpus --jobs 2
    python benchmarks/make_speech_corpus.py --output /data/speech_emodb --naming emodb

Needs the espeak-ng program (Debian/Ubuntu package ``espeak-ng``); ``--espeak`` names
another executable with the same command line (the tests use a small substitute).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

#: RAVDESS emotion names in code order (code = index + 1): the emotions' numbering here.
EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise")
MAX_ACTORS = 24
SAMPLE_RATE = 16000
#: Silence kept before the first and after the last sound, in seconds.
MARGIN = 0.1
#: Frames quieter than this, relative to the loudest 10 ms frame, count as silence (dB).
SILENCE_DB = -40.0
#: Speaking rate of a neutral statement by an actor with no rate offset (words per minute).
BASE_WPM = 165
#: espeak-ng's amplitude (-a): low enough that no voice or manner saturates its 16-bit output;
#: loudness is applied afterwards in floating point.
SYNTH_AMPLITUDE = 25
#: RMS over the sounding frames of an actor's neutral statement 1 before its level offset
#: (-33 dBFS: room for the loudest manner, strong anger, to peak below 1).
TARGET_RMS = 0.022
#: Peak above which a finished clip is scaled down (counted in the summary).
PEAK_LIMIT = 0.99
#: Deviation of the strong intensity from neutral, as a multiple of the normal one's.
STRONG = 1.5
#: The manifest that ties a folder to the seed and synthesizer that made it.
MANIFEST = "corpus.json"
MANIFEST_FORMAT = 1
MISSING_ESPEAK = (
    "espeak-ng was not found on PATH: install the Debian/Ubuntu package `espeak-ng` "
    "(apt-get install espeak-ng) or pass --espeak /path/to/espeak-ng"
)

#: espeak-ng voice variants (espeak-ng-data/voices/!v) voicing the actors: odd actors draw
#: from the male pool, even ones from the female one. Whispering, croaking, robotic and
#: Klatt-synthesizer variants are left out: voice quality is an emotion cue here.
MALE_VARIANTS = (
    "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Andy", "Gene", "robert", "michel", "travis"
)  # fmt: skip
FEMALE_VARIANTS = (
    "f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "belinda", "linda", "steph",
    "anika",
)  # fmt: skip
#: espeak-ng's whisper breath (noise per formant, its variant ``whisper``) at full breathiness.
WHISPER_BREATH = (75, 75, 50, 40, 15, 10)
WHISPER_BREATH_WIDTH = "breathw 150 150 200 200 400 400"
#: espeak-ng's default F0 flutter, in voice-file units.
DEFAULT_FLUTTER = 2
#: Gain (dB per unit of tilt) that the spectral tilt applies at these frequencies (Hz).
TILT_DB = ((300, 0.0), (1000, 0.0), (3000, 8.0))


@dataclass(frozen=True)
class Manner:
    """How an emotion is spoken, relative to the actor's neutral voice."""

    rate: float = 1.0  # speaking-rate factor (words per minute)
    pitch: float = 0.0  # base-pitch shift, percent
    pitch_range: float = 100.0  # pitch range, percent of the voice's own
    loudness: float = 0.0  # level, dB
    word_gap: float = 0.0  # pause between words, espeak-ng -g units (10 ms at 175 wpm)
    hesitation: float = 0.0  # one pause inside the sentence, ms (at a seeded word)
    ending: str = "."  # sentence punctuation: selects the tune's statement/exclamation/question
    tune: int = 1  # espeak-ng intonation set s/c/q/e<tune> (1-6; 1 is English's own)
    stressed: tuple[int, ...] = ()  # positions of the stressed words (-1: the last)
    stress: float = 0.0  # their stress: 1 = 50% louder, 15% higher, 10% longer
    breath: float = 0.0  # breathiness, 0-1 of espeak-ng's whisper
    tilt: float = 0.0  # spectral tilt, -1 (lax, dark) to 1 (tense, bright)
    roughness: float = 0.0  # creak, 0-7 (espeak-ng weakens alternate glottal pulses)
    flutter: float = 0.0  # F0 jitter added to the voice's own, espeak-ng units
    tremolo: float = 0.0  # amplitude-modulation depth at 5-7 Hz, 0-1

    def exaggerated(self, factor: float) -> Manner:
        """The manner with every deviation from neutral multiplied by ``factor`` (rates, pitch
        range on a log scale)."""
        return dataclasses.replace(
            self,
            rate=self.rate**factor,
            pitch=self.pitch * factor,
            pitch_range=100.0 * (self.pitch_range / 100.0) ** factor,
            loudness=self.loudness * factor,
            word_gap=self.word_gap * factor,
            hesitation=self.hesitation * factor,
            stress=self.stress * factor,
            breath=min(1.0, self.breath * factor),
            tilt=float(np.clip(self.tilt * factor, -1.0, 1.0)),
            roughness=min(7.0, self.roughness * factor),
            flutter=self.flutter * factor,
            tremolo=min(0.9, self.tremolo * factor),
        )


#: The normal-intensity manner of each emotion. Rates as in acted speech: sad 18% slower than
#: neutral in words per minute (its clips, pauses included, about 40% longer), calm and
#: disgust 8-10% slower, angry and fear 22% faster, happy 12%; no emotion carried by rate
#: alone.
MANNERS = {
    "neutral": Manner(),
    "calm": Manner(
        rate=0.92, pitch=-4, pitch_range=75, loudness=-3, word_gap=1, breath=0.15, tilt=-0.3
    ),
    "happy": Manner(rate=1.12, pitch=14, pitch_range=150, loudness=3, ending="!", tune=4, tilt=0.3),
    "sad": Manner(
        rate=0.82,
        pitch=-10,
        pitch_range=55,
        loudness=-5,
        word_gap=1,
        hesitation=80,
        tune=2,
        breath=0.2,
        tilt=-0.6,
        roughness=2,
    ),
    "angry": Manner(
        rate=1.22,
        pitch=6,
        pitch_range=140,
        loudness=4,
        ending="!",
        stressed=(0, -1),
        stress=1,
        tilt=0.7,
        roughness=1,
    ),
    "fear": Manner(
        rate=1.22,
        pitch=16,
        pitch_range=70,
        loudness=-1,
        hesitation=80,
        tune=6,
        breath=0.25,
        flutter=4,
        tremolo=0.3,
    ),
    "disgust": Manner(
        rate=0.9,
        pitch=-8,
        pitch_range=125,
        word_gap=1,
        stressed=(0,),
        stress=1,
        roughness=5,
        tilt=-0.2,
    ),
    "surprise": Manner(rate=1.04, pitch=20, pitch_range=175, loudness=3, ending="?", tilt=0.3),
}


@dataclass(frozen=True)
class Actor:
    """One voice: an espeak-ng variant, base pitch (espeak-ng -p, 0-99), rate factor, level."""

    number: int
    variant: str
    pitch: int
    rate: float
    level_db: float


@dataclass(frozen=True)
class Clip:
    """Everything that makes one file: its name and the synthesizer's settings."""

    relpath: str
    voice_file: str  # the espeak-ng voice definition (language, variant, voice quality)
    ssml: str
    wpm: int
    pitch: int
    word_gap: int
    gain: float  # linear gain applied to espeak-ng's output
    tremolo: float
    tremolo_hz: float
    tremolo_phase: float


def rng(seed: int, *key: int) -> np.random.Generator:
    """An independent generator per (seed, key): a clip's draws depend on nothing else."""
    return np.random.default_rng([seed, *key])


def make_actors(seed: int, count: int, naming: Naming) -> list[Actor]:
    """The first ``count`` actors; actor ``n`` is the same whatever ``count`` is."""
    salt = naming.salt
    male = [naming.male[i] for i in rng(seed, *salt, 0, 1).permutation(len(naming.male))]
    female = [naming.female[i] for i in rng(seed, *salt, 0, 2).permutation(len(naming.female))]
    actors = []
    for number in range(1, count + 1):
        draw = rng(seed, *salt, 1, number)
        variant = (male if number % 2 else female)[(number - 1) // 2]
        actors.append(
            Actor(
                number,
                variant,
                pitch=int(round(naming.pitch + draw.uniform(-12, 12))),
                rate=float(1 + draw.uniform(-0.06, 0.06)),
                level_db=float(draw.uniform(-2, 2)),
            )
        )
    return actors


def ravdess_name(emotion: int, intensity: int, statement: int, repetition: int, actor: int) -> str:
    return (
        f"Actor_{actor:02d}/03-01-{emotion:02d}-{intensity:02d}-{statement:02d}-"
        f"{repetition:02d}-{actor:02d}.wav"
    )


#: CREMA-D's sentence codes and texts (four of its twelve) and emotion codes.
CREMA_D_STATEMENTS = {
    "DFA": "Don't forget a jacket",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWW": "I wonder what this is about",
}
CREMA_D_EMOTIONS = {
    "neutral": "NEU", "happy": "HAP", "sad": "SAD", "angry": "ANG", "fear": "FEA", "disgust": "DIS"
}  # fmt: skip


def crema_d_name(emotion: int, intensity: int, statement: int, repetition: int, actor: int) -> str:
    code = CREMA_D_EMOTIONS[EMOTIONS[emotion - 1]]
    level = "XX" if code == "NEU" else ("MD", "HI")[intensity - 1]
    return f"{1000 + actor}_{list(CREMA_D_STATEMENTS)[statement - 1]}_{code}_{level}.wav"


#: EmoDB's text codes and texts (four of its ten, German) and emotion letters.
EMODB_STATEMENTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank",
    "a02": "Das will sie am Mittwoch abgeben",
    "a04": "Heute abend könnte ich es ihm sagen",
    "a07": "In sieben Stunden wird es soweit sein",
}
EMODB_EMOTIONS = {
    "neutral": "N", "happy": "F", "sad": "T", "angry": "W", "fear": "A", "disgust": "E"
}  # fmt: skip


def emodb_name(emotion: int, intensity: int, statement: int, repetition: int, actor: int) -> str:
    letter = EMODB_EMOTIONS[EMOTIONS[emotion - 1]]
    text = list(EMODB_STATEMENTS)[statement - 1]
    return f"{actor + 2:02d}{text}{letter}{'ab'[intensity - 1]}.wav"


@dataclass(frozen=True)
class Naming:
    """A corpus's file naming and everything else that tells its corpora apart: the emotions
    it names, its sentences (statement ``s`` is ``statements[s - 1]``), repetitions per
    sentence, its language, voice pools and base pitch (espeak-ng -p of an average actor)."""

    name: str
    emotions: tuple[str, ...]
    statements: tuple[str, ...]
    repetitions: int
    file_name: Callable[[int, int, int, int, int], str]
    language: str  # espeak-ng-data/lang/...
    male: tuple[str, ...]
    female: tuple[str, ...]
    pitch: int
    salt: tuple[int, ...]  # seeds the naming's draws apart from the other namings'


#: espeak-ng-data/voices/!v variants that are not RAVDESS's; female variants are few, so the
#: female pools share some with RAVDESS's and differ in order and base pitch.
NAMINGS = {
    "ravdess": Naming(
        "ravdess", EMOTIONS, ("Kids are talking by the door", "Dogs are sitting by the door"),
        2, ravdess_name, "gmw/en-US", MALE_VARIANTS, FEMALE_VARIANTS, 50, (),
    ),
    "crema_d": Naming(
        "crema_d", tuple(CREMA_D_EMOTIONS), tuple(CREMA_D_STATEMENTS.values()), 1, crema_d_name,
        "gmw/en-US",
        ("Denis", "Diogo", "Henrique", "Hugo", "Lee", "Marco", "antonio", "miguel", "john",
         "norbert", "m1", "Alex"),
        ("aunty", "grandma", "shelby", "steph2", "steph3", "f2", "f4", "Annie", "Alicia", "linda",
         "anika", "f1"),
        42, (101,),
    ),
    "emodb": Naming(
        "emodb", tuple(EMODB_EMOTIONS), tuple(EMODB_STATEMENTS.values()), 1, emodb_name,
        "gmw/de",
        ("Jacky", "Mario", "Michael", "gustave", "marcelo", "pablo", "quincy", "grandpa", "ed",
         "Gene2", "Mike", "victor"),
        ("steph3", "shelby", "aunty", "grandma", "steph2", "f3", "f5", "belinda", "Andrea",
         "steph", "f1", "Annie"),
        58, (102,),
    ),
}  # fmt: skip


# ---------------------------------------------------------------------------- voice files
def parse_voice(text: str) -> list[tuple[str, list[str]]]:
    """The ``keyword values...`` lines of an espeak-ng voice file, comments dropped."""
    lines = []
    for line in text.splitlines():
        words = line.split("//")[0].split()
        if words and not words[0].startswith("#"):
            lines.append((words[0], words[1:]))
    return lines


def tilt_gain(tilt: float, freq: float) -> float:
    """Linear gain of the spectral tilt at ``freq``, interpolated over log frequency."""
    freqs, dbs = zip(*TILT_DB, strict=True)
    db = np.interp(math.log(max(freq, 1.0)), np.log(freqs), dbs)
    return 10 ** (tilt * db / 20)


def voice_definition(language: str, variant: str, manner: Manner) -> str:
    """An espeak-ng voice file: the language's definition, the variant's voice, then the
    manner's voice quality combined with the variant's own (later lines win in espeak-ng)."""
    own = {key: values for key, values in parse_voice(variant)}
    lines = [language.rstrip(), ""]
    lines += [
        f"{key} {' '.join(values)}"
        for key, values in parse_voice(variant)
        if key not in ("language", "name", "gender")
    ]
    lines.append(f"tunes s{manner.tune} c{manner.tune} q{manner.tune} e{manner.tune}")
    if manner.breath > 0:
        base = [int(v) for v in own.get("breath", [])]
        whisper = [round(w * manner.breath) for w in WHISPER_BREATH]
        breath = [max(pair) for pair in itertools.zip_longest(base, whisper, fillvalue=0)]
        lines += ["breath " + " ".join(map(str, breath)), WHISPER_BREATH_WIDTH]
    if manner.roughness > 0:
        roughness = max(int(own.get("roughness", ["0"])[0]), round(manner.roughness))
        lines.append(f"roughness {roughness}")
    if manner.flutter > 0:
        flutter = int(own.get("flutter", [str(DEFAULT_FLUTTER)])[0]) + round(manner.flutter)
        lines.append(f"flutter {flutter}")
    if manner.tilt != 0:
        values = own.get("tone", [])
        pairs = zip(values[0::2], values[1::2], strict=False)  # a dangling value: ignored
        points = [(int(f), int(a)) for f, a in pairs] or [(f, 100) for f, _ in TILT_DB]
        tone = [(f, min(255, round(a * tilt_gain(manner.tilt, f)))) for f, a in points]
        lines.append("tone " + " ".join(f"{f} {a}" for f, a in tone))
    return "\n".join(lines) + "\n"


def ssml(words: Sequence[str], manner: Manner, pitch: float, hesitate_after: int) -> str:
    """The statement in SSML: pitch shift and range around it, stressed words, one pause."""
    spoken = []
    for i, word in enumerate(words):
        if manner.stress > 0 and (i in manner.stressed or i - len(words) in manner.stressed):
            # Not SSML's <emphasis>: espeak-ng boosts it by 10 dB or more, saturating its output
            word = (
                f'<prosody volume="{round(100 + 50 * manner.stress)}%" '
                f'pitch="{round(15 * manner.stress):+d}%" '
                f'rate="{round(100 / (1 + 0.1 * manner.stress))}%">{word}</prosody>'
            )
        spoken.append(word)
        if manner.hesitation > 0 and i == hesitate_after:
            spoken.append(f'<break time="{round(manner.hesitation)}ms"/>')
    return (
        f'<speak><prosody pitch="{round(pitch):+d}%" range="{round(manner.pitch_range)}%">'
        f"{' '.join(spoken)}{manner.ending}</prosody></speak>"
    )


def clip_settings(
    seed: int,
    actor: Actor,
    actor_gain: float,
    emotion: int,
    intensity: int,
    statement: int,
    repetition: int,
    naming: Naming,
    language: str,
    variants: dict[str, str],
) -> Clip:
    """The settings of one clip: the manner at its intensity, the actor's voice and this
    repetition's jitter (rate and pitch a few %, level under 1 dB)."""
    manner = MANNERS[EMOTIONS[emotion - 1]]
    if intensity == 2:
        manner = manner.exaggerated(STRONG)
    draw = rng(seed, *naming.salt, 2, actor.number, emotion, intensity, statement, repetition)
    rate_jitter = float(np.clip(draw.normal(1.0, 0.025), 0.93, 1.07))
    pitch_jitter = float(np.clip(draw.normal(0.0, 2.5), -6, 6))
    level_jitter = float(np.clip(draw.normal(0.0, 0.5), -1.5, 1.5))
    words = naming.statements[statement - 1].split()
    hesitate_after = int(draw.integers(1, len(words) - 2))
    db = manner.loudness + actor.level_db + level_jitter
    return Clip(
        relpath=naming.file_name(emotion, intensity, statement, repetition, actor.number),
        voice_file=voice_definition(language, variants[actor.variant], manner),
        ssml=ssml(words, manner, manner.pitch + pitch_jitter, hesitate_after),
        wpm=max(80, round(BASE_WPM * actor.rate * manner.rate * rate_jitter)),
        pitch=actor.pitch,
        word_gap=round(manner.word_gap),
        gain=actor_gain * 10 ** (db / 20),
        tremolo=manner.tremolo,
        tremolo_hz=float(draw.uniform(5.0, 7.0)),
        tremolo_phase=float(draw.uniform(0, 2 * math.pi)),
    )


# ---------------------------------------------------------------------------- synthesis
def espeak_version(espeak: str) -> tuple[str, Path]:
    """The synthesizer's version line and its data folder (``Data at:`` of ``--version``)."""
    try:
        out = subprocess.run(
            [espeak, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise CorpusError(f"--espeak {espeak}: `{espeak} --version` failed: {error}") from error
    match = re.search(r"Data at:\s*(\S.*?)\s*$", out, re.MULTILINE)
    if match is None:
        raise CorpusError(
            f"--espeak {espeak}: `--version` printed no 'Data at: FOLDER' line (got {out!r}); "
            "is it espeak-ng?"
        )
    return out.split("Data at:")[0].strip(), Path(match.group(1))


def read_voices(data: Path, naming: Naming) -> tuple[str, dict[str, str]]:
    """The naming's language definition and every pool variant's voice file from ``data``."""
    language = data / "lang" / naming.language
    paths = {v: data / "voices" / "!v" / v for v in (*naming.male, *naming.female)}
    missing = [str(p) for p in (language, *paths.values()) if not p.is_file()]
    if missing:
        raise CorpusError(
            f"espeak-ng's data folder {data} lacks {', '.join(missing)}: the voice files of "
            "espeak-ng 1.49 or later (Debian/Ubuntu package `espeak-ng`) are needed"
        )
    return language.read_text(), {v: p.read_text() for v, p in paths.items()}


def synthesize(espeak: str, clip: Clip) -> tuple[np.ndarray, int]:
    """espeak-ng's rendering of ``clip`` at its own sample rate, as floats."""
    with tempfile.TemporaryDirectory(prefix="espeak-") as work:
        Path(work, "voice").write_text(clip.voice_file)
        command = [
            espeak, "--load", "-v", "voice", "-m", "-z",
            "-s", str(clip.wpm), "-p", str(clip.pitch), "-a", str(SYNTH_AMPLITUDE),
            "-g", str(clip.word_gap), "-w", "out.wav", clip.ssml,
        ]  # fmt: skip
        result = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=60)
        out = Path(work, "out.wav")
        if result.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
            raise CorpusError(
                f"{clip.relpath}: {' '.join(command[:-1])} '{clip.ssml}' failed "
                f"(exit {result.returncode}): {(result.stderr + result.stdout).strip()}"
            )
        audio, rate = sf.read(out, dtype="float32")
    if audio.ndim != 1 or audio.size == 0 or not np.any(audio):
        raise CorpusError(f"{clip.relpath}: the synthesizer wrote no sound (shape {audio.shape})")
    return audio, rate


def sounding(audio: np.ndarray, rate: int) -> tuple[int, int]:
    """First and last sample of the frames above the silence threshold."""
    frame = max(1, rate // 100)
    frames = len(audio) // frame
    rms = np.sqrt(np.mean(audio[: frames * frame].reshape(frames, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (SILENCE_DB / 20))
    return int(loud[0] * frame), int(min(len(audio), (loud[-1] + 1) * frame))


def trim(audio: np.ndarray, rate: int) -> np.ndarray:
    """The sounding part with exactly ``MARGIN`` seconds before and after (zeros where the
    rendering had less)."""
    start, end = sounding(audio, rate)
    margin = round(MARGIN * rate)
    padded = np.pad(audio, margin)
    return padded[start : end + 2 * margin]


def active_rms(audio: np.ndarray, rate: int) -> float:
    start, end = sounding(audio, rate)
    return float(np.sqrt(np.mean(audio[start:end] ** 2)))


def render(espeak: str, clip: Clip) -> tuple[np.ndarray, bool, bool]:
    """The finished clip at 16 kHz; whether espeak-ng's 16-bit output saturated; whether the
    clip was scaled down to ``PEAK_LIMIT``."""
    import torch

    from mts_lightning.data.audio import resample

    audio, rate = synthesize(espeak, clip)
    saturated = bool(np.abs(audio).max() >= 32767 / 32768)
    if clip.tremolo > 0:
        t = np.arange(len(audio)) / rate
        wave = np.sin(2 * math.pi * clip.tremolo_hz * t + clip.tremolo_phase)
        audio = audio * (1 - clip.tremolo / 2 * (1 - wave)).astype(np.float32)
    resampled = resample(torch.from_numpy(np.ascontiguousarray(audio)), rate, SAMPLE_RATE)
    audio = trim(resampled.numpy() * np.float32(clip.gain), SAMPLE_RATE)
    peak = float(np.abs(audio).max())
    limited = peak > PEAK_LIMIT
    if limited:
        audio *= np.float32(PEAK_LIMIT / peak)
    return audio, saturated, limited


def clear_peak_timestamp(path: Path) -> None:
    """Zero the time of writing that libsndfile stamps into a float WAV's ``PEAK`` chunk
    (version, timestamp, then the peaks), so that the same clip gives the same bytes."""
    with path.open("r+b") as f:
        header = f.read(512)
        at = header.find(b"PEAK")
        if at >= 12:
            f.seek(at + 12)
            f.write(b"\0\0\0\0")


def write_atomically(path: Path, audio: np.ndarray) -> None:
    """Write ``path`` through a hidden temporary file renamed into place when complete."""
    part = path.with_name(f".{path.name}.part")
    try:
        sf.write(part, audio, SAMPLE_RATE, subtype="FLOAT", format="WAV")
        clear_peak_timestamp(part)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def make_clip(job: tuple[str, Path, Clip]) -> tuple[str, float, float, bool, bool]:
    """Render and write one clip; return its path, duration (s), peak, and whether it
    saturated in espeak-ng or was limited."""
    espeak, root, clip = job
    audio, saturated, limited = render(espeak, clip)
    path = root / clip.relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, audio)
    peak = float(np.abs(audio).max())
    return clip.relpath, len(audio) / SAMPLE_RATE, peak, saturated, limited


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


# ---------------------------------------------------------------------------- the corpus
class CorpusError(Exception):
    """A problem with the arguments, the synthesizer or the output folder."""


def clip_keys(
    actors: int, emotions: Sequence[str], naming: Naming
) -> Iterator[tuple[int, int, int, int, int]]:
    """(emotion, intensity, statement, repetition, actor) of every clip, RAVDESS's design with
    the naming's sentences and repetitions."""
    for actor in range(1, actors + 1):
        for name in emotions:
            emotion = EMOTIONS.index(name) + 1
            for intensity in (1,) if name == "neutral" else (1, 2):
                for statement in range(1, len(naming.statements) + 1):
                    for repetition in range(1, naming.repetitions + 1):
                        yield emotion, intensity, statement, repetition, actor


def is_complete(path: Path) -> bool:
    """A finished clip of a previous run (only complete files ever get their final name)."""
    try:
        info = sf.info(path)
    except (OSError, RuntimeError):
        return False
    return info.samplerate == SAMPLE_RATE and info.channels == 1 and info.frames > 0


def check_output(root: Path, manifest: dict) -> None:
    """Refuse a folder that holds anything but a corpus made with the same settings."""
    if root.exists() and not root.is_dir():
        raise CorpusError(f"--output {root} is a file, not a folder")
    path = root / MANIFEST
    if path.is_file():
        try:
            found = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise CorpusError(f"--output {root}: unreadable {MANIFEST}: {error}") from error
        # Folders made before --naming existed are RAVDESS-named
        found.setdefault("naming", "ravdess")
        if found != manifest:
            differ = sorted(k for k in manifest if found.get(k) != manifest[k])
            raise CorpusError(
                f"--output {root} holds a corpus made with other settings ("
                + ", ".join(f"{k}: {found.get(k)!r} there, {manifest[k]!r} now" for k in differ)
                + "); choose another folder or remove that one"
            )
    elif root.exists() and any(root.iterdir()):
        raise CorpusError(
            f"--output {root} is not empty and holds no {MANIFEST} of this script: choose a "
            "new or empty folder"
        )


def remove_parts(root: Path) -> int:
    """Delete the temporary files an interrupted run left; return how many."""
    parts = list(root.rglob(".*.wav.part"))
    for part in parts:
        part.unlink()
    return len(parts)


def actor_gains(
    espeak: str, actors: Sequence[Actor], naming: Naming, language: str, variants: dict[str, str]
) -> list[float]:
    """The gain that brings each actor's neutral statement 1 (no jitter) to ``TARGET_RMS``:
    espeak-ng's voices differ by over 10 dB. The actor's level offset comes on top."""
    neutral = MANNERS["neutral"]
    gains = []
    for actor in actors:
        clip = Clip(
            relpath=f"actor {actor.number} (level calibration)",
            voice_file=voice_definition(language, variants[actor.variant], neutral),
            ssml=ssml(naming.statements[0].split(), neutral, pitch=0.0, hesitate_after=0),
            wpm=round(BASE_WPM * actor.rate),
            pitch=actor.pitch,
            word_gap=0,
            gain=1.0,
            tremolo=0.0,
            tremolo_hz=0.0,
            tremolo_phase=0.0,
        )
        audio, rate = synthesize(espeak, clip)
        gains.append(TARGET_RMS / active_rms(audio, rate))
    return gains


def generate(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    espeak = find_espeak(args.espeak)
    version, data = espeak_version(espeak)
    naming = NAMINGS[args.naming]
    emotions = args.emotions or list(naming.emotions)
    lacking = [e for e in emotions if e not in naming.emotions]
    if lacking:
        raise CorpusError(
            f"--emotions: the {naming.name} naming has no {', '.join(lacking)}: expected a "
            f"subset of {', '.join(naming.emotions)}"
        )
    language, variants = read_voices(data, naming)
    root = args.output.expanduser().resolve()
    manifest = {
        "generator": "benchmarks/make_speech_corpus.py",
        "format": MANIFEST_FORMAT,
        "seed": args.seed,
        "synthesizer": version,
        "naming": naming.name,
    }
    check_output(root, manifest)
    root.mkdir(parents=True, exist_ok=True)
    part = root / f".{MANIFEST}.part"
    part.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(part, root / MANIFEST)
    stale = remove_parts(root)

    actors = make_actors(args.seed, args.actors, naming)
    gains = actor_gains(espeak, actors, naming, language, variants)
    keys = list(clip_keys(args.actors, emotions, naming))
    todo, durations, manner_of = [], {}, {}
    for key in keys:
        actor = actors[key[4] - 1]
        clip = clip_settings(
            args.seed, actor, gains[actor.number - 1], *key[:4], naming, language, variants
        )
        manner_of[clip.relpath] = key[:2]
        path = root / clip.relpath
        if is_complete(path):
            durations[clip.relpath] = sf.info(path).duration
        else:
            todo.append((espeak, root, clip))
    kept = len(durations)

    peaks, saturated, limited = [], 0, 0
    if args.jobs == 1 or len(todo) <= 1:
        _one_thread()
        results = map(make_clip, todo)
        pool = None
    else:
        pool = ProcessPoolExecutor(args.jobs, initializer=_one_thread)
        results = pool.map(make_clip, todo, chunksize=max(1, len(todo) // (8 * args.jobs)))
    try:
        for relpath, duration, peak, clip_saturated, clip_limited in results:
            durations[relpath] = duration
            peaks.append(peak)
            saturated += clip_saturated
            limited += clip_limited
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    elapsed = time.perf_counter() - started
    print(
        f"{len(todo)} files written, {kept} already complete"
        + (f", {stale} unfinished temporary files removed" if stale else "")
        + f": {len(keys)} clips of {args.actors} actors in {root}"
    )
    print(
        f"synthesizer: {version} ({espeak}); {naming.name} naming; seed {args.seed}; "
        f"{args.jobs} jobs"
    )
    if peaks:
        print(
            f"new files: peak {max(peaks):.3f}; {limited} scaled down to a peak of "
            f"{PEAK_LIMIT}; espeak-ng's output saturated in {saturated}"
        )
    print_durations(durations, manner_of, emotions)
    print(f"total time: {elapsed:.1f} s")
    return 0


def print_durations(
    durations: dict[str, float], manner_of: dict[str, tuple[int, int]], emotions: Sequence[str]
) -> None:
    """Mean clip duration per emotion and intensity (the rate cue, with the pauses);
    ``manner_of`` maps each file to its (emotion, intensity) codes."""
    table: dict[tuple[int, int], list[float]] = {}
    for relpath, duration in durations.items():
        table.setdefault(manner_of[relpath], []).append(duration)
    neutral = table.get((1, 1))
    print("mean duration (s)   normal   strong      all   all/neutral")
    for name in emotions:
        code = EMOTIONS.index(name) + 1
        normal, strong = table.get((code, 1), []), table.get((code, 2), [])
        both = normal + strong
        cells = [f"{np.mean(v):8.3f}" if v else f"{'-':>8}" for v in (normal, strong, both)]
        ratio = f"{np.mean(both) / np.mean(neutral):13.2f}" if neutral else f"{'-':>13}"
        print(f"  {name:<16}" + " ".join(cells) + ratio)


# ---------------------------------------------------------------------------- command line
def find_espeak(given: str | None) -> str:
    if given is None:
        found = shutil.which("espeak-ng")
        if found is None:
            raise CorpusError(MISSING_ESPEAK)
        return found
    path = shutil.which(given)
    if path is None:
        raise CorpusError(
            f"--espeak {given}: not an executable file. Install the Debian/Ubuntu package "
            "`espeak-ng` (apt-get install espeak-ng), or name a program with its command line"
        )
    return path


def actor_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 2 <= value <= MAX_ACTORS:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of actors from 2 to {MAX_ACTORS} (at least one male and "
            f"one female voice), got {text!r}"
        )
    return value


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def seed_value(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def emotion_names(text: str) -> list[str]:
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in EMOTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown emotion(s) {', '.join(map(repr, unknown)) or repr(text)}: expected a "
            f"comma-separated subset of {', '.join(EMOTIONS)}"
        )
    return [e for e in EMOTIONS if e in names]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Generate an acted-emotion speech corpus with espeak-ng, in the file naming "
        "of RAVDESS, CREMA-D or EmoDB (16 kHz mono float WAV).",
    )
    p.add_argument("--output", type=Path, required=True, help="corpus folder (made if absent)")
    p.add_argument(
        "--actors", type=actor_count, default=MAX_ACTORS, help="actors 01..N, 2-24 (default 24)"
    )
    p.add_argument(
        "--emotions",
        type=emotion_names,
        default=None,
        help=f"comma-separated subset of {','.join(EMOTIONS)} (default: all that the naming "
        "has; crema_d and emodb lack calm and surprise)",
    )
    p.add_argument(
        "--naming",
        choices=tuple(NAMINGS),
        default="ravdess",
        help="whose file naming, sentences and voices the corpus has (default: ravdess)",
    )
    p.add_argument("--seed", type=seed_value, default=0, help="seed of voices and jitter")
    p.add_argument(
        "--espeak",
        default=None,
        help="the espeak-ng executable, or a substitute with its command line (default: "
        "espeak-ng on PATH)",
    )
    p.add_argument(
        "--jobs",
        type=positive,
        default=os.cpu_count() or 1,
        help="parallel synthesis processes (default: the CPU count)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        return generate(args)
    except CorpusError as error:
        p.exit(2, f"{p.prog}: error: {error}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
