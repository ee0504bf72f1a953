"""Prompts and primers: bar headers, a primer's first bars, the words fed before the first draw.

(The meter a sample without primer is written in is the checkpoint's:
:meth:`deeporb.data.facts.SessionFacts.meter`.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deeporb.encoding.words import BAR, BOS, EncodingConfig, Meter, Vocabulary, encode
from deeporb.errors import UserError
from deeporb.instruments import instrument_key
from deeporb.midi import MidiReadError, read_midi


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
    return [words[a:b] for a, b in zip(starts, starts[1:] + [len(words)], strict=True)]


@dataclass
class Primer:
    """The first bars of a primer MIDI, encoded per instrument the model knows."""

    path: Path
    bars: int  # primer bars used (fewer than asked when the file is shorter)
    words: dict[str, list[str]]  # instrument -> words of those bars
    meter: Meter
    tempos: list[tuple[float, float]]
    end_step: int  # grid step where generation starts
    ignored: list[str] = field(default_factory=list)  # primer instruments the model does not know


def load_primer(path: str | Path, vocab: Vocabulary, primer_bars: int, key_mode: str = "program") -> Primer:
    """Read and encode a primer with the model's encoding config and instrument-key rule."""
    path = Path(path).expanduser()
    try:
        piece = read_midi(path)
    except MidiReadError as e:
        raise UserError(f"primer {str(path)!r}: {e}; pass primer=FILE.mid") from None
    groups: dict[str, list] = {}
    for track in piece.tracks:
        if len(track):
            key = instrument_key(key_mode, track.program, track.is_drum, track.name)
            groups.setdefault(key, []).append(track)
    if not groups:
        raise UserError(f"primer {str(path)!r} has no notes")
    known = sorted(k for k in groups if k in vocab.instruments)
    if not known:
        raise UserError(
            f"primer {str(path)!r} has no instrument this model knows: the primer has "
            f"{', '.join(sorted(groups))}; the model knows {', '.join(vocab.instruments) or 'none'}"
        )
    config = vocab.config
    meter = Meter.from_changes(list(piece.time_signatures), config)
    encoded = {}
    for key in known:
        notes = {c: np.concatenate([t.notes[c] for t in groups[key]]) for c in ("onset", "duration", "pitch", "velocity")}
        words, _ = encode(notes, piece.time_signatures, vocab)
        encoded[key] = split_bars(words.split())
    nbars = min(max(0, int(primer_bars)), max(len(b) for b in encoded.values()))
    lines, headers = bar_grid(meter, nbars, config)
    words = {}
    for key, bars in encoded.items():
        chosen = [bars[b] if b < len(bars) else headers[b] for b in range(nbars)]
        words[key] = [w for bar in chosen for w in bar]
    end_step = int(lines[nbars])
    end_q = end_step / config.resolution
    tempos = [(q, qpm) for q, qpm in piece.tempos if q < end_q or q == 0]
    return Primer(path, nbars, words, meter, tempos, end_step, sorted(set(groups) - set(known)))


def build_prompts(
    vocab: Vocabulary, instruments: list[str], meter: Meter, primer: Primer | None
) -> list[list[int]]:
    """``<bos> inst_KEY`` + primer bars (empty bars for instruments it lacks) + next bar's header."""
    nbars = primer.bars if primer else 0
    _, headers = bar_grid(meter, nbars, vocab.config)
    prompts = []
    for key in instruments:
        body = primer.words.get(key) if primer else None
        if body is None:
            body = [w for h in headers[:nbars] for w in h]
        words = [BOS, f"inst_{key}", *body, *headers[nbars]]
        prompts.append([int(i) for i in vocab.ids(words)])
    return prompts
