"""Which synthesizer renders WAVs with nothing but pip packages: speed and correctness facts.

    python benchmarks/synth_choice.py [--rounds 3]

The piece: 16 bars of 4/4 at 120 qpm (32 s), four parts (flute, violin, cello, bass; random
pitches, seed 0) and a drum part on channel 10, written by :func:`deeporb.midi.write_midi`.
The soundfont: pretty_midi's General MIDI ``TimGM6mb.sf2`` for every candidate. For each
candidate that imports and renders: the best of ``--rounds`` wall times (soundfont loading
included, as every sample pays it), seconds of audio per second of rendering, the WAV's
length against the MIDI's, the peak (clipping shows as > 1), whether drums play the kit (the
share of power above 2 kHz on channel 10 against the same keys played by program 0), and
whether programs differ (cosine of the log band spectra of flute and bass on the same notes;
1.0 would mean the program is ignored).

Candidates: ``midirenderer`` (the builtin: :func:`deeporb.render.audio.render_wav`),
``tinysoundfont`` (when installed: it requires PyAudio, which does not build without the
system's PortAudio headers, so it is measured from a ``pip install --no-deps`` install),
symusic's ``Synthesizer`` (fails to return its buffer in symusic 0.6.0), and FluidSynth
(when the program is on the PATH).

Writes its section of docs/benchmarks.md (between ``<!-- synth_choice -->`` markers).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

from deeporb.midi import Track, write_midi  # noqa: E402
from deeporb.render import audio  # noqa: E402

MIDI_SECONDS = 32.0


def track(name, program, is_drum, pitches, onsets, duration) -> Track:
    n = len(pitches)
    return Track(name, program, is_drum, {"onset": np.asarray(onsets, float), "duration": np.full(n, float(duration)),
                                          "pitch": np.asarray(pitches), "velocity": np.full(n, 90)})


def piece(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    q = np.arange(64.0)
    return write_midi(folder / "piece.mid", [
        track("flute", 73, False, 72 + rng.integers(0, 12, 64), q, 1.0),
        track("violin", 40, False, 64 + rng.integers(0, 12, 64), q, 1.0),
        track("cello", 42, False, 52 + rng.integers(0, 12, 32), q[::2], 2.0),
        track("bass", 33, False, 36 + rng.integers(0, 12, 32), q[::2], 2.0),
        track("drums", 0, True, [36, 38] * 64, np.arange(128) / 2, 0.25),
    ], [(0.0, 120.0)])


def builtin(midi: Path, wav: Path) -> tuple[np.ndarray, int]:
    return audio.read_wav(audio.render_wav(midi, wav))


def fluidsynth(midi: Path, wav: Path) -> tuple[np.ndarray, int]:
    return audio.read_wav(audio.render_wav(midi, wav, synth="fluidsynth", sample_rate=48_000))


def tinysoundfont(midi: Path, wav: Path) -> tuple[np.ndarray, int]:
    import tinysoundfont as tsf

    synth = tsf.Synth(samplerate=48_000)
    synth.sfload(str(audio.builtin_soundfont()))
    seq = tsf.Sequencer(synth)
    seq.midi_load(str(midi))
    chunks = []
    while not seq.is_empty():
        chunks.append(np.frombuffer(synth.generate(4800), dtype=np.float32).copy())
    for _ in range(int(audio.TAIL_SECONDS * 10)):
        chunks.append(np.frombuffer(synth.generate(4800), dtype=np.float32).copy())
    return np.concatenate(chunks).reshape(-1, 2).T, 48_000


def symusic_synth(midi: Path, wav: Path) -> tuple[np.ndarray, int]:
    import symusic

    synth = symusic.Synthesizer(str(audio.builtin_soundfont()), 48_000, 0)
    return np.asarray(synth.render(symusic.Score(str(midi)), True)), 48_000


CANDIDATES: dict[str, Callable] = {
    "midirenderer (builtin)": builtin, "tinysoundfont": tinysoundfont,
    "symusic Synthesizer": symusic_synth, "FluidSynth": fluidsynth,
}


def high_share(x: np.ndarray, rate: int) -> float:
    power = np.abs(np.fft.rfft(x)) ** 2
    return float(power[np.fft.rfftfreq(len(x), 1 / rate) > 2000].sum() / power.sum())


def band_spectrum(x: np.ndarray, rate: int) -> np.ndarray:
    mag = np.abs(np.fft.rfft(x))
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    edges = np.geomspace(100, 8000, 61)
    v = np.log10(np.array([mag[(freqs >= a) & (freqs < b)].sum() for a, b in zip(edges[:-1], edges[1:], strict=True)]) + 1e-9)
    v -= v.mean()
    return v / np.linalg.norm(v)


def facts(render: Callable, folder: Path, rounds: int) -> dict:
    midi = piece(folder)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        wav, rate = render(midi, folder / "piece.wav")
        times.append(time.perf_counter() - start)
    keys = ([36, 38, 42, 49], [0, 1, 2, 3])
    kit = render(write_midi(folder / "kit.mid", [track("kit", 0, True, *keys, 0.25)], [(0.0, 120.0)]), folder / "kit.wav")
    tuned = render(write_midi(folder / "tuned.mid", [track("t", 0, False, *keys, 0.25)], [(0.0, 120.0)]), folder / "t.wav")
    notes = ([60, 64, 67, 72], [0, 1, 2, 3])
    flute = render(write_midi(folder / "fl.mid", [track("f", 73, False, *notes, 1.0)], [(0.0, 120.0)]), folder / "fl.wav")
    bass = render(write_midi(folder / "b.mid", [track("b", 33, False, *notes, 1.0)], [(0.0, 120.0)]), folder / "b.wav")
    return {
        "seconds": min(times), "speed": MIDI_SECONDS / min(times), "length": wav.shape[1] / rate, "rate": rate,
        "peak": float(np.abs(wav).max()),
        "drums": (high_share(kit[0].mean(0), kit[1]), high_share(tuned[0].mean(0), tuned[1])),
        "programs": float(band_spectrum(flute[0].mean(0), flute[1]) @ band_spectrum(bass[0].mean(0), bass[1])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = [
        "| synthesizer | render time (32 s piece) | × real time | WAV length | rate | peak | drums: >2 kHz share, kit vs program 0 | flute·bass spectra |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, render in CANDIDATES.items():
        if name == "FluidSynth" and shutil.which("fluidsynth") is None:
            rows.append(f"| {name} | not installed (a system program) | | | | | | |")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                f = facts(render, Path(tmp), args.rounds)
            except ModuleNotFoundError as e:
                rows.append(f"| {name} | not installed (`pip install --no-deps {e.name}`) | | | | | | |")
                continue
            except Exception as e:  # a candidate that cannot run is a finding, not a crash
                rows.append(f"| {name} | fails: `{type(e).__name__}: {str(e).splitlines()[0][:90]}` | | | | | | |")
                continue
        rows.append(f"| {name} | {f['seconds']:.2f} s | {f['speed']:.0f} | {f['length']:.2f} s | {f['rate']} | "
                    f"{f['peak']:.2f} | {f['drums'][0]:.3f} vs {f['drums'][1]:.4f} | {f['programs']:.3f} |")
        print(rows[-1])
    text = "\n".join([
        "## Audio with no system package: which synthesizer",
        "",
        f"`python benchmarks/synth_choice.py --rounds {args.rounds}` ({machine()}). One 16-bar piece "
        f"(32 s at 120 qpm): flute, violin, cello, bass and drums; the soundfont: pretty_midi's TimGM6mb.sf2 "
        f"(GM, 6 MB) for all. WAV length: the MIDI's 32 s plus the release tail ({audio.TAIL_SECONDS:g} s) "
        "where the synthesizer renders one. Peak > 1: clipping. Drums: share of power above 2 kHz, channel 10 "
        "against the same keys on program 0 (the kit must be far brighter). Programs: cosine of the flute's and "
        "the bass's log band spectra on the same notes (1.0: the program is ignored).",
        "",
        *rows,
        "",
        "Chosen: **midirenderer** (MIT, a Rust SoundFont synthesizer in a self-contained wheel, no dependency). "
        "tinysoundfont renders as correctly and faster, but clips at its default gain, and its package requires "
        "PyAudio, which does not build without the system's PortAudio headers (so `pip install` fails on a fresh "
        "machine); symusic's synthesizer fails in symusic 0.6.0. Both real candidates render well under a second "
        "for 32 s of music. FluidSynth stays an option (`render.synth=fluidsynth`) where it is installed.",
    ])
    write_section("synth_choice", text)


if __name__ == "__main__":
    main()
