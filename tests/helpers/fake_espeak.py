"""A stand-in for espeak-ng with the command line benchmarks/make_speech_corpus.py uses, for
machines without it: ``--version`` names a data folder ($FAKE_ESPEAK_DATA); a synthesis call
(``--load -v VOICE -m -z -s WPM -p PITCH -a AMPLITUDE -g GAP -w OUT.wav SSML``) writes a
22050 Hz 16-bit WAV with one harmonic tone per word, whose length follows the rate, the word
gap and the SSML breaks, whose F0 follows -p and the outer prosody pitch, and whose level
follows -a. $FAKE_ESPEAK_FAIL makes every synthesis fail as espeak-ng does. Standard library
only."""

import array
import math
import os
import re
import sys
import wave
from pathlib import Path

RATE = 22050


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def main(args: list[str]) -> int:
    if args == ["--version"]:
        print(f"eSpeak NG text-to-speech: 1.51-fake  Data at: {os.environ['FAKE_ESPEAK_DATA']}")
        return 0
    if os.environ.get("FAKE_ESPEAK_FAIL"):
        print("Error: the fake synthesizer was told to fail", file=sys.stderr)
        return 1
    voice = Path(option(args, "-v"))
    if "--load" not in args or not re.search(r"^language (en-us|de)\b", voice.read_text(), re.M):
        print("Error: The specified espeak-ng voice does not exist.")
        return 1
    wpm, pitch = int(option(args, "-s")), int(option(args, "-p"))
    amplitude, gap = int(option(args, "-a")), int(option(args, "-g"))
    text = args[-1]
    shift = re.search(r'pitch="([+-]\d+)%"', text)
    f0 = 120 * 2 ** ((pitch - 50) / 40) * (1 + int(shift.group(1)) / 100 if shift else 1)
    hesitation = sum(int(ms) / 1000 for ms in re.findall(r'<break time="(\d+)ms"/>', text))
    words = re.sub(r"<[^>]+>", " ", text).split()
    # One period of a three-harmonic tone, repeated: the fake must start and run fast
    length = round(RATE / f0)
    level = amplitude / 100 * 0.4
    period = array.array("h", [
        round(32767 * max(-1.0, min(1.0, level * sum(
            math.sin(2 * math.pi * h * k / length) / h for h in (1, 2, 3)
        ))))
        for k in range(length)
    ])  # fmt: skip
    samples = array.array("h", bytes(2 * int(0.05 * RATE)))
    for i, _ in enumerate(words):
        n = int(0.8 * 60 / wpm * RATE)
        samples.extend((period * (n // length + 1))[:n])
        pause = gap * 0.01 * 175 / wpm + (hesitation if i == 0 else 0.0)
        samples.frombytes(bytes(2 * int((0.03 + pause) * RATE)))
    samples.frombytes(bytes(2 * int(0.05 * RATE)))
    with wave.open(option(args, "-w"), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.tobytes())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
