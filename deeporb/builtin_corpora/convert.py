"""One corpus piece -> normalised MIDI bytes: parse with music21, keep and name the parts its
dataset's arranger picks, repair what music21 misreads, write MIDI, normalise with symusic.

Runs in worker processes (``export.py``), one piece at a time. music21 and symusic are imported
inside the functions, so importing this module stays cheap. The repairs, each for a failure
seen in the shipped corpus:

* folk-ABC repeat marks music21 reads wrongly (``_fix_repeat_marks``);
* one object placed in two measures, which music21's MIDI writer rejects (``_unshare_elements``);
* repeats music21 still cannot expand: the piece is written as printed (``_strip_repeats``);
* grace notes, which music21 writes as zero-length MIDI notes that break note-off pairing,
  are dropped.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from deeporb.builtin_corpora.specs import DatasetSpec, Piece, SkipPiece

log = logging.getLogger(__name__)


def convert_piece(spec: DatasetSpec, piece: Piece, root: Path) -> tuple[bytes, bool]:
    """Parse one corpus piece, keep and rename its parts; return (MIDI bytes, repeats expanded).

    Raises SkipPiece when the piece does not fit its dataset; music21 itself may raise almost
    anything on odd input, which the caller records as the piece's skip reason.
    """
    import symusic
    from music21 import converter, harmony, instrument

    kwargs: dict[str, Any] = {"forceSource": True, "storePickle": False}  # no music21 pickles
    if piece.number is not None:
        kwargs["number"] = piece.number
    score = converter.parseFile(str(root / piece.source), **kwargs)
    if not hasattr(score, "parts"):  # an ABC file can come back as an Opus
        score = score.scores[0] if getattr(score, "scores", None) else score
    arranged = spec.arrange(score)
    keep = {id(part) for part, _, _ in arranged}
    for part in list(score.parts):
        if id(part) not in keep:
            score.remove(part)
    for part, track_name, program in arranged:
        # One instrument per part at offset 0, so music21 writes one name and one program
        # (mid-part instrument changes would make symusic split the track).
        for old in list(part.recurse().getElementsByClass(instrument.Instrument)):
            old.activeSite.remove(old)
        # Grace notes have no duration in music21 and come out as zero-length MIDI notes whose
        # note-off pairs with a later note of the same pitch (bars-long notes). Drop them.
        for grace in [n for n in part.recurse().notes if n.duration.isGrace]:
            grace.activeSite.remove(grace)
        if spec.drop_chord_symbols:
            for cs in list(part.recurse().getElementsByClass(harmony.ChordSymbol)):
                cs.activeSite.remove(cs)
        inst = instrument.Instrument()
        inst.partName = inst.instrumentName = track_name
        inst.midiProgram = program
        part.partName = track_name
        part.insert(0, inst)

        _fix_repeat_marks(part)

    _unshare_elements(score)
    data, expanded = _to_midi_bytes(score)

    # Normalise with symusic (what the encoder reads): exact names/programs, canonical order.
    midi = symusic.Score.from_midi(data)
    tracks = []
    for _, track_name, program in arranged:
        same = [t for t in midi.tracks if t.name == track_name]
        notes = sum(len(t.notes) for t in same)
        if notes == 0:
            raise SkipPiece(f"track {track_name!r} has no notes after conversion")
        track = same[0]
        for extra in same[1:]:
            track.notes.extend(extra.notes)
            track.controls.extend(extra.controls)
        track.notes.sort()
        track.program = program
        track.is_drum = False
        tracks.append(track)
    midi.tracks = tracks
    return midi.dumps_midi(), expanded


def _fix_repeat_marks(part: Any) -> int:
    """Repair the two repeat patterns music21 mis-reads in folk ABC; returns #marks added.

    1. ``A-part :| B-part :|`` with no ``|:`` before the B part (the Nottingham style). Engraving
       convention (and abc2midi) repeats just the B part, but music21 jumps back to the very
       beginning, so "AABB" became "AA(AB)(AB)" (1.5-3x too long). We add the missing start
       repeat right after the previous repeated section (after its last volta, if any).
    2. ``|: ... [|]`` where music21 drops the closing ``:|`` of an ABC ending like ``[|]:|``;
       music21 then refuses the whole piece. A start repeat still open at the end of the tune
       is closed on its last measure.
    """
    from music21 import bar, spanner

    added = 0
    open_start = False
    last_section_end = -1  # index of the last measure of the previous repeated section
    measures = list(part.getElementsByClass("Measure"))
    for i, m in enumerate(measures):
        if isinstance(m.leftBarline, bar.Repeat) and m.leftBarline.direction == "start":
            open_start = True
        if any(isinstance(sp, spanner.RepeatBracket) for sp in m.getSpannerSites()):
            last_section_end = max(last_section_end, i)
        right = m.rightBarline
        if isinstance(right, bar.Repeat) and right.direction == "end":
            start = last_section_end + 1
            if not open_start and last_section_end >= 0 and start <= i:
                measures[start].leftBarline = bar.Repeat(direction="start")
                added += 1
            open_start = False
            last_section_end = max(last_section_end, i)
    if open_start and measures:
        measures[-1].rightBarline = bar.Repeat(direction="end")
        added += 1
    return added


def _unshare_elements(score: Any) -> None:
    """Give each container its own copy of objects music21 put in two places.

    music21's ABC reader sometimes puts one TimeSignature object into two measures, and its
    MIDI writer then fails with "already found in this Stream".
    """
    seen: set[int] = set()
    for container in [score, *score.recurse(streamsOnly=True)]:
        for el in list(container.elements):
            if id(el) in seen and not el.isStream:
                container.replace(el, copy.deepcopy(el))
            seen.add(id(el))


def _strip_repeats(score: Any) -> None:
    """Remove repeat barlines, voltas and D.C./segno marks, so the piece plays as printed."""
    from music21 import bar, repeat, spanner

    for m in score.recurse().getElementsByClass("Measure"):
        if isinstance(m.leftBarline, bar.Repeat):
            m.leftBarline = None
        if isinstance(m.rightBarline, bar.Repeat):
            m.rightBarline = bar.Barline("double")
    for obj in list(score.recurse().getElementsByClass(repeat.RepeatExpression)):
        obj.activeSite.remove(obj)
    for holder in [score, *score.recurse().getElementsByClass("Stream")]:
        for sp in list(holder.getElementsByClass(spanner.RepeatBracket)):
            holder.remove(sp)


def _to_midi_bytes(score: Any) -> tuple[bytes, bool]:
    """music21 Score -> MIDI bytes; returns (data, repeats_expanded).

    music21 expands repeats while writing MIDI and raises on repeat marks it finds inconsistent
    (e.g. in Op. 132 and a few dozen ABC tunes). Rather than lose the piece, we then write it
    as printed, without repeats.
    """
    from music21.midi import translate

    try:
        return translate.streamToMidiFile(score).writestr(), True
    except Exception as exc:  # music21 raises several exception types for repeat problems
        log.debug("repeat expansion failed (%s); writing without repeats", exc)
    _strip_repeats(score)
    return translate.streamToMidiFile(score).writestr(), False
