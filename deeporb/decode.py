"""Words back to MIDI: ``python -m deeporb.decode PATH OUT``.

PATH is a note file (OUT: a .mid file) or a session folder (OUT: a folder of .mid files
mirroring ``INSTRUMENT/PIECE-HASH6``). Listening to decoded words is the quickest check
that an encoding kept what matters.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from deeporb.encoding.words import DecodeError, EncodingConfig, Vocabulary, decode_words
from deeporb.errors import UserError
from deeporb.midi import Track, write_midi
from deeporb.session_store import MANIFEST, load_manifest, load_note_file, scan_note_files


def note_file_to_midi(note_file: Path, out: Path, config: EncodingConfig) -> int:
    """Decode one note file's words to a one-track MIDI file; return the note count.

    The track keeps its original name, whatever its script (write_midi stores UTF-8)."""
    rec = load_note_file(note_file)
    try:
        grid, meter = decode_words(rec["words"], Vocabulary(config))
        notes = grid.to_quarters(config)
        track = Track(rec.get("name") or rec["instrument"], int(rec["program"]), bool(rec["is_drum"]), notes)
        end = float(np.max(notes["onset"] + notes["duration"])) if len(grid) else 0.0
        # tempo changes after the last note change nothing, and one at an absurd time would
        # not fit a MIDI delta time
        tempos = [(float(q), float(qpm)) for q, qpm in rec.get("tempos") or [] if q <= end] or None
    except DecodeError as e:
        raise UserError(f"{note_file}: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"cannot decode note file {note_file}: {e!r}; re-run encode.py for its session") from None
    write_midi(out, [track], tempos=tempos, time_signatures=meter.changes(config))
    return len(grid)


def decode_path(path: Path, out: Path) -> list[Path]:
    """Decode a note file or every note file of a session; return the MIDI files written."""
    path, out = Path(path), Path(out)
    if path.is_file():
        session = path.parent.parent
        config = _session_config(session)
        if out.suffix.lower() not in (".mid", ".midi"):
            out = out / path.with_suffix(".mid").name
        note_file_to_midi(path, out, config)
        return [out]
    if not (path / MANIFEST).is_file():
        raise UserError(f"{path} is neither a note file nor a session folder (no {MANIFEST})")
    config = _session_config(path)
    written = []
    for note_file in scan_note_files(path):
        target = out / note_file.relative_to(path).with_suffix(".mid")
        note_file_to_midi(note_file, target, config)
        written.append(target)
    return written


def _session_config(session: Path) -> EncodingConfig:
    if not (session / MANIFEST).is_file():
        return EncodingConfig()
    return EncodingConfig.from_dict(load_manifest(session).get("encoding"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deeporb.decode", description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="a note file (.json) or a session folder")
    parser.add_argument("out", type=Path, help="a .mid file, or a folder for many")
    args = parser.parse_args(argv)
    try:
        written = decode_path(args.path, args.out)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the output: an unwritable folder, a full disk, a file in the way
        print(f"error: cannot write {e.filename or args.out}: {e.strerror or e}; pass a writable OUT", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} MIDI file(s) under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
