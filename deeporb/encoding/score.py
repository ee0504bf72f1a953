"""The score view: all parts of a piece in one word stream, so each note is predicted
knowing what every part has played.

    <bos> [style_S] inst_A inst_B ...  bar [ts_N/D] pos_K inst_A [vel_V] P dur_D ... inst_B ... pos_K ... <eos>

The header names the ensemble: every part once, in score order (silent parts too). In the
body, every ``pos_K`` is followed by the parts that play there, each named once by an
``inst_`` word in the header's order, each with its notes (pitches non-decreasing). The
score order is the vocabulary's (:class:`~deeporb.encoding.words.Vocabulary`), fixed and
independent of the file, so each part's notes stay together; it stands top-down, so a melody
comes before its accompaniment at each onset and the parts below hear it (measured in
docs/benchmarks.md, "Fills: the designs measured"); ``vel_`` is written where the velocity bin changes from the previous note of the
stream. The rules are :mod:`deeporb.encoding.grammar`'s (view ``score``), and the view is
lossless on the grid: ``decode_score(encode_score(parts)) == parts`` (tests/test_score_words.py).
"""

from __future__ import annotations

import numpy as np

from deeporb.encoding.words import (
    EOS,
    GRID_COLUMNS,
    EncodingConfig,
    GridNotes,
    Meter,
    Vocabulary,
    encode_ids,
    quantize,
    read_words,
)


def quantize_parts(tracks, config: EncodingConfig) -> dict[str, GridNotes]:
    """(instrument key, note columns) pairs -> {key: grid notes}: a piece's parts for the score
    view, the tracks that share a key merged into one part."""
    grids: dict[str, list[GridNotes]] = {}
    for key, notes in tracks:
        grids.setdefault(key, []).append(quantize(notes, config))
    return {key: GridNotes.concat(g) for key, g in grids.items()}


def encode_score(
    parts: dict[str, GridNotes], meter: Meter, vocab: Vocabulary, style: str | None = None, whole: bool = True,
) -> np.ndarray:
    """A piece's parts -> the score view's ids: ``<bos> [style_S] inst_A inst_B ... body <eos>``.

    ``whole``: the parts are a whole piece, so its last bar says ``final`` (with
    ``vocab.final_bar``); a primer, which the sampler continues, is not.

    The header names every part once, in score order (silent parts too); inside one onset
    the parts follow in that order. Tracks of one key must be merged first (:func:`quantize_parts`
    does). Inverse: :func:`decode_score`.
    """
    keys = sorted(parts)
    if not keys:
        raise ValueError("a score needs at least one part")
    notes, part = score_notes(parts, vocab)
    body = encode_ids(notes, meter, vocab, part=part, final=whole)
    return np.concatenate([vocab.header_ids(keys, style), body, [vocab.index[EOS]]])


def score_notes(parts: dict[str, GridNotes], vocab: Vocabulary) -> tuple[GridNotes, np.ndarray]:
    """The parts' notes in the score view's order (onset, part, pitch, ...) and each note's
    ``inst_`` id."""
    keys = sorted(parts)
    none = [np.zeros(0, np.int64)]
    part = np.concatenate([np.full(len(parts[k]), vocab.inst_id(k), dtype=np.int64) for k in keys] or none)
    on, dur, pitch, vel = (np.concatenate([getattr(parts[k], c) for k in keys] or none) for c in GRID_COLUMNS)
    order = np.lexsort((vel, dur, pitch, part, on))
    return GridNotes(on[order], dur[order], pitch[order], vel[order]), part[order]


def decode_score(words, vocab: Vocabulary, strict: bool = True) -> tuple[dict[str, GridNotes], Meter]:
    """Score view: ``<bos> [style_S] inst_A ... body <eos>`` -> {instrument: grid notes}, meter.

    Every part the header names is in the result (silent ones empty). Inverse of
    :func:`encode_score`.
    """
    cols, meter, ensemble = read_words(words, vocab, strict, "score")
    parts = {}
    for i in np.flatnonzero(ensemble):
        keep = cols["part"] == i
        parts[vocab.instruments[i]] = GridNotes.sorted(*(cols[c][keep] for c in GRID_COLUMNS))
    return parts, meter
