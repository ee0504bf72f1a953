"""Read the original DeepOrb's note files into the :class:`~deeporb.midi.Piece` that midi.py reads.

The original project (github.com/claytantor/deeporb-generator-pytorch, ``encode_midi_words.py``)
wrote one JSON file per MIDI track, in a folder per instrument::

    SESSION/INSTRUMENT/INSTRUMENT-HASH6.json    e.g. beethoven_words/flute/flute-3de53d.json
    {"notes": [NOTE, ...], "name": "Flute", "key": "flute", "program": 73, "channel": 1, "tempo": 120.0}
    NOTE = {"nameWithOctave": "C#4", "fullName": "C-sharp in octave 4 Dotted Quarter Note",
            "word": "c#_4_quarter", "duration": {"type": "quarter"},
            "pitch": {"name": "C#", "microtone": "(+0c)", "octave": "4", "step": "C"}}

Its instrument folder is the instrument (its trainer read it so); the folder names are its keys of
General MIDI names (letters only: ``electric_piano`` for "Electric Piano 1" and "2", the file's
``program`` telling them apart). ``word``, ``channel`` and ``i_key`` are not needed; early versions
lack ``tempo``, ``word`` and ``channel``.

What the format holds, and how it is read:

- **Time.** A note has no onset: the notes of a file follow one another, as the original's own
  decoder played them back, so a note starts where the one before it ended.
- **Durations.** ``duration.type`` (``quarter``, ``16th``, ``breve``, ...) with the dots, tuplet
  and ties that only ``fullName`` tells ("Dotted Quarter", "Eighth Triplet (1/3 QL)", "Half tied to
  Eighth (2 1/2 total QL)"): the quarter length music21 wrote there is taken exactly. ``zero`` is a
  note of no length (it takes no time). A length that is not there (``complex`` or an unknown type
  without one) is a counted skip of that note, which takes no time either.
- **Pitches.** The ``pitch`` fields (unambiguous: ``nameWithOctave`` "C-1" may be C-flat 1 or C in
  octave -1), else ``nameWithOctave``; a microtone is rounded to the semitone and counted.
- **Rests and chords.** The original's writer kept music21 ``Note`` objects only, so its files
  hold neither: a rest's time and a chord's notes were dropped. Entries written the same way from
  music21's other objects are read too: a rest (``fullName`` "Quarter Rest") takes its time, a
  chord ("Chord {C in octave 4 | E in octave 4} Half", or a ``pitches`` list) sounds together.
- **Velocity** is not in the format: every note gets :data:`VELOCITY`, the original's playback.

A file is one piece of one track (nothing links the files one MIDI file gave). Everything that
cannot be read is counted, never a crash: a bad file raises :class:`NoteFileError` with its reason
(listed by encode), a bad note is skipped and counted in the returned statistics.
"""

from __future__ import annotations

import re
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import orjson

from deeporb.fileio import find_files
from deeporb.instruments import GM_PROGRAMS, KEY_PROGRAMS, RESERVED_KEYS, program_key, safe_key
from deeporb.midi import Piece, Track

SUFFIX = ".json"
MAX_FILE_BYTES = 32_000_000  # a track of 100,000 notes takes about 25 MB in the format
MAX_NOTE_QUARTERS = 4096  # a longer single note is not music but a broken file
VELOCITY = 120  # the original played every note at 120
TICKS_PER_QUARTER = 480  # the format has no ticks; 480 holds halves, thirds, fifths
MIN_QPM, MAX_QPM = 1.0, 1000.0

TYPE_QUARTERS = {
    "duplex-maxima": Fraction(64), "maxima": Fraction(32), "longa": Fraction(16), "breve": Fraction(8),
    "whole": Fraction(4), "half": Fraction(2), "quarter": Fraction(1), "eighth": Fraction(1, 2),
    **{name: Fraction(1, 2 ** k) for k, name in enumerate(
        ("16th", "32nd", "64th", "128th", "256th", "512th", "1024th", "2048th"), start=2)},
}
DOTS = {"Dotted": 1, "Double Dotted": 2, "Triple Dotted": 3, "Quadruple Dotted": 4}
_DOTS = re.compile(r"\b((?:Double |Triple |Quadruple )?Dotted)\b")
_QL = re.compile(r"\((?:(\d{1,6}) )?(\d{1,6})(?:/(\d{1,6}))? (?:total )?QL\)")  # "(2 1/2 total QL)", "(1/3 QL)"
STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
ALTERS = {"": 0, "#": 1, "##": 2, "###": 3, "-": -1, "--": -2, "---": -3}
ALTER_WORDS = {"": 0, "natural": 0, "sharp": 1, "flat": -1, "double-sharp": 2, "double-flat": -2,
               "triple-sharp": 3, "triple-flat": -3}
_NAME = re.compile(r"([A-Ga-g])(#{1,3}|-{1,3})?")
_NAME_WITH_OCTAVE = re.compile(r"([A-Ga-g])(#{1,3}|-{1,3})?(-?\d{1,2})")
_FULL_PITCH = re.compile(r"([A-G])(?:-([a-z-]+))? in octave (-?\d{1,2})")
_CENTS = re.compile(r"\(([+-]?\d+(?:\.\d+)?)c\)")


class NoteFileError(Exception):
    """A file that is not a readable note file of the original; the message is the reason shown."""


def _original_key(name: str) -> str:
    """The original's folder name of a GM instrument name: letters and spaces kept, spaces as _."""
    return "_".join(re.sub(r"[^A-Za-z ]", "", name).split()).lower()


ORIGINAL_KEYS: dict[str, tuple[int, ...]] = {}
for _program, _name in enumerate(GM_PROGRAMS):
    ORIGINAL_KEYS[_original_key(_name)] = (*ORIGINAL_KEYS.get(_original_key(_name), ()), _program)
ORIGINAL_KEYS["synth_choir"] = (54,)  # pretty_midi's name for program 54 ("Synth Voice" here)


def instrument_of(folder: str, program: object) -> tuple[str, int]:
    """(DeepOrb key, GM program) of an instrument folder: a DeepOrb key or one of the original's
    keys of a GM name is that instrument (the file's ``program`` picks among the original's keys
    that lost their digits); any other name is kept as a named instrument, as a MIDI track name is
    with ``instrument_key=name``, with the file's program (0 when it has none)."""
    given = program if isinstance(program, int) and not isinstance(program, bool) and 0 <= program < 128 else None
    if folder in KEY_PROGRAMS:
        return folder, KEY_PROGRAMS[folder]
    if folder in ORIGINAL_KEYS:
        candidates = ORIGINAL_KEYS[folder]
        chosen = given if given in candidates else candidates[0]
        return program_key(chosen), chosen
    key = safe_key(folder) or "unnamed"
    return (f"{key}_track" if key in RESERVED_KEYS else key), given or 0


def find_note_files(folder: Path, unreadable: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Every ``*.json`` file under ``folder``, sorted, hidden files and folders left out (as the
    original's ``glob('**/*.json')`` did); unreadable subfolders as
    :func:`deeporb.fileio.find_files` says."""
    return find_files(folder, (SUFFIX,), unreadable, hidden=False)


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def quarters_of(entry: dict) -> Fraction | None:
    """The length of a note, rest or chord in quarters, from ``fullName`` and ``duration.type``;
    None when the file does not hold it."""
    full = _text(entry.get("fullName"))
    duration = entry.get("duration")
    kind = _text(duration.get("type")) if isinstance(duration, dict) else ""
    spoken = full.rsplit("}", 1)[-1] if full.startswith("Chord {") else full.split(" in octave ", 1)[-1]
    m = _QL.search(spoken)
    if m:  # music21 writes the exact length whenever the type alone does not say it
        whole, top, bottom = int(m.group(1) or 0), int(m.group(2)), int(m.group(3) or 1)
        return None if bottom == 0 else whole + Fraction(top, bottom)
    if kind == "zero":
        return Fraction(0)
    if kind not in TYPE_QUARTERS:
        return None
    d = _DOTS.search(spoken)
    dots = DOTS[d.group(1)] if d else 0
    return TYPE_QUARTERS[kind] * (2 - Fraction(1, 2**dots))


def _midi(step: str, alter: int, octave: int) -> int:
    return (octave + 1) * 12 + STEPS[step.upper()] + alter


def _cents(pitch: dict) -> float:
    m = _CENTS.fullmatch(_text(pitch.get("microtone")).strip())
    return float(m.group(1)) if m else 0.0


def pitch_of(entry) -> tuple[int, float] | None:
    """(MIDI pitch, microtone in cents) of a note entry (a ``pitch`` dict or ``nameWithOctave``,
    or a plain ``"C#4"`` in a chord's ``pitches``); None when it is not one."""
    if isinstance(entry, str):
        m = _NAME_WITH_OCTAVE.fullmatch(entry.strip())
        return (_midi(m.group(1), ALTERS[m.group(2) or ""], int(m.group(3))), 0.0) if m else None
    if not isinstance(entry, dict):
        return None
    pitch = entry.get("pitch") if isinstance(entry.get("pitch"), dict) else entry  # a note's, or a pitch itself
    name, octave = pitch.get("name"), pitch.get("octave")
    m = _NAME.fullmatch(name.strip()) if isinstance(name, str) else None
    if isinstance(octave, str) and re.fullmatch(r"-?\d{1,2}", octave.strip()):
        octave = int(octave)
    if m and isinstance(octave, int) and not isinstance(octave, bool) and abs(octave) < 100:
        return _midi(m.group(1), ALTERS[m.group(2) or ""], octave), _cents(pitch)
    found = pitch_of(entry["nameWithOctave"]) if isinstance(entry.get("nameWithOctave"), str) else None
    return (found[0], _cents(pitch)) if found else None


def chord_pitches(entry: dict) -> list | None:
    """A chord's pitch entries: its ``pitches`` list, or the pitches music21 names in its
    ``fullName`` ("Chord {C in octave 4 | E-flat in octave 4} Half"); None when it is no chord."""
    if isinstance(entry.get("pitches"), list):
        return entry["pitches"]
    full = _text(entry.get("fullName"))
    if not full.startswith("Chord {") or "}" not in full:
        return None
    found = []
    for part in full[len("Chord {"): full.index("}")].split(" | "):
        m = _FULL_PITCH.fullmatch(part.strip())
        if m is None or (m.group(2) or "") not in ALTER_WORDS:
            found.append(None)
        else:
            found.append(f"{m.group(1)}{'#' * max(0, ALTER_WORDS[m.group(2) or ''])}"
                         f"{'-' * max(0, -ALTER_WORDS[m.group(2) or ''])}{m.group(3)}")
    return found


def is_rest(entry: dict) -> bool:
    full = _text(entry.get("fullName"))
    return entry.get("name") == "rest" or full == "Rest" or (full.endswith(" Rest") and "nameWithOctave" not in entry)


def read_notes(entries: list) -> tuple[dict[str, np.ndarray], Counter]:
    """The note columns (quarters) of a file's ``notes`` list, and what could not be read."""
    onsets, durations, pitches, skipped = [], [], [], Counter()
    now = Fraction(0)
    for entry in entries:
        if not isinstance(entry, dict):
            skipped["notes_skipped_unreadable"] += 1
            continue
        length = quarters_of(entry)
        if length is None or length > MAX_NOTE_QUARTERS:
            skipped["notes_skipped_unknown_duration"] += 1  # its time is unknown too: it takes none
            continue
        if is_rest(entry):
            now += length
            continue
        chord = chord_pitches(entry)
        sounding = [pitch_of(p) for p in chord] if chord is not None else [pitch_of(entry)]
        for found in sounding:
            if found is None:
                skipped["notes_skipped_unreadable"] += 1
                continue
            pitch, cents = found
            if cents:
                pitch += round(cents / 100)
                skipped["microtones_rounded"] += 1
            if not 0 <= pitch <= 127:
                skipped["notes_skipped_pitch_out_of_range"] += 1
                continue
            onsets.append(float(now))
            durations.append(float(length))
            pitches.append(pitch)
        now += length
    columns = {
        "onset": np.asarray(onsets, dtype=np.float64),
        "duration": np.asarray(durations, dtype=np.float64),
        "pitch": np.asarray(pitches, dtype=np.int64),
        "velocity": np.full(len(pitches), VELOCITY, dtype=np.int64),
    }
    return columns, skipped


def _load(path: Path) -> object:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise NoteFileError(f"cannot read: {e.strerror or e}") from None
    if not data.strip():
        raise NoteFileError("empty file")
    if len(data) > MAX_FILE_BYTES:
        raise NoteFileError(f"over {MAX_FILE_BYTES:,} bytes, more than a note file of the original holds")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise NoteFileError(f"not JSON: {str(e).splitlines()[0][:120]}") from None


def read_note_file(path: str | Path, root: str | Path) -> tuple[Piece, Counter]:
    """One note file of the original under ``root`` -> (a one-track :class:`Piece`, the counts of
    notes skipped or adjusted). The track is named by its DeepOrb instrument key. Raises
    :class:`NoteFileError` with a short reason for a file that is not one or holds no note."""
    path, root = Path(path), Path(root)
    record = _load(path)
    if not isinstance(record, dict) or not isinstance(record.get("notes"), list):
        if isinstance(record, dict) and isinstance(record.get("notes"), dict) and "words" in record:
            raise NoteFileError("a DeepOrb session's note file, not the original's; train on that session as it is")
        raise NoteFileError("not a note file of the original (a JSON object whose 'notes' is a list)")
    folder = path.parent.name if path.parent.resolve() != root.resolve() else _text(record.get("key"))
    if not folder:
        raise NoteFileError("not in an instrument folder, and no 'key' names its instrument")
    key, program = instrument_of(folder, record.get("program"))
    notes, counts = read_notes(record["notes"])
    if not len(notes["pitch"]):
        said = ", ".join(f"{n} {k.removeprefix('notes_skipped_').replace('_', ' ')}" for k, n in counts.items())
        raise NoteFileError(f"no note read from {len(record['notes'])} entries" + (f" ({said})" if said else ""))
    tempo = record.get("tempo")
    tempos = []
    if isinstance(tempo, (int, float)) and not isinstance(tempo, bool) and MIN_QPM <= tempo <= MAX_QPM:
        tempos = [(0.0, round(float(tempo), 6))]
    elif tempo is not None:
        counts["tempos_unreadable"] += 1
    piece = Piece(ticks_per_quarter=TICKS_PER_QUARTER, tempos=tempos)
    piece.tracks.append(Track(key, program, False, notes))
    return piece, counts
