"""Words per second of strict decoding: the grammar's word-by-word reader on real music.

    python benchmarks/decode_speed.py [--midi-dir ../shared/data/beethoven] [--repeats 5] [--no-write]

Strict decoding checks every word against the grammar (``deeporb.encoding.grammar.Walk``) while
it collects the notes; decode.py, sample.py and serve.py run it on every sequence they turn
back into MIDI. Each MIDI file is encoded once, as encode.py writes it (a note file's words per
track) and as one score-view row of all its parts (instruments keyed by program); then every
sequence is decoded, strict, in rounds that alternate the two views so that a busy machine
slows both alike. The best round of each is reported.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, write_section  # noqa: E402

from deeporb.encoding.score import decode_score, encode_score, quantize_parts  # noqa: E402
from deeporb.encoding.words import EncodingConfig, Meter, Vocabulary, decode_words, encode  # noqa: E402
from deeporb.instruments import instrument_key  # noqa: E402
from deeporb.midi import find_midi_files, read_midi  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def sequences(files: list[Path], config: EncodingConfig):
    """-> (each track's words, as a note file holds them; their vocabulary; each piece's score-view
    row, as a word list; its vocabulary)."""
    vocab, tracks, pieces = Vocabulary(config), [], []
    for path in files:
        piece = read_midi(path)
        played = [t for t in piece.tracks if len(t)]
        tracks += [encode(t.notes, piece.time_signatures, vocab)[0] for t in played]
        parts = quantize_parts(((instrument_key("program", t.program, t.is_drum, t.name), t.notes) for t in played),
                               config)
        pieces.append((parts, Meter.from_changes(piece.time_signatures, config)))
    score_vocab = Vocabulary(config, tuple(sorted({k for parts, _ in pieces for k in parts})))
    scores = [score_vocab.decode_ids(encode_score(parts, meter, score_vocab)) for parts, meter in pieces]
    return tracks, vocab, scores, score_vocab


def time_tracks(tracks: list[str], vocab: Vocabulary) -> float:
    t0 = time.perf_counter()
    for words in tracks:
        decode_words(words, vocab, strict=True)
    return time.perf_counter() - t0


def time_scores(scores: list[list[str]], vocab: Vocabulary) -> float:
    t0 = time.perf_counter()
    for words in scores:
        decode_score(words, vocab, strict=True)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--midi-dir", type=Path, default=ROOT.parent / "shared" / "data" / "beethoven")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    files = find_midi_files(args.midi_dir)
    tracks, vocab, scores, score_vocab = sequences(files, EncodingConfig())
    runs = [  # (view, sequences, words, run() -> seconds)
        ("tracks (note files' words, `decode_words`)", len(tracks), sum(len(w.split()) for w in tracks),
         lambda: time_tracks(tracks, vocab)),
        ("score (one row per piece, `decode_score`)", len(scores), sum(map(len, scores)),
         lambda: time_scores(scores, score_vocab)),
    ]
    for *_, run in runs:  # warm-up: first calls build the readers' tables
        run()
    best = [float("inf")] * len(runs)
    for _ in range(args.repeats):
        for i, (*_, run) in enumerate(runs):
            best[i] = min(best[i], run())
    rows = [f"| {view} | {n} | {words:,} | {seconds:.3f} | {words / seconds:,.0f} |"
            for (view, n, words, _), seconds in zip(runs, best, strict=True)]
    text = "\n".join([
        "## Strict decode speed",
        "",
        f"`python benchmarks/decode_speed.py --midi-dir {args.midi_dir.name} --repeats {args.repeats}` "
        f"on {len(files)} files; {machine()}. Best of {args.repeats} alternating rounds, one process.",
        "",
        "Every word is checked against the grammar as it is read (`strict=True`, what decode.py, "
        "sample.py and serve.py use); the words are encode.py's, so none is refused.",
        "",
        "| view | sequences | words | seconds | words/s |",
        "|---|---:|---:|---:|---:|",
        *rows,
    ])
    print(text)
    if not args.no_write:
        write_section("decode_speed", text)


if __name__ == "__main__":
    main()
