"""Evaluate checkpoints on held-out pieces: likelihood beside baselines, and music statistics.

**Likelihood.** ``python -m deeporb.evaluation.likelihood CKPT [LABEL=CKPT ...]`` scores every checkpoint on
the test split of the sessions it was trained on (the split is a hash of each piece id, so it
is the one training held out), and fits an interpolated Kneser-Ney n-gram on the same
sessions' train split, its order (and plain vs modified discounts) chosen on the validation
split. All rows predict exactly the same target words, so their figures compare:

* ``tracks`` (default): every test track whole, ``<bos> inst_KEY w1 ... wn <eos>`` as the
  DataModule frames it, every word after ``<bos>`` predicted once; the LSTM carries its state
  through the whole track, the n-gram sees up to ``order - 1`` words back. Independent of any
  model's ``seq_len``, so checkpoints with different windows (``seed`` uses 16) share a table.
* ``windows``: the DataModule's test windows of each checkpoint's ``seq_len`` (what
  ``python train.py train=false test=true ckpt_path=X`` reports as ``test/bits_per_note``):
  they tile each track, every window restarting from ``<bos> inst_KEY``, so both models lose
  their context at window starts and each window adds one ``inst_KEY`` target. Checkpoints
  with different ``seq_len`` get separate tables, each with its n-gram row.

The n-gram is always fitted on whole train tracks and its order chosen on whole val tracks.

``bits_per_note`` is the total negative log2-likelihood of all predicted words divided by the
number of predicted pitch words (notes); ``bits/word`` divides by the predicted words.

**Music statistics.** :func:`reference_pieces` rebuilds the held-out pieces of a checkpoint's
split from its ``session`` facts; :func:`compare_samples` compares generated samples with them
through :func:`deeporb.evaluation.music_stats.compare_sets` (what ``sample.py compare=true`` prints).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deeporb.encoding.words import EncodingConfig, Vocabulary, quantize
from deeporb.errors import UserError

MODES = ("tracks", "windows")
DEFAULT_ORDERS = tuple(range(1, 11))
LN2 = math.log(2.0)
NOTE_COLUMNS = ("onset", "duration", "pitch", "velocity")


# ---------------------------------------------------------------------------------------
# scores


@dataclass
class Score:
    """Summed negative log2-likelihood over a set of predicted words, and what it covers."""

    name: str
    bits: float
    words: int
    notes: int
    about: str = ""
    detail: dict = field(default_factory=dict)

    @property
    def bits_per_note(self) -> float:
        return self.bits / self.notes if self.notes else math.nan

    @property
    def bits_per_word(self) -> float:
        return self.bits / self.words if self.words else math.nan

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "bits_per_note": self.bits_per_note,
            "bits_per_word": self.bits_per_word,
            "bits": self.bits,
            "words": self.words,
            "notes": self.notes,
            "about": self.about,
            **self.detail,
        }


def count_targets(sequences: Iterable[np.ndarray], vocab: Vocabulary) -> tuple[int, int]:
    """(predicted words, predicted notes): every id after the first of each sequence."""
    words = notes = 0
    for seq in sequences:
        targets = np.asarray(seq[1:])
        words += len(targets)
        notes += int(((targets >= vocab.pitch0) & (targets < vocab.pitch0 + 128)).sum())
    return words, notes


def score_lstm(
    model, sequences: Sequence[np.ndarray], name: str = "lstm", batch_size: int = 32, chunk: int = 1024
) -> Score:
    """Score sequences of any length with an ``LSTMGenerator``, each from its own start.

    Sequences are sorted by length and batched; long ones are fed ``chunk`` words at a time
    with the LSTM state carried, which equals one pass over the whole sequence.
    """
    import torch
    import torch.nn.functional as F

    model.eval()
    vocab = model.vocab
    pad = vocab.index["<pad>"]
    device = next(model.parameters()).device
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    total = 0.0
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            rows = [np.asarray(sequences[i], dtype=np.int64) for i in order[b : b + batch_size]]
            longest = max(len(r) for r in rows)
            tokens = torch.full((len(rows), longest), pad, dtype=torch.long)
            for j, r in enumerate(rows):
                tokens[j, : len(r)] = torch.from_numpy(r)
            tokens = tokens.to(device)
            state = None
            for c in range(0, longest - 1, chunk):
                targets = tokens[:, c + 1 : c + 1 + chunk]
                logits, state = model(tokens[:, c : c + targets.shape[1]], state)
                nll = F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]).float(),
                    targets.reshape(-1),
                    ignore_index=pad,
                    reduction="sum",
                )
                total += float(nll.double()) / LN2
    words, notes = count_targets(sequences, vocab)
    return Score(name, total, words, notes)


@dataclass
class NGramBaseline:
    """The fitted n-gram and how it was chosen (validation bits/word per order and variant)."""

    lm: Any
    order: int
    modified: bool
    val_bits_per_word: dict[str, float]

    @property
    def key(self) -> str:
        """Key of the chosen setting in ``val_bits_per_word``: the order, ``m`` if modified."""
        return f"{self.order}{'m' if self.modified else ''}"

    @property
    def name(self) -> str:
        kind = "modified KN" if self.modified else "KN"
        return f"n-gram ({kind}, order {self.order})"


def fit_ngram(
    train: Sequence[np.ndarray],
    val: Sequence[np.ndarray],
    vocab_size: int,
    orders: Sequence[int] = DEFAULT_ORDERS,
) -> NGramBaseline:
    """Interpolated Kneser-Ney on the train tracks; order and discount variant by validation.

    The vocabulary size is the model's, so the n-gram spreads its unseen-word mass over the
    same words as the network's softmax.
    """
    from deeporb.evaluation.ngram import NGramLM, select_order

    train = [np.asarray(s).tolist() for s in train]
    val = [np.asarray(s).tolist() for s in val]
    results: dict[tuple[int, bool], float] = {}
    for modified in (False, True):
        _, per_order = select_order(train, val, orders, vocab_size=vocab_size, modified=modified)
        results.update({(o, modified): v for o, v in per_order.items()})
    order, modified = min(results, key=lambda k: (results[k], k[0], k[1]))
    lm = NGramLM(order, vocab_size=vocab_size, modified=modified).fit(train)
    val_bits = {f"{o}{'m' if m else ''}": v for (o, m), v in sorted(results.items())}
    return NGramBaseline(lm, order, modified, val_bits)


def score_ngram(baseline: NGramBaseline, sequences: Sequence[np.ndarray], vocab: Vocabulary) -> Score:
    bits, count = baseline.lm.total_bits(np.asarray(s).tolist() for s in sequences)
    words, notes = count_targets(sequences, vocab)
    if count != words:  # the n-gram predicts every word after the first, as the LSTM does
        raise AssertionError(f"n-gram scored {count} words, the sequences hold {words} targets")
    val = baseline.val_bits_per_word[baseline.key]
    detail = {"order": baseline.order, "modified": baseline.modified,
              "val_bits_per_word": baseline.val_bits_per_word}
    return Score(baseline.name, bits, words, notes, f"val bits/word {val:.4f}", detail)


# ---------------------------------------------------------------------------------------
# a checkpoint's data


def _session_of(hparams_or_session: Mapping, what: str = "checkpoint") -> dict:
    session = dict(hparams_or_session.get("session", hparams_or_session) or {})
    missing = [k for k in ("names", "sessions_dir", "val_fraction", "test_fraction") if k not in session]
    if missing:
        raise UserError(
            f"the {what}'s session facts lack {', '.join(missing)}, so its split cannot be rebuilt; "
            "use a checkpoint written by train.py"
        )
    return session


def sessions_dir_of(session: Mapping, sessions_dir: str | Path | None = None) -> Path:
    """Where the session lives: an explicit override, else where training found it."""
    return Path(sessions_dir).expanduser() if sessions_dir else Path(session["sessions_dir"])


def datamodule_for(session: Mapping, sessions_dir: str | Path | None = None, seq_len: int | None = None):
    """A loaded ``SessionDataModule`` with exactly the checkpoint's sessions, instruments and split."""
    from deeporb.data.datamodule import SessionDataModule

    dm = SessionDataModule(
        session=list(session["names"]),
        sessions_dir=str(sessions_dir_of(session, sessions_dir)),
        instruments=session.get("instruments_filter"),
        seq_len=int(seq_len or session.get("seq_len") or 256),
        val_fraction=float(session["val_fraction"]),
        test_fraction=float(session["test_fraction"]),
        encode=None,
    )
    dm.load()
    return dm


def split_sequences(dm, split: str, mode: str = "tracks") -> list[np.ndarray]:
    """Token sequences of a split, framed as the DataModule frames them (see module doc)."""
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "tracks":
        arrays = [np.load(p, mmap_mode="r") for p in dm.tokens_paths]
        return [
            np.asarray(arrays[t["array"]][t["start"] : t["start"] + t["length"]], dtype=np.int64)
            for t in dm.tracks
            if t["split"] == split
        ]
    import torch

    ds = dm.dataset(split)
    parts = ds.datasets if isinstance(ds, torch.utils.data.ConcatDataset) else [ds]
    out = []
    for part in parts:
        for i in range(len(part)):
            w = part.window(i)
            out.append(w[: int((w != part.pad_id).sum())])  # padding only ever trails
    return out


# ---------------------------------------------------------------------------------------
# evaluating checkpoints


@dataclass
class Evaluation:
    """One table: the n-gram and every checkpoint sharing a test split (and framing)."""

    data: dict
    scores: list[Score]

    def as_dict(self) -> dict:
        return {"data": self.data, "rows": [s.as_dict() for s in self.scores]}


def parse_checkpoint_arg(arg: str) -> tuple[str | None, str]:
    """``PATH`` or ``LABEL=PATH`` (a path that exists wins, so ``best-epoch=0.ckpt`` works)."""
    if "=" in arg and not Path(arg).expanduser().exists():
        label, path = arg.split("=", 1)
        return label, path
    return None, arg


def _model_label(model, path: Path) -> str:
    """``LSTM 2×256 (RUN/best.ckpt)``: the size, and enough of the path to tell runs apart."""
    h = model.hparams
    where = path.parent.parent.name + "/" + path.name if path.parent.name == "checkpoints" else path.name
    return f"LSTM {h.num_layers}×{h.hidden_size} ({where})"


def _data_key(session: Mapping, vocab: Vocabulary, sessions_dir) -> str:
    return json.dumps(
        {
            "names": list(session["names"]),
            "dir": str(sessions_dir_of(session, sessions_dir)),
            "val": session["val_fraction"],
            "test": session["test_fraction"],
            "instruments": session.get("instruments_filter"),
            "vocab": vocab.to_dict(),
        },
        sort_keys=True,
    )


def evaluate_checkpoints(
    checkpoints: Sequence[str | Path | tuple[str | None, str | Path]],
    mode: str = "tracks",
    orders: Sequence[int] = DEFAULT_ORDERS,
    sessions_dir: str | Path | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    log=print,
) -> list[Evaluation]:
    """Test-split scores of each checkpoint beside an n-gram on the same split and words.

    Checkpoints that share sessions, split and vocabulary (and, in ``windows`` mode, seq_len)
    share one table and one n-gram row. The n-gram is fitted once per data.
    """
    from deeporb.checkpoints import load_generator

    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not checkpoints:
        raise UserError("name at least one checkpoint to evaluate")
    groups: dict[str, list] = {}
    for item in checkpoints:
        label, path = item if isinstance(item, tuple) else parse_checkpoint_arg(str(item))
        model = load_generator(path, device)
        ckpt = Path(model.checkpoint_path)
        session = _session_of(model.hparams, f"checkpoint {str(ckpt)!r}")
        key = _data_key(session, model.vocab, sessions_dir)
        if mode == "windows":
            key += f"|seq_len={session.get('seq_len')}"
        groups.setdefault(key, []).append((label or _model_label(model, ckpt), ckpt, model, session))

    baselines: dict[str, tuple[NGramBaseline, Any]] = {}
    evaluations = []
    for key, members in groups.items():
        _, _, first_model, session = members[0]
        dm = datamodule_for(session, sessions_dir)
        if dm.vocab != first_model.vocab:
            raise UserError(
                f"the sessions {', '.join(session['names'])} now give a different vocabulary "
                f"({len(dm.vocab)} words, instruments {', '.join(dm.vocab.instruments)}) than the checkpoint "
                f"({len(first_model.vocab)} words); they were re-encoded or edited since training"
            )
        data_key = key.split("|seq_len=")[0]
        if data_key not in baselines:
            log(f"fitting the n-gram on the train split of {', '.join(session['names'])} ...")
            train = split_sequences(dm, "train", "tracks")
            val = split_sequences(dm, "val", "tracks")
            baselines[data_key] = (fit_ngram(train, val, len(dm.vocab), orders), dm)
        baseline, _ = baselines[data_key]
        test = split_sequences(dm, "test", mode)
        scores = [score_ngram(baseline, test, dm.vocab)]
        for label, ckpt, model, own in members:
            log(f"scoring {ckpt} ...")
            s = score_lstm(model, test, label, batch_size)
            h = model.hparams
            s.about = f"{h.num_layers}×{h.hidden_size}, {model.parameter_count():,} params"
            s.detail = {"checkpoint": str(ckpt), "seq_len": own.get("seq_len"),
                        "num_layers": h.num_layers, "hidden_size": h.hidden_size,
                        "params": model.parameter_count()}
            scores.append(s)
        pieces = dm.pieces_per_split()
        tracks = sum(1 for t in dm.tracks if t["split"] == "test")
        evaluations.append(
            Evaluation(
                {
                    "sessions": list(session["names"]),
                    "sessions_dir": str(dm.sessions_dir),
                    "val_fraction": dm.val_fraction,
                    "test_fraction": dm.test_fraction,
                    "instruments": session.get("instruments_filter"),
                    "mode": mode,
                    "seq_len": session.get("seq_len") if mode == "windows" else None,
                    "pieces": pieces,
                    "test_tracks": tracks,
                    "test_sequences": len(test),
                },
                scores,
            )
        )
    return evaluations


def describe(ev: Evaluation) -> str:
    d = ev.data
    framing = (
        "full tracks (<bos> inst_KEY ... <eos>)"
        if d["mode"] == "tracks"
        else f"the DataModule's test windows of seq_len {d['seq_len']}"
    )
    return (
        f"test split of {', '.join(d['sessions'])}: {d['pieces']['test']} pieces, {d['test_tracks']} tracks, "
        f"scored as {framing}; n-gram fitted on {d['pieces']['train']} train pieces, order chosen on "
        f"{d['pieces']['val']} val pieces"
    )


def print_tables(evaluations: Sequence[Evaluation], console=None) -> None:
    """One rich table per test split: the n-gram row, then each checkpoint."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for ev in evaluations:
        table = Table(title=describe(ev), title_justify="left")
        table.add_column("model")
        for col in ("test bits/note", "bits/word", "words", "notes"):
            table.add_column(col, justify="right")
        table.add_column("about")
        for s in ev.scores:
            table.add_row(s.name, f"{s.bits_per_note:.4f}", f"{s.bits_per_word:.4f}",
                          f"{s.words:,}", f"{s.notes:,}", s.about)
        console.print(table)


# ---------------------------------------------------------------------------------------
# music statistics: held-out real pieces vs samples


def checkpoint_session(path: str | Path) -> dict:
    """The ``session`` facts of a checkpoint (a .ckpt file or a run folder), without the model."""
    import torch

    from deeporb.checkpoints import resolve_checkpoint

    p = resolve_checkpoint(path)
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=False)
        return dict(ckpt["hyper_parameters"].get("session") or {})
    except Exception as e:  # a truncated or foreign file: say so in one line
        first = (str(e).splitlines() or [type(e).__name__])[0][:120]
        raise UserError(f"cannot read the session facts of checkpoint {str(p)!r}: {first}") from None


def _session_arg(session: Mapping | str | Path) -> dict:
    if isinstance(session, (str, Path)):
        session = checkpoint_session(session)
    return _session_of(session, "session")


def reference_pieces(
    session: Mapping | str | Path,
    split: str = "test",
    instruments: Iterable[str] | None = None,
    sessions_dir: str | Path | None = None,
    drums: bool = False,
) -> list[dict]:
    """The pieces of one split of a checkpoint's sessions, as note columns on the model's grid.

    ``session`` is a checkpoint's ``hparams.session`` (``SessionDataModule.session_info()``),
    or the checkpoint itself (a path).
    Every track of a source piece (restricted to ``instruments`` when given, drums left out
    unless ``drums``) is concatenated into one piece; notes are quantized exactly as the words
    keep them, so real pieces and samples meet on the same grid. Each piece also carries
    ``piece`` (its id, what :func:`deeporb.data.datamodule.split_of` hashes), ``session``,
    ``instruments`` and ``tracks`` (how many were concatenated). Sorted by (session, piece).
    """
    from deeporb.data.datamodule import SPLITS, split_pieces
    from deeporb.session_store import load_note_file

    session = _session_arg(session)
    if split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    config = EncodingConfig.from_dict(session.get("encoding"))
    wanted = set(instruments) if instruments is not None else None
    root = sessions_dir_of(session, sessions_dir)
    pieces = []
    for name in session["names"]:
        session_dir = root / name
        if not session_dir.is_dir():
            raise UserError(
                f"session {name!r} not found in {root}; re-encode it there or pass the folder that holds it "
                "(sessions_dir=...)"
            )
        found = split_pieces(session_dir, split, session["val_fraction"], session["test_fraction"],
                             session.get("instruments_filter"))
        for piece_id in sorted(found):
            columns: dict[str, list] = {c: [] for c in NOTE_COLUMNS}
            keys = []
            for path in found[piece_id]:
                record = load_note_file(path)
                key = record.get("instrument", path.parent.name)
                if (record.get("is_drum") and not drums) or (wanted is not None and key not in wanted):
                    continue
                notes = quantize(record["notes"], config).to_quarters(config)
                for c in NOTE_COLUMNS:
                    columns[c].append(notes[c])
                keys.append(key)
            if not keys:
                continue
            piece = {c: np.concatenate(columns[c]) for c in NOTE_COLUMNS}
            piece.update(piece=piece_id, session=name, instruments=sorted(set(keys)), tracks=len(keys))
            pieces.append(piece)
    return pieces


def excerpts(piece: Mapping, quarters: float) -> list[dict]:
    """Cut a piece into consecutive excerpts of ``quarters``, each starting at 0.

    Notes belong to the excerpt their onset falls in and are cut at its end. A last excerpt
    shorter than half the length is dropped (unless it is the only one).
    """
    onset = np.asarray(piece["onset"], dtype=np.float64)
    if len(onset) == 0 or quarters <= 0:
        return []
    duration = np.asarray(piece["duration"], dtype=np.float64)
    end = float((onset + duration).max())
    out = []
    k = 0
    while k * quarters < end:
        lo, hi = k * quarters, (k + 1) * quarters
        k += 1
        if out and min(end, hi) - lo < quarters / 2:
            break
        keep = (onset >= lo) & (onset < hi)
        if not keep.any():
            continue
        cut = {c: np.asarray(piece[c])[keep] for c in NOTE_COLUMNS if c in piece}
        cut["onset"] = onset[keep] - lo
        cut["duration"] = np.minimum(duration[keep], hi - onset[keep])
        out.append(cut)
    return out


def beats_per_bar(session: Mapping) -> float:
    """Quarters per bar of the meter the sampler writes: the session's commonest
    representable time signature (4/4 when unknown)."""
    from deeporb.generation.prompts import session_meter

    n, d = session_meter(dict(session), EncodingConfig.from_dict(session.get("encoding"))).signatures[0]
    return 4 * n / d


def _as_piece(sample: Any) -> tuple[dict, list[str] | None, float | None]:
    """A sample as (note columns, its instrument keys or None, its length in quarters or None).

    Accepts a mapping of note columns (or ``{"notes": columns}``), a ``SampleResult`` (its
    ``tracks``; drums left out) or a list of ``Track``.
    """
    length = None
    if isinstance(sample, Mapping):
        cols = sample["notes"] if "onset" not in sample and "notes" in sample else sample
        return {c: np.asarray(cols[c]) for c in NOTE_COLUMNS if c in cols}, None, None
    tracks = getattr(sample, "tracks", sample)
    if hasattr(sample, "bars") and hasattr(sample, "time_signature"):
        n, d = (int(x) for x in str(sample.time_signature).split("/"))
        length = sample.bars * 4 * n / d
    tracks = [t for t in tracks if not getattr(t, "is_drum", False)]
    cols = {
        c: np.concatenate([np.asarray(t.notes[c]) for t in tracks]) if tracks else np.zeros(0)
        for c in ("onset", "duration", "pitch")
    }
    return cols, sorted({t.name for t in tracks}), length


def compare_samples(
    samples: Sequence[Any],
    session: Mapping | str | Path,
    split: str = "test",
    instruments: Iterable[str] | None = None,
    match_length: bool = True,
    sessions_dir: str | Path | None = None,
) -> list[dict]:
    """Music statistics of generated samples against the held-out real pieces of ``split``.

    ``samples``: ``SampleResult`` objects from :func:`deeporb.stages.sample.sample`, lists of
    ``Track``, or note-column mappings. ``session``: the checkpoint's ``hparams.session``, or
    the checkpoint (a path: .ckpt file or run folder).
    Returns :func:`deeporb.evaluation.music_stats.compare_sets` rows (``feature``, ``kind``, ``overlap``,
    ``kl``, means, ...); :func:`deeporb.evaluation.music_stats.format_comparison` prints them.

    * instruments: reference tracks are limited to the instruments the samples play (when
      the samples name them), else to ``instruments``, else all pitched instruments;
    * match_length: reference pieces are cut into excerpts as long as the median sample
      (rounded up to whole bars), since pitch range, pitches used and the like grow with
      length while samples have a fixed number of bars;
    * bars are the session's commonest time signature, the grid its encoding resolution.
    """
    from deeporb.evaluation.music_stats import compare_sets

    if not samples:
        raise UserError("no samples to compare")
    session = _session_arg(session)
    converted = [_as_piece(s) for s in samples]
    pieces = [c[0] for c in converted]
    if instruments is None:
        named = {k for c in converted if c[1] for k in c[1]}
        instruments = sorted(named) if named else None
    bar = beats_per_bar(session)
    resolution = int((session.get("encoding") or {}).get("resolution", 12))
    reference = reference_pieces(session, split, instruments, sessions_dir)
    if not reference:
        raise UserError(
            f"the {split} split of {', '.join(session['names'])} holds no pieces"
            + (f" with {', '.join(instruments)}" if instruments else "")
        )
    if match_length:
        lengths = [
            c[2] if c[2] else float((np.asarray(p["onset"]) + np.asarray(p["duration"])).max(initial=0.0))
            for c, p in zip(converted, pieces, strict=True)
        ]
        quarters = math.ceil(float(np.median(lengths)) / bar - 1e-9) * bar
        reference = [e for p in reference for e in excerpts(p, quarters)] if quarters > 0 else reference
    return compare_sets(pieces, reference, beats_per_bar=bar, resolution=resolution)


def overlap_summary(rows: Sequence[Mapping]) -> dict[str, float]:
    """Mean overlap over the histogram features and over the scalar features (NaN rows skipped)."""
    out = {}
    for kind in ("histogram", "scalar"):
        values = [r["overlap"] for r in rows if r["kind"] == kind and not math.isnan(r["overlap"])]
        out[kind] = float(np.mean(values)) if values else math.nan
    return out


# ---------------------------------------------------------------------------------------
# the command


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m deeporb.evaluation.likelihood CKPT [LABEL=CKPT ...]``: print the likelihood table(s)."""
    parser = argparse.ArgumentParser(
        prog="python -m deeporb.evaluation.likelihood",
        description="Test-split bits per note of checkpoints beside a Kneser-Ney n-gram on the same words.",
    )
    parser.add_argument("checkpoints", nargs="+", metavar="[LABEL=]CKPT",
                        help="a .ckpt file or a training run folder, optionally labelled (seed=outputs/...)")
    parser.add_argument("--mode", choices=MODES, default="tracks",
                        help="score whole test tracks (default) or each checkpoint's test windows")
    parser.add_argument("--orders", type=int, nargs="+", default=list(DEFAULT_ORDERS),
                        help="n-gram orders to choose from on the validation split")
    parser.add_argument("--sessions-dir", default=None,
                        help="where the sessions are, when not where training found them")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    try:
        evaluations = evaluate_checkpoints(
            args.checkpoints, args.mode, args.orders, args.sessions_dir, args.batch_size, args.device,
            log=lambda m: print(m, file=sys.stderr),
        )
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_tables(evaluations)
    if args.json:
        Path(args.json).write_text(json.dumps([e.as_dict() for e in evaluations], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
