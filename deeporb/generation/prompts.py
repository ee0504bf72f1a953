"""Prompts and primers: bar headers, a primer's first bars, the words fed before the first draw.

A prompt is what a training row would hold before the bars to write: the header
(``<bos> [style_S] inst_...``), the primer's bars, and the header of the first bar to write
(``bar`` [``ts_N/D``]). The tracks view has one prompt per instrument (:func:`build_prompts`),
the score view one for the ensemble (:func:`score_prompt`). (The meter a sample without
primer is written in is the checkpoint's: :meth:`deeporb.data.facts.SessionFacts.meter`.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deeporb.encoding.score import encode_score, quantize_parts
from deeporb.encoding.words import BAR, EncodingConfig, GridNotes, Meter, Vocabulary, encode_ids
from deeporb.errors import UserError
from deeporb.instruments import instrument_key
from deeporb.midi import MidiReadError, Track, read_midi

MAX_PRIMER_BARS = 1024  # as compose.MAX_BARS: a primer's bars are laid out as a grid before it is read


def check_primer_bars(primer_bars: int) -> None:
    """One :class:`UserError` unless ``0 <= primer_bars <= MAX_PRIMER_BARS``: the bar grid of
    ``primer_bars=1000000000`` alone took 22 GB before this (issue 17)."""
    if not 0 <= primer_bars <= MAX_PRIMER_BARS:
        raise UserError(f"primer_bars must be between 0 and {MAX_PRIMER_BARS:,} (got {primer_bars:,}): "
                        "how many of the primer's first bars open each piece")


def bar_grid(meter: Meter, nbars: int, config: EncodingConfig) -> tuple[np.ndarray, list[list[str]]]:
    """Start steps of the first ``nbars + 1`` bars, and each bar's header words (as encode writes)."""
    end = (nbars + 1) * config.max_bar_quarters * config.resolution
    lines, which = meter.bar_lines(end, config)
    headers = []
    for b in range(nbars + 1):
        header = [BAR]
        if b == 0 or which[b] != which[b - 1]:
            n, d = meter.signatures[which[b]]
            header.append(f"ts_{n}/{d}")
        headers.append(header)
    return lines[: nbars + 1], headers


def split_bars(words: list[str]) -> list[list[str]]:
    starts = [i for i, w in enumerate(words) if w == BAR]
    return [words[a:b] for a, b in zip(starts, [*starts[1:], len(words)][: len(starts)], strict=True)]


@dataclass
class Primer:
    """The first bars of a primer MIDI, cut there and encoded per instrument the model knows."""

    path: Path
    bars: int  # primer bars used (fewer than asked when the file is shorter)
    parts: dict[str, GridNotes]  # instrument -> its notes starting in those bars (grid steps)
    words: dict[str, list[str]]  # instrument -> its words of those bars (the tracks view)
    meter: Meter  # the primer's meter up to its end (changes later in the file are dropped)
    tempos: list[tuple[float, float]]
    end_step: int  # grid step where generation starts
    ignored: list[str] = field(default_factory=list)  # primer instruments the model does not know
    originals: list[tuple[str, Track]] = field(default_factory=list)  # (key, track) as the file has them, every
    #   instrument, up to the bars asked: what a fill keeps note for note (deeporb.generation.refill)
    cut: bool = False  # the file has notes after the bars asked (a fill returns the piece without them)


def load_primer(path: str | Path, vocab: Vocabulary, primer_bars: int, key_mode: str = "program") -> Primer:
    """Read a primer and encode its first ``primer_bars`` bars with the model's encoding config
    and instrument-key rule.

    Only those bars are encoded: notes and time signatures past them are dropped first, so a
    file with a huge delta time (a note a million bars in) costs what its first bars cost.
    Anything wrong with the file, or ``primer_bars`` out of bounds (checked before reading), is
    one :class:`UserError`.
    """
    check_primer_bars(primer_bars)
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"primer {str(path)!r} is a folder; pass primer=FILE.mid (one MIDI file)")
    try:
        piece = read_midi(path)
    except MidiReadError as e:
        raise UserError(f"primer {str(path)!r}: {e}; pass primer=FILE.mid") from None
    groups: dict[str, list] = {}
    keyed = []  # (key, track) in the file's order
    for track in piece.tracks:
        if len(track):
            key = instrument_key(key_mode, track.program, track.is_drum, track.name)
            groups.setdefault(key, []).append(track)
            keyed.append((key, track))
    if not groups:
        raise UserError(f"primer {str(path)!r} has no notes")
    known = sorted(k for k in groups if k in vocab.instruments)
    if not known:
        raise UserError(
            f"primer {str(path)!r} has no instrument this model knows: the primer has "
            f"{', '.join(sorted(groups))}; the model knows {', '.join(vocab.instruments) or 'none'}"
        )
    config = vocab.config
    primer_bars = int(primer_bars)
    horizon = (primer_bars + 1) * config.max_bar_quarters  # quarters: past the end of primer_bars bars
    meter = Meter.from_changes([c for c in piece.time_signatures if c[0] < horizon], config)
    lines, headers = bar_grid(meter, primer_bars, config)
    last = max(float(t.notes["onset"].max()) for k in known for t in groups[k])
    last_step = min(int(np.floor(last * config.resolution + 0.5)), int(lines[primer_bars]))
    nbars = min(primer_bars, int(np.searchsorted(lines, last_step, side="right")))
    end_step = int(lines[nbars])
    parts = quantize_parts([(k, t.notes) for k in known for t in groups[k]], config)
    parts = {k: GridNotes(*(getattr(g, c)[g.onset < end_step] for c in ("onset", "duration", "pitch", "velocity_bin")))
             for k, g in parts.items()}
    words = {}
    for key, grid in parts.items():
        bars = split_bars(vocab.decode_ids(encode_ids(grid, meter, vocab)))
        words[key] = [w for b in range(nbars) for w in (bars[b] if b < len(bars) else headers[b])]
    end_q = end_step / config.resolution
    tempos = [(q, qpm) for q, qpm in piece.tempos if q < end_q or q == 0]
    originals, cut = [], False  # every track up to the bars asked (not only to the known parts' last bar)
    for key, t in keyed:
        early = np.floor(t.notes["onset"] * config.resolution + 0.5) < lines[primer_bars]
        cut |= not early.all()
        originals.append((key, Track(t.name, t.program, t.is_drum, {c: v[early] for c, v in t.notes.items()})))
    return Primer(path, nbars, parts, words, meter, tempos, end_step, sorted(set(groups) - set(known)), originals,
                  cut)


def build_prompts(
    vocab: Vocabulary, instruments: list[str], meter: Meter, primer: Primer | None, style: str | None = None
) -> list[list[int]]:
    """Tracks view: ``<bos> [style_S] inst_KEY`` + primer bars (empty bars for instruments it
    lacks) + next bar's header, one prompt per instrument."""
    nbars = primer.bars if primer else 0
    _, headers = bar_grid(meter, nbars, vocab.config)
    prompts = []
    for key in instruments:
        body = primer.words.get(key) if primer else None
        if body is None:
            body = [w for h in headers[:nbars] for w in h]
        ids = [*vocab.header_ids([key], style), *vocab.ids([*body, *headers[nbars]])]
        prompts.append([int(i) for i in ids])
    return prompts


def score_prompt(
    vocab: Vocabulary, parts: list[str], meter: Meter, primer: Primer | None, style: str | None = None
) -> list[int]:
    """Score view: ``<bos> [style_S] inst_A inst_B ...`` (``parts`` and the primer's, ascending)
    + the primer's bars, all its parts in one stream + next bar's header."""
    nbars = primer.bars if primer else 0
    _, headers = bar_grid(meter, nbars, vocab.config)
    grids = dict(primer.parts) if primer else {}
    empty = GridNotes.concat([])
    grids.update({k: empty for k in parts if k not in grids})
    ids = encode_score(grids, meter, vocab, style, whole=False)[:-1].tolist()  # header + primer bars, no <eos>
    written = ids.count(vocab.index[BAR])
    ids += vocab.ids([w for h in headers[written:nbars + 1] for w in h]).tolist()
    return ids
