"""Music statistics of generated samples against the held-out pieces a checkpoint never saw.

:func:`reference_pieces` rebuilds the pieces of one split of a checkpoint's sessions from its
session facts, each with its parts; :func:`compare_samples` cuts them to the samples' length
and compares the two sets through :func:`deeporb.evaluation.music_stats.compare_sets`
(per-piece statistics, and the cross-part ones of
:mod:`deeporb.evaluation.cross_part` where pieces have two pitched parts or more);
:func:`compare_form_samples` sets the samples' form (:mod:`deeporb.evaluation.form`) beside
the whole held-out pieces. This is what ``sample.py compare=true`` prints.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deeporb.checkpoints import facts as facts_of
from deeporb.data.facts import SessionFacts
from deeporb.data.split import SPLITS, split_pieces
from deeporb.encoding.words import Meter, quantize
from deeporb.errors import UserError
from deeporb.evaluation.columns import NOTE_COLUMNS
from deeporb.evaluation.form import compare_form
from deeporb.evaluation.likelihood import sessions_dir_of
from deeporb.evaluation.music_stats import compare_sets
from deeporb.session_store import load_note_file

Session = SessionFacts | Mapping | str | Path


def _split_facts(session: Session) -> SessionFacts:
    """The facts of a checkpoint (path), its ``hparams.session`` dict or the facts themselves,
    checked to say which pieces were held out."""
    return facts_of(session).require_split("session" if isinstance(session, Mapping) else "checkpoint")


def reference_pieces(
    session: Session,
    split: str = "test",
    instruments: Iterable[str] | None = None,
    sessions_dir: str | Path | None = None,
    drums: bool = False,
) -> list[dict]:
    """The pieces of one split of a checkpoint's sessions, as note columns on the model's grid.

    ``session`` is the checkpoint (a path: .ckpt file or run folder), its ``hparams.session``
    dict or its :class:`SessionFacts`. Every track of a source piece (restricted to
    ``instruments`` when given, drums left out unless ``drums``) is one of the piece's
    ``parts`` (note columns with ``instrument`` and ``is_drum``), and their concatenation is
    the piece's own columns; notes are quantized exactly as the words keep them, so real
    pieces and samples meet on the same grid. Each piece also carries ``piece`` (its id, what
    :func:`deeporb.data.split.split_of` hashes), ``session``, ``instruments``, ``tracks``
    (how many parts) and ``bar_lines`` (its bar starts in quarters, from its own meter).
    Sorted by (session, piece).
    """
    facts = _split_facts(session)
    if split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    config = facts.encoding
    wanted = set(instruments) if instruments is not None else None
    root = sessions_dir_of(facts, sessions_dir)
    pieces = []
    for name in facts.names:
        session_dir = root / name
        if not session_dir.is_dir():
            raise UserError(
                f"session {name!r} not found in {root}; re-encode it there or pass the folder that holds it "
                "(sessions_dir=...)"
            )
        found = split_pieces(session_dir, split, facts.val_fraction, facts.test_fraction, facts.instruments_filter)
        for piece_id in sorted(found):
            parts, meter = [], []
            for path in found[piece_id]:
                record = load_note_file(path)
                meter = meter or record.get("meter") or []
                key = record.get("instrument", path.parent.name)
                if (record.get("is_drum") and not drums) or (wanted is not None and key not in wanted):
                    continue
                notes = quantize(record["notes"], config).to_quarters(config)
                parts.append({**{c: notes[c] for c in NOTE_COLUMNS}, "instrument": key,
                              "is_drum": bool(record.get("is_drum"))})
            if not parts:
                continue
            piece = {c: np.concatenate([p[c] for p in parts]) for c in NOTE_COLUMNS}
            end = int(np.rint(piece["onset"].max(initial=0.0) * config.resolution))
            lines = Meter.from_changes([tuple(c) for c in meter], config).bar_lines(end, config)[0]
            piece.update(parts=parts, piece=piece_id, session=name, bar_lines=lines / config.resolution,
                         instruments=sorted({p["instrument"] for p in parts}), tracks=len(parts))
            pieces.append(piece)
    return pieces


def _cut(columns: Mapping, lo: float, hi: float) -> dict | None:
    """The notes whose onset lies in [lo, hi), shifted to start at 0 and cut at ``hi``."""
    onset = np.asarray(columns["onset"], dtype=np.float64)
    duration = np.asarray(columns["duration"], dtype=np.float64)
    keep = (onset >= lo) & (onset < hi)
    if not keep.any():
        return None
    cut = {c: np.asarray(columns[c])[keep] for c in NOTE_COLUMNS if c in columns}
    cut["onset"] = onset[keep] - lo
    cut["duration"] = np.minimum(duration[keep], hi - onset[keep])
    return cut


def excerpts(piece: Mapping, quarters: float) -> list[dict]:
    """Cut a piece into consecutive excerpts of ``quarters``, each starting at 0.

    Notes belong to the excerpt their onset falls in and are cut at its end; a piece's
    ``parts`` are cut alike (a part silent in an excerpt is left out of it). A last excerpt
    shorter than half the length is dropped (unless it is the only one).
    """
    onset = np.asarray(piece["onset"], dtype=np.float64)
    if len(onset) == 0 or quarters <= 0:
        return []
    end = float((onset + np.asarray(piece["duration"], dtype=np.float64)).max())
    out = []
    k = 0
    while k * quarters < end:
        lo, hi = k * quarters, (k + 1) * quarters
        k += 1
        if out and min(end, hi) - lo < quarters / 2:
            break
        cut = _cut(piece, lo, hi)
        if cut is None:
            continue
        if "parts" in piece:
            cuts = [(part, _cut(part, lo, hi)) for part in piece["parts"]]
            cut["parts"] = [{**{k: v for k, v in part.items() if k not in NOTE_COLUMNS}, **c}
                            for part, c in cuts if c is not None]
        out.append(cut)
    return out


def beats_per_bar(session: Session) -> float:
    """Quarters per bar of the meter the sampler writes: the session's commonest
    representable time signature (4/4 when unknown)."""
    n, d = facts_of(session).meter().signatures[0]
    return 4 * n / d


def _as_piece(sample: Any) -> tuple[dict, list[str] | None, float | None]:
    """A sample as (a piece, its instrument keys or None, its length in quarters or None).

    Accepts a mapping of note columns (or ``{"notes": columns}``, or a piece with ``parts``),
    a ``SampleResult`` (its ``tracks``, each a part; drums left out) or a list of ``Track``.
    """
    length = bar = None
    if isinstance(sample, Mapping):
        if "onset" not in sample and "notes" in sample:
            sample = sample["notes"]
        piece = {c: np.asarray(sample[c]) for c in NOTE_COLUMNS if c in sample}
        piece |= {k: sample[k] for k in ("parts", "bar_lines") if k in sample}
        return piece, None, None
    tracks = getattr(sample, "tracks", sample)
    if hasattr(sample, "bars") and hasattr(sample, "time_signature"):
        n, d = (int(x) for x in str(sample.time_signature).split("/"))
        bar = 4 * n / d
        length = sample.bars * bar
    tracks = [t for t in tracks if not getattr(t, "is_drum", False)]
    parts = [{**{c: np.asarray(t.notes[c]) for c in ("onset", "duration", "pitch")}, "instrument": t.name}
             for t in tracks]
    piece = {
        c: np.concatenate([p[c] for p in parts]) if parts else np.zeros(0)
        for c in ("onset", "duration", "pitch")
    }
    piece["parts"] = parts
    if bar is not None:  # a sample is in one meter: the bar grid of its form figures
        piece["bar_lines"] = np.array([0.0, bar])
    return piece, sorted({t.name for t in tracks}), length


def _samples_and_reference(samples, session, split, instruments, sessions_dir):
    """(facts, the samples as :func:`_as_piece` reads them, the whole held-out pieces): the
    reference limited to the instruments the samples name, else to ``instruments``."""
    if not samples:
        raise UserError("no samples to compare")
    facts = _split_facts(session)
    converted = [_as_piece(s) for s in samples]
    if instruments is None:
        named = {k for c in converted if c[1] for k in c[1]}
        instruments = sorted(named) if named else None
    reference = reference_pieces(facts, split, instruments, sessions_dir)
    if not reference:
        raise UserError(
            f"the {split} split of {', '.join(facts.names)} holds no pieces"
            + (f" with {', '.join(instruments)}" if instruments else "")
        )
    return facts, converted, reference


def compare_samples(
    samples: Sequence[Any],
    session: Session,
    split: str = "test",
    instruments: Iterable[str] | None = None,
    match_length: bool = True,
    sessions_dir: str | Path | None = None,
) -> list[dict]:
    """Music statistics of generated samples against the held-out real pieces of ``split``.

    ``samples``: ``SampleResult`` objects from :func:`deeporb.stages.sample.sample`, lists of
    ``Track``, or note-column mappings (with ``parts`` for the cross-part statistics).
    ``session``: the checkpoint (a path: .ckpt file or run folder), its ``hparams.session``
    or its :class:`SessionFacts`.
    Returns :func:`deeporb.evaluation.music_stats.compare_sets` rows (``feature``, ``kind``, ``overlap``,
    ``kl``, means, ...); :func:`deeporb.evaluation.music_stats.format_comparison` prints them.

    * instruments: reference tracks are limited to the instruments the samples play (when
      the samples name them), else to ``instruments``, else all pitched instruments;
    * match_length: reference pieces are cut into excerpts as long as the median sample
      (rounded up to whole bars), since pitch range, pitches used and the like grow with
      length while samples have a fixed number of bars;
    * bars are the session's commonest time signature, the grid its encoding resolution.
    """
    facts, converted, reference = _samples_and_reference(samples, session, split, instruments, sessions_dir)
    pieces = [c[0] for c in converted]
    bar = beats_per_bar(facts)
    if match_length:
        lengths = [
            c[2] if c[2] else float((np.asarray(p["onset"]) + np.asarray(p["duration"])).max(initial=0.0))
            for c, p in zip(converted, pieces, strict=True)
        ]
        quarters = math.ceil(float(np.median(lengths)) / bar - 1e-9) * bar
        reference = [e for p in reference for e in excerpts(p, quarters)] if quarters > 0 else reference
    return compare_sets(pieces, reference, beats_per_bar=bar, resolution=facts.encoding.resolution)


def overlap_summary(rows: Sequence[Mapping]) -> dict[str, float]:
    """Mean overlap over the histogram features, the scalar features and the cross-part
    features (NaN rows skipped; NaN for a kind with no rows)."""
    out = {}
    for kind in ("histogram", "scalar", "cross_part"):
        values = [r["overlap"] for r in rows if r["kind"] == kind and not math.isnan(r["overlap"])]
        out[kind] = float(np.mean(values)) if values else math.nan
    return out


def compare_form_samples(
    samples: Sequence[Any],
    session: Session,
    split: str = "test",
    instruments: Iterable[str] | None = None,
    sessions_dir: str | Path | None = None,
) -> dict:
    """The form of the samples beside the *whole* held-out pieces of ``split``
    (:func:`deeporb.evaluation.form.compare_form`): never excerpts, since length, endings and
    bars 49-64 are figures of whole pieces. Arguments as :func:`compare_samples`; each piece
    is read on its own bar grid (a sample's meter, a real piece's own), on the encoding's grid."""
    facts, converted, reference = _samples_and_reference(samples, session, split, instruments, sessions_dir)
    return compare_form([c[0] for c in converted], reference, beats_per_bar=beats_per_bar(facts),
                        resolution=facts.encoding.resolution)
