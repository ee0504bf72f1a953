"""Instrument keys: General MIDI program -> ``acoustic_grand_piano``, ``drums`` for drum tracks.

Keys name folders on disk and words in the vocabulary (``inst_KEY``), and they can come
from untrusted files (track names), so :func:`safe_key` keeps them to ``[a-z0-9_]``.
"""

from __future__ import annotations

import re

GM_PROGRAMS = (
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano",
    "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavinet",
    "Celesta", "Glockenspiel", "Music Box", "Vibraphone",
    "Marimba", "Xylophone", "Tubular Bells", "Dulcimer",
    "Drawbar Organ", "Percussive Organ", "Rock Organ", "Church Organ",
    "Reed Organ", "Accordion", "Harmonica", "Tango Accordion",
    "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)", "Electric Guitar (jazz)",
    "Electric Guitar (clean)", "Electric Guitar (muted)", "Overdriven Guitar",
    "Distortion Guitar", "Guitar Harmonics",
    "Acoustic Bass", "Electric Bass (finger)", "Electric Bass (pick)", "Fretless Bass",
    "Slap Bass 1", "Slap Bass 2", "Synth Bass 1", "Synth Bass 2",
    "Violin", "Viola", "Cello", "Contrabass",
    "Tremolo Strings", "Pizzicato Strings", "Orchestral Harp", "Timpani",
    "String Ensemble 1", "String Ensemble 2", "Synth Strings 1", "Synth Strings 2",
    "Choir Aahs", "Voice Oohs", "Synth Voice", "Orchestra Hit",
    "Trumpet", "Trombone", "Tuba", "Muted Trumpet",
    "French Horn", "Brass Section", "Synth Brass 1", "Synth Brass 2",
    "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax",
    "Oboe", "English Horn", "Bassoon", "Clarinet",
    "Piccolo", "Flute", "Recorder", "Pan Flute",
    "Blown Bottle", "Shakuhachi", "Whistle", "Ocarina",
    "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)",
    "Lead 5 (charang)", "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)",
    "Pad 1 (new age)", "Pad 2 (warm)", "Pad 3 (polysynth)", "Pad 4 (choir)",
    "Pad 5 (bowed)", "Pad 6 (metallic)", "Pad 7 (halo)", "Pad 8 (sweep)",
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)",
    "FX 5 (brightness)", "FX 6 (goblins)", "FX 7 (echoes)", "FX 8 (sci-fi)",
    "Sitar", "Banjo", "Shamisen", "Koto",
    "Kalimba", "Bagpipe", "Fiddle", "Shanai",
    "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock",
    "Taiko Drum", "Melodic Tom", "Synth Drum", "Reverse Cymbal",
    "Guitar Fret Noise", "Breath Noise", "Seashore", "Bird Tweet",
    "Telephone Ring", "Helicopter", "Applause", "Gunshot",
)
assert len(GM_PROGRAMS) == 128

DRUMS = "drums"
# Keys with a meaning of their own, which no track name may take: ``drums`` (real drum
# tracks only: a melody keyed so would be written back on the drum channel) and the folder
# names a session keeps beside its instrument folders (session_store.CACHE_DIR).
RESERVED_KEYS = frozenset({DRUMS, "cache"})
MAX_KEY_LENGTH = 40


def safe_key(text: str) -> str:
    """Any text -> a key of ``[a-z0-9_]``, at most 40 characters; '' when nothing is left."""
    key = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return key[:MAX_KEY_LENGTH].rstrip("_")


PROGRAM_KEYS = tuple(safe_key(name) for name in GM_PROGRAMS)
KEY_PROGRAMS = {key: program for program, key in enumerate(PROGRAM_KEYS)}


def program_key(program: int, is_drum: bool = False) -> str:
    """GM program number (0-127) -> key; every drum track is ``drums``."""
    if is_drum:
        return DRUMS
    if not 0 <= program < 128:
        raise ValueError(f"MIDI program {program} is outside 0..127")
    return PROGRAM_KEYS[program]


def instrument_key(mode: str, program: int, is_drum: bool, track_name: str) -> str:
    """The key of a track: by GM ``program`` or by track ``name`` (falls back to program).

    Drum tracks are always ``drums`` whatever their name: they sound on channel 10 and
    their pitches are kit pieces, not notes, so they must never share a key with a melody.
    A name that is a reserved key (a melodic track called "Drums", a track called "cache")
    gets ``_track`` appended.
    """
    if is_drum:
        return DRUMS
    if mode == "program":
        return program_key(program, is_drum)
    if mode == "name":
        key = safe_key(track_name)
        if not key:
            return program_key(program, is_drum)
        return f"{key}_track" if key in RESERVED_KEYS else key
    raise ValueError(f"instrument_key must be 'program' or 'name', not {mode!r}")


def key_program(key: str, default: int = 0) -> tuple[int, bool]:
    """Key -> (GM program, is_drum) for writing MIDI; unknown keys (track names) get default."""
    if key == DRUMS:
        return 0, True
    return KEY_PROGRAMS.get(key, default), False
