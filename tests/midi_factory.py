"""Small real MIDI files for tests, written event by event with mido (not our writer).

mido gives exact control of event order: a zero-length note is note_on then note_off at
the same tick, as real files have it (miditoolkit writes the off first, leaving it hanging).
"""

from pathlib import Path

import mido
import numpy as np


def make_midi(
    path: Path,
    tracks: list[dict],
    tempos: list[tuple[int, float]] = ((0, 120.0),),
    time_signatures: list[tuple[int, int, int]] = ((0, 4, 4),),
    tpq: int = 480,
) -> Path:
    """tracks: dicts with name, program, is_drum, notes [(start_tick, end_tick, pitch, velocity)]."""
    midi = mido.MidiFile(ticks_per_beat=tpq)
    meta = [(t, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(q))) for t, q in tempos]
    meta += [(t, 0, mido.MetaMessage("time_signature", numerator=n, denominator=d)) for t, n, d in time_signatures]
    midi.tracks.append(_track(meta))
    channels = iter(c for c in range(16) if c != 9)
    for tr in tracks:
        ch = 9 if tr.get("is_drum") else next(channels)
        events = [(0, 0, mido.MetaMessage("track_name", name=tr.get("name", "")))]
        events.append((0, 0, mido.Message("program_change", channel=ch, program=tr.get("program", 0))))
        for s, e, p, v in tr["notes"]:
            events.append((s, 2, mido.Message("note_on", channel=ch, note=p, velocity=v)))
            events.append((e, 1 if e > s else 3, mido.Message("note_off", channel=ch, note=p, velocity=0)))
        midi.tracks.append(_track(events))
    path.parent.mkdir(parents=True, exist_ok=True)
    midi.save(str(path))
    return path


def _track(events) -> mido.MidiTrack:
    track, now = mido.MidiTrack(), 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def scale(start=0, step=480, pitches=(60, 62, 64, 65, 67), velocity=90):
    return [(start + i * step, start + (i + 1) * step, p, velocity) for i, p in enumerate(pitches)]


BAR = 4 * 480  # one 4/4 bar at 480 ticks per quarter
CHORDS = ((0, 4, 7), (7, 11, 14), (9, 12, 16), (5, 9, 12))  # I V vi IV, semitones above the key


def pop_songs(folder: Path, count: int, bars: int = 8, seed: int = 0) -> list[Path]:
    """``count`` short songs shaped like the pop corpus of issue 14, named parts ``melody``
    (flute), ``bridge`` (strings) and ``piano``; one song's shape is drawn from ``seed`` + its
    index, so a corpus is the same on every run.

    Over ``bars`` bars of 4/4 (I V vi IV in one of five keys): the piano plays two chords a bar
    throughout, the melody enters after an intro of 0, 2, 3 or 4 bars (weights 1:2:2:1) while
    the piano plays, and the bridge holds a whole note per bar in the second half, or from the
    start in one song in three. One song in three first opens with 1 to 3 bars in which no
    part plays, and one in six carries a single 1/4 time-signature event although the music is
    in 4/4 (as most files of that corpus do).
    """
    paths = []
    for i in range(count):
        rng = np.random.default_rng(seed + i)
        key = 60 + int(rng.choice([0, 2, 5, 7, -3]))
        lead = int(rng.integers(1, 4)) if rng.random() < 1 / 3 else 0
        intro = int(rng.choice([0, 2, 3, 4], p=[1 / 6, 1 / 3, 1 / 3, 1 / 6]))
        bridge_from = 0 if rng.random() < 1 / 3 else bars // 2
        meter = ((0, 1, 4),) if rng.random() < 1 / 6 else ((0, 4, 4),)
        piano, melody, bridge = [], [], []
        for b in range(bars):
            t0 = (lead + b) * BAR
            chord = CHORDS[b % 4]
            for half in (0, 2 * 480):
                piano += [(t0 + half, t0 + half + 2 * 480, key - 12 + c, 70) for c in chord]
            if b >= bridge_from:
                bridge.append((t0, t0 + BAR, key + chord[1], 60))
            if b >= intro:
                t = t0
                for length in rng.choice([480, 960, 240, 240], size=8):
                    if t + length > t0 + BAR:
                        break
                    pitch = key + 12 + int(rng.choice([chord[0], chord[1], chord[2], chord[0] + 2]))
                    melody.append((t, t + int(length), pitch, 90))
                    t += int(length)
        tracks = [{"name": "melody", "program": 73, "notes": melody},
                  {"name": "bridge", "program": 48, "notes": bridge},
                  {"name": "piano", "program": 0, "notes": piano}]
        paths.append(make_midi(folder / f"song{i:03d}.mid", tracks, time_signatures=meter))
    return paths
