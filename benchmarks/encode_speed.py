"""Encode speed against MidiTok's REMI tokenizer, and encode fidelity, on one MIDI folder.

    python benchmarks/encode_speed.py [--midi-dir ../shared/data/beethoven] [--repeats 5]

Both run in this one process, one file at a time, alternating rounds so that a busy
machine slows both alike; the best round of each is compared. DeepOrb's time covers
reading (symusic), the words, and serialising the note files; MidiTok's covers reading
and tokenizing (it serialises nothing). Fidelity: every note of every file is looked for
in the decoded words at its quantized onset and pitch.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

from deeporb.encoding.words import EncodingConfig, Vocabulary, decode_words, quantize  # noqa: E402
from deeporb.midi import find_midi_files, read_midi  # noqa: E402
from deeporb.session_store import dump_json, load_note_file, scan_note_files  # noqa: E402
from deeporb.stages.encode import encode_session, encode_tracks  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def records_of(path: Path, root: Path, config: EncodingConfig) -> list[dict]:
    """The note-file records of one MIDI file: what encode.py writes (read + words)."""
    return encode_tracks(read_midi(path), path.relative_to(root).as_posix(), config, "program")[0]


def time_deeporb(files, root, config) -> tuple[float, float, int]:
    """-> (seconds for words only, seconds including note-file serialisation, words)."""
    t0 = time.perf_counter()
    results = [records_of(f, root, config) for f in files]
    t1 = time.perf_counter()
    for records in results:
        for rec in records:
            dump_json(rec)
    t2 = time.perf_counter()
    words = sum(len(rec["words"].split()) for records in results for rec in records)
    return t1 - t0, t2 - t0, words


def time_serializers(files, root, config, repeats: int) -> tuple[float, float]:
    """Best seconds to serialise every note file with the standard json module and with
    orjson (what corpus.dump_json uses), on the same records."""
    import json

    records = [rec for f in files for rec in records_of(f, root, config)]
    plain = [{**r, "notes": {k: v.tolist() for k, v in r["notes"].items()}} for r in records]
    stdlib, fast = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for r in plain:
            json.dumps(r, separators=(",", ":"))
        t1 = time.perf_counter()
        for r in records:
            dump_json(r)
        stdlib.append(t1 - t0)
        fast.append(time.perf_counter() - t1)
    return min(stdlib), min(fast)


def time_miditok(files, tokenizer) -> tuple[float, int]:
    t0 = time.perf_counter()
    tokens = 0
    for f in files:
        seqs = tokenizer(f)
        tokens += sum(len(s.ids) for s in (seqs if isinstance(seqs, list) else [seqs]))
    return time.perf_counter() - t0, tokens


def fidelity(midi_dir: Path, config: EncodingConfig) -> dict:
    """Notes in the MIDI files vs notes found again by decoding the session's words."""
    files = find_midi_files(midi_dir)
    in_midi = sum(len(t) for f in files for t in read_midi(f).tracks)
    vocab = Vocabulary(config)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = encode_session(midi_dir=str(midi_dir), session="bench", sessions_dir=tmp, workers=1, progress=False)
        stored = found = 0
        for note_file in scan_note_files(Path(tmp) / "bench"):
            rec = load_note_file(note_file)
            stored += len(rec["notes"]["pitch"])
            want = quantize(rec["notes"], config)
            got, _ = decode_words(rec["words"], vocab)
            a = Counter(zip(want.onset.tolist(), want.pitch.tolist(), strict=True))
            b = Counter(zip(got.onset.tolist(), got.pitch.tolist(), strict=True))
            found += sum((a & b).values())
    return {"files": len(files), "in_midi": in_midi, "stored": stored, "found": found, "manifest": manifest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--midi-dir", type=Path, default=ROOT.parent / "shared" / "data" / "beethoven")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    from miditok import REMI, TokenizerConfig

    files = find_midi_files(args.midi_dir)
    config = EncodingConfig()
    tokenizer = REMI(TokenizerConfig())
    time_deeporb(files[:2], args.midi_dir, config)  # warm imports and caches for both
    time_miditok(files[:2], tokenizer)
    words_only, full, miditok = [], [], []
    for _ in range(args.repeats):
        w, f, n_words = time_deeporb(files, args.midi_dir, config)
        m, n_tokens = time_miditok(files, tokenizer)
        words_only.append(w)
        full.append(f)
        miditok.append(m)
    fid = fidelity(args.midi_dir, config)
    json_s, orjson_s = time_serializers(files, args.midi_dir, config, args.repeats)
    best = min(full), min(words_only), min(miditok)
    lines = [
        "## Encode speed and fidelity",
        "",
        f"`python benchmarks/encode_speed.py --midi-dir {args.midi_dir.name} --repeats {args.repeats}` "
        f"on {len(files)} files; {machine()}. Best of {args.repeats} alternating rounds, one process each.",
        "",
        "| encoder | seconds | tokens | ratio vs MidiTok |",
        "|---|---:|---:|---:|",
        f"| MidiTok REMI (read + tokenize) | {best[2]:.3f} | {n_tokens:,} | 1.0× |",
        f"| DeepOrb (read + words) | {best[1]:.3f} | {n_words:,} | {best[2] / best[1]:.1f}× |",
        f"| DeepOrb (read + words + note-file JSON) | {best[0]:.3f} | {n_words:,} | {best[2] / best[0]:.1f}× |",
        "",
        f"Writing the note files' JSON: standard library json {json_s:.3f} s, orjson {orjson_s:.3f} s "
        f"({json_s / orjson_s:.1f}× faster; the same records, best of {args.repeats}).",
        "",
        f"Fidelity: {fid['in_midi']:,} notes in the MIDI files, {fid['stored']:,} in the note files, "
        f"{fid['found']:,} ({100 * fid['found'] / max(1, fid['in_midi']):.2f}%) found again by decoding the words "
        "at their quantized onset and pitch. Grid adjustments counted in the manifest: "
        + ", ".join(f"{k} {v}" for k, v in fid["manifest"]["quantization"].items())
        + f"; skipped files: {len(fid['manifest']['skipped'])}.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        write_section("encode_speed", text)


if __name__ == "__main__":
    main()
