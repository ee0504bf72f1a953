"""Small real MIDI files for tests, written event by event with mido (not our writer).

mido gives exact control of event order: a zero-length note is note_on then note_off at
the same tick, as real files have it (miditoolkit writes the off first, leaving it hanging).
"""

from pathlib import Path

import mido


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
