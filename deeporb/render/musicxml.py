"""A piece as a score for notation programs: tracks of note columns -> MusicXML (music21).

One part per pitched track, named after it (the instrument key DeepOrb writes as the MIDI
track name) and carrying its General MIDI instrument and program; the meter(s), measure by
measure; the tempo map; and one key signature, music21's key analysis (Krumhansl-Schmuckler)
of the whole piece, whose flats or sharps also spell the black keys. Pitches, onsets and
durations are exact; velocities are not written (the MIDI file keeps them).

The notation is built here, not left to music21's ``makeNotation``, so that what is read
back is what was written: every onset and duration is put on the grid (``grid`` steps a
quarter, DeepOrb's ``resolution``) as an exact fraction; measures follow the time
signatures; notes of one track that start and end together form a chord, and chords that
overlap go to separate voices; a note is split at each bar line and into written note values
(plain or dotted first, then the grid's own tuplet, e.g. triplets at 12 steps a quarter)
and tied across the pieces; gaps are rests. Reading the file with music21 and joining the
ties gives back every pitch, onset and duration on the grid.

Drum tracks are left out: a MIDI drum note names a kit piece, not a pitch, and written on a
staff as pitches it would read as nonsense. So are notes below C0 (MIDI 0-11), which MusicXML
has no octave for. The score says so in a line at its start (``not notated: drums (N notes):
see the MIDI file``) and :class:`Notation` lists them.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from deeporb.errors import UserError
from deeporb.fileio import atomic_write_bytes
from deeporb.instruments import GM_PROGRAMS
from deeporb.midi import Track

MEDIA_TYPE = "application/vnd.recordare.musicxml+xml"
GRID = 12  # steps per quarter when none is given: EncodingConfig's default resolution
# most measures written: 2048 bars (sample's longest piece, a whole primer kept) and room over
MAX_MEASURES = 4096
LONGEST = 8  # quarters of the longest written value tried (a breve)
LOWEST = 12  # C0: MusicXML's octaves are 0 to 9, so MIDI's lowest octave (0-11) has no written pitch


@dataclass
class Notation:
    """A built score and what it leaves out."""

    score: object  # music21.stream.Score
    skipped: list[str] = field(default_factory=list)  # drum tracks, not notated
    too_low: int = 0  # notes below C0 (MIDI pitch under LOWEST), not notated


@dataclass
class _Event:
    """Notes of one track that start and end together (grid steps): a note or a chord."""

    start: int
    end: int
    pitches: list[int]


@functools.lru_cache(maxsize=8)
def note_values(grid: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The lengths (grid steps) that one written note value holds, longest first: plain or
    dotted values (breve to 256th), and undotted values under the tuplet that writes one grid
    step (3:2 at 12 steps a quarter). A grid step no written value holds is one clear line."""
    from music21 import duration

    step = duration.Duration(Fraction(1, grid))
    if step.type in ("complex", "inexpressible", "zero") or len(step.tuplets) > 1:
        raise UserError(f"a grid of {grid} steps a quarter has no written note value for one step; "
                        "use a resolution like 4, 8, 12 or 24")
    ratio = Fraction(step.tuplets[0].tupletNormal[0], step.tuplets[0].tupletActual[0]) if step.tuplets else None
    bases = [Fraction(2) ** k for k in range(3, -9, -1)]  # breve .. 256th, in quarters

    def steps(values) -> tuple[int, ...]:
        exact = {int(v * grid) for v in values if (v * grid).denominator == 1 and v <= LONGEST}
        return tuple(sorted(exact, reverse=True))

    plain = steps([b * dot for b in bases for dot in (1, Fraction(3, 2))])
    return plain, steps([b * ratio for b in bases[1:]]) if ratio else ()  # up to a triplet whole


@functools.lru_cache(maxsize=4096)
def split_length(steps: int, grid: int) -> tuple[int, ...]:
    """``steps`` as the fewest written note values (fewest tuplets among those), longest first:
    a whole bar of 3/4 is one dotted half, a third of a quarter one triplet eighth."""
    plain, tupled = note_values(grid)
    best: list[tuple[int, int, tuple[int, ...]] | None] = [(0, 0, ())] + [None] * steps
    for s in range(1, steps + 1):
        for v in plain + tupled:
            if v <= s and best[s - v] is not None:
                count, tuplets, parts = best[s - v]
                option = (count + 1, tuplets + (v in tupled), tuple(sorted((*parts, v), reverse=True)))
                if best[s] is None or option[:2] < best[s][:2]:
                    best[s] = option
    return best[steps][2]


def measures(time_signatures: Sequence[tuple[float, int, int]], end: int, grid: int) -> list[tuple[int, int, int, int]]:
    """(start, end, N, D) of each measure, in grid steps, until ``end`` (at least one). A
    meter change starts a new measure, cutting the one before short if it falls inside it."""
    changes = sorted((int(round(q * grid)), int(n), int(d)) for q, n, d in time_signatures or [(0.0, 4, 4)])
    if changes[0][0] > 0:
        changes.insert(0, (0, 4, 4))
    out, t, i = [], 0, 0
    while t < end or not out:
        while i + 1 < len(changes) and changes[i + 1][0] <= t:
            i += 1
        _, n, d = changes[i]
        length = Fraction(4 * n * grid, d)
        if length.denominator != 1 or length < 1:
            raise UserError(f"a {n}/{d} bar is not a whole number of grid steps at {grid} steps a quarter; "
                            "use a finer resolution")
        stop = t + int(length)
        if i + 1 < len(changes) and changes[i + 1][0] < stop:
            stop = changes[i + 1][0]
        out.append((t, stop, n, d))
        t = stop
        if len(out) > MAX_MEASURES:
            raise UserError(f"the piece spans over {MAX_MEASURES} measures; write fewer bars as MusicXML")
    return out


def events(track: Track, grid: int) -> list[_Event]:
    """The track's notes on the grid (each at least one step), grouped into chords; notes below
    :data:`LOWEST` are left out (the caller counts them)."""
    n = track.notes
    start = np.rint(np.asarray(n["onset"], dtype=np.float64) * grid).astype(np.int64)
    end = np.rint((np.asarray(n["onset"]) + np.asarray(n["duration"])) * grid).astype(np.int64)
    end = np.maximum(end, start + 1)
    chords: dict[tuple[int, int], set[int]] = {}
    for s, e, p in zip(start.tolist(), end.tolist(), np.asarray(n["pitch"]).tolist(), strict=True):
        if p < LOWEST:
            continue
        chords.setdefault((max(s, 0), max(e, 1)), set()).add(int(p))
    return [_Event(s, e, sorted(p)) for (s, e), p in sorted(chords.items())]


def voices(evs: list[_Event]) -> list[list[_Event]]:
    """Events into as few voices as hold them without overlap (each goes to the first free one)."""
    out: list[list[_Event]] = []
    for ev in sorted(evs, key=lambda e: (e.start, -e.end)):
        for voice in out:
            if voice[-1].end <= ev.start:
                voice.append(ev)
                break
        else:
            out.append([ev])
    return out


def _fill(voice: list[_Event], start: int, stop: int, grid: int, hidden_rests: bool) -> list:
    """One voice's notes, chords and rests in the measure [start, stop), split into written
    values and tied where a note goes on."""
    from music21 import chord, note, tie

    out, t = [], start
    for ev in voice:
        if ev.end <= start or ev.start >= stop:
            continue
        a, b = max(ev.start, start), min(ev.end, stop)
        if a > t:
            for steps in split_length(a - t, grid):
                rest = note.Rest(quarterLength=Fraction(steps, grid))
                rest.style.hideObjectOnPrint = hidden_rests
                out.append(rest)
        at = a
        for steps in split_length(b - a, grid):
            ql = Fraction(steps, grid)
            made = (note.Note(ev.pitches[0], quarterLength=ql) if len(ev.pitches) == 1
                    else chord.Chord(ev.pitches, quarterLength=ql))
            first, last = at == ev.start, at + steps == ev.end
            if not (first and last):
                made.tie = tie.Tie("start" if first else "stop" if last else "continue")
            out.append(made)
            at += steps
        t = b
    if t < stop:
        for steps in split_length(stop - t, grid):
            rest = note.Rest(quarterLength=Fraction(steps, grid))
            rest.style.hideObjectOnPrint = hidden_rests
            out.append(rest)
    return out


def _beamed(elements: list, ts) -> list:
    """Beams for one voice of one bar, as music21's ``makeBeams`` sets them; it looks each bar's
    meter up through the whole part, which made a 256-bar score take a minute."""
    from music21 import beam

    if len(elements) > 1:
        for element, beams in zip(elements, ts.getBeams(elements), strict=True):
            element.beams = beams if beams is not None else beam.Beams()
    return elements


def _part(name: str, program: int, layout, parted: list[list[_Event]], grid: int):
    from music21 import instrument, meter, stream

    part = stream.Part()
    part.partName = name
    inst = instrument.Instrument()
    inst.partName, inst.instrumentName, inst.midiProgram = name, GM_PROGRAMS[program % 128], program % 128
    part.insert(0, inst)
    ts = None
    for number, (start, stop, n, d) in enumerate(layout, 1):
        m = stream.Measure(number=number)
        if ts is None or ts.ratioString != f"{n}/{d}":
            ts = m.timeSignature = meter.TimeSignature(f"{n}/{d}")
        used = [v for i, v in enumerate(parted) if i == 0 or any(e.start < stop and e.end > start for e in v)]
        if len(used) <= 1:
            m.append(_beamed(_fill(used[0] if used else [], start, stop, grid, False), ts))
        else:
            for i, v in enumerate(used):
                voice = stream.Voice(id=str(i + 1))
                voice.append(_beamed(_fill(v, start, stop, grid, hidden_rests=i > 0), ts))
                m.insert(0, voice)
        part.append(m)
    return part


def build_score(
    tracks: Sequence[Track],
    tempos: Sequence[tuple[float, float]] | None = None,
    time_signatures: Sequence[tuple[float, int, int]] | None = None,
    grid: int = GRID,
    end: float | None = None,
    title: str | None = None,
) -> Notation:
    """The score of a piece (tracks of note columns in quarters, the tempo map as (quarter, qpm),
    the meter as (quarter, N, D)); ``end``: quarters the piece lasts at least (its last bar
    line), else up to its last note's end."""
    from music21 import clef, expressions, key, metadata, stream, tempo
    from music21.stream import makeNotation

    pitched = [t for t in tracks if not t.is_drum]
    drums = [t for t in tracks if t.is_drum]
    per_track = [events(t, grid) for t in pitched]
    last = max([e.end for evs in per_track for e in evs] + [int(round((end or 0) * grid)), 1])
    layout = measures(time_signatures or [], last, grid)
    score = stream.Score()
    score.metadata = metadata.Metadata(title=title or "DeepOrb")
    parts = [_part(t.name, t.program, layout, voices(evs), grid) for t, evs in zip(pitched, per_track, strict=True)]
    if not parts:  # drums alone: a part of rests carries the meter, tempo and the line below
        parts = [_part("no pitched parts", 0, layout, [], grid)]
    for part in parts:
        score.insert(0, part)

    notes = list(score.recurse().notes)
    found = score.analyze("key") if notes else key.Key("C")
    for part in parts:
        first = part.getElementsByClass(stream.Measure).first()
        first.insert(0, key.Key(found.tonic, found.mode))
        first.insert(0, clef.bestClef(part, recurse=True) if part.recurse().notes else clef.TrebleClef())
    for n in notes if found.sharps else []:  # black keys as the key signature spells them (else music21's
        for p in n.pitches:  # own C#, E-, F#, G#, B-)
            if p.accidental is not None and (p.accidental.alter > 0) == (found.sharps < 0):
                p.getEnharmonic(inPlace=True)
    for part in parts:  # how it is printed: accidentals and tuplet brackets (durations stay as built)
        part.makeAccidentals(inPlace=True)
        for run in part.recurse(streamsOnly=True, includeSelf=False):
            if run.notesAndRests and not run.hasVoices():
                makeNotation.makeTupletBrackets(run, inPlace=True)

    top = parts[0].getElementsByClass(stream.Measure)
    starts = [m[0] for m in layout]
    for q, qpm in tempos or []:
        step = int(round(q * grid))
        if step >= layout[-1][1]:
            continue
        i = max(int(np.searchsorted(starts, step, side="right")) - 1, 0)
        mark = tempo.MetronomeMark(number=round(float(qpm), 2), referent=1.0)
        top[i].insert(Fraction(step - starts[i], grid), mark)
    too_low = sum(int(np.sum(np.asarray(t.notes["pitch"]) < LOWEST)) for t in pitched)
    left_out = [f"{t.name} ({len(t)} notes)" for t in drums] + (
        [f"{too_low} notes below C0, which MusicXML cannot write"] if too_low else [])
    if left_out:
        top[0].insert(0, expressions.TextExpression(f"not notated: {'; '.join(left_out)}: see the MIDI file"))
    return Notation(score, [t.name for t in drums], too_low)


def write_musicxml(path: str | Path, tracks: Sequence[Track], *args, title: str | None = None, **kwargs) -> Path:
    """Write the piece's score as an uncompressed MusicXML file, atomically; the arguments after
    ``path`` are :func:`build_score`'s (the title defaults to the file's name)."""
    from music21.musicxml.m21ToXml import GeneralObjectExporter

    path = Path(path)
    notation = build_score(tracks, *args, title=title or path.stem, **kwargs)
    exporter = GeneralObjectExporter(notation.score)
    exporter.makeNotation = False  # the notation is complete: music21 must not re-split or re-tie it
    atomic_write_bytes(path, exporter.parse())
    return path
