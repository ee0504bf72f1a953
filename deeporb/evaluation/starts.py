"""How pieces and samples start: which parts sound in their opening bars (issue 14's figures).

Real pieces are started as training starts them (leading bars in which no part plays are
dropped, see :mod:`deeporb.data.pieces`), so a model that learned its beginnings from them
should open like them. Used by ``benchmarks/starts.py`` and ``tests/test_starts.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from deeporb.checkpoints import facts as facts_of
from deeporb.data.pieces import pieces
from deeporb.data.split import note_file_refs, split_of
from deeporb.evaluation.likelihood import sessions_dir_of


def real_starts(session, parts: Sequence[str], quarters: float, split: str = "train") -> list[dict[str, int]]:
    """Notes per part in the first ``quarters`` of every piece of ``split`` of a checkpoint's
    sessions (its path or its facts), each piece started as training starts it: leading bars
    in which no part plays dropped. A part the piece lacks counts as silent."""
    facts = facts_of(session).require_split()
    steps = round(quarters * facts.encoding.resolution)
    root = sessions_dir_of(facts, None)
    counts = []
    for name in facts.names:
        refs = [r for r in note_file_refs(root / name, facts.instruments_filter)
                if split_of(r.piece, facts.val_fraction, facts.test_fraction) == split]
        for piece in pieces(refs, facts.encoding):
            grids = piece.parts()
            counts.append({k: int((grids[k].onset < steps).sum()) if k in grids else 0 for k in parts})
    return counts


def sample_starts(results: Iterable, parts: Sequence[str], quarters: float) -> list[dict[str, int]]:
    """Notes per part in the first ``quarters`` of every sample (``SampleResult``)."""
    counts = []
    for r in results:
        notes = {t.name: int((np.asarray(t.notes["onset"]) < quarters - 1e-9).sum()) for t in r.tracks}
        counts.append({k: notes.get(k, 0) for k in parts})
    return counts


def start_statistics(counts: Sequence[dict[str, int]], parts: Sequence[str]) -> dict:
    """Silent excerpts (no note in any of ``parts``), parts sounding per excerpt, the share
    of (excerpt, part) pairs that are silent, and each part's share of excerpts it sounds in."""
    n = len(counts)
    sounding = np.array([[c[k] > 0 for k in parts] for c in counts], dtype=bool).reshape(n, len(parts))
    return {
        "n": n,
        "silent": int((~sounding.any(axis=1)).sum()),
        "silent_share": float((~sounding.any(axis=1)).mean()) if n else float("nan"),
        "parts_sounding": float(sounding.sum(axis=1).mean()) if n else float("nan"),
        "silent_part_share": float((~sounding).mean()) if n else float("nan"),
        "part_sounds": {k: float(sounding[:, i].mean()) if n else float("nan") for i, k in enumerate(parts)},
    }
