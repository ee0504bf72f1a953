"""Held-out likelihood: checkpoints beside an n-gram baseline, on the same test words.

:func:`evaluate_checkpoints` scores every checkpoint on the test split of the sessions it was
trained on (the split is a hash of each piece id, so it is the one training held out), and
fits an interpolated Kneser-Ney n-gram on the same sessions' train split, its order (and
plain vs modified discounts) chosen on the validation split. All rows predict exactly the
same target words, so their figures compare (``python evaluate.py`` prints them):

* ``tracks`` (default): every test track whole, ``<bos> inst_KEY w1 ... wn <eos>`` as the
  DataModule frames it, every word after ``<bos>`` predicted once; the LSTM carries its state
  through the whole track, the n-gram sees up to ``order - 1`` words back. Independent of any
  model's ``seq_len``, so checkpoints with different windows (``original`` uses 16) share a table.
* ``windows``: the DataModule's test windows of each checkpoint's ``seq_len`` (what
  ``python train.py train=false test=true ckpt_path=X`` reports as ``test/bits_per_note``):
  they tile each track, every window restarting from ``<bos> inst_KEY``, so both models lose
  their context at window starts and each window adds one ``inst_KEY`` target. Checkpoints
  with different ``seq_len`` get separate tables, each with its n-gram row.

The n-gram is always fitted on whole train tracks and its order chosen on whole val tracks.

``bits_per_note`` is the total negative log2-likelihood of all predicted words divided by the
number of predicted pitch words (notes); ``bits/word`` divides by the predicted words.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deeporb.checkpoints import facts as facts_of
from deeporb.checkpoints import load_generator
from deeporb.data.facts import SessionFacts
from deeporb.encoding.words import Vocabulary, note_counts
from deeporb.errors import UserError
from deeporb.evaluation.ngram import NGramLM, select_order

MODES = ("tracks", "windows")
DEFAULT_ORDERS = tuple(range(1, 11))
LN2 = math.log(2.0)


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


def count_targets(sequences: Iterable[np.ndarray], vocab: Vocabulary, counts=None) -> tuple[int, int]:
    """(predicted words, predicted notes): every id after the first of each sequence. The notes
    each word stands for come from ``counts`` (one array per sequence, :func:`split_note_counts`)
    or, for whole rows, :func:`note_counts`."""
    words = notes = 0
    counts = counts if counts is not None else (note_counts(seq, vocab) for seq in sequences)
    for seq, count in zip(sequences, counts, strict=True):
        words += len(seq) - 1
        notes += int(np.asarray(count)[1:].sum())
    return words, notes


def score_lstm(
    model, sequences: Sequence[np.ndarray], name: str = "lstm", batch_size: int = 32, chunk: int = 1024, counts=None
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
    words, notes = count_targets(sequences, vocab, counts)
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


def score_ngram(baseline: NGramBaseline, sequences: Sequence[np.ndarray], vocab: Vocabulary, counts=None) -> Score:
    bits, count = baseline.lm.total_bits(np.asarray(s).tolist() for s in sequences)
    words, notes = count_targets(sequences, vocab, counts)
    if count != words:  # the n-gram predicts every word after the first, as the LSTM does
        raise AssertionError(f"n-gram scored {count} words, the sequences hold {words} targets")
    val = baseline.val_bits_per_word[baseline.key]
    detail = {"order": baseline.order, "modified": baseline.modified,
              "val_bits_per_word": baseline.val_bits_per_word}
    return Score(baseline.name, bits, words, notes, f"val bits/word {val:.4f}", detail)


# ---------------------------------------------------------------------------------------
# a checkpoint's data


def sessions_dir_of(facts: SessionFacts, sessions_dir: str | Path | None = None) -> Path:
    """Where the sessions live: an explicit override, else where training found them."""
    return Path(sessions_dir).expanduser() if sessions_dir else Path(facts.sessions_dir)


def datamodule_for(facts: SessionFacts, sessions_dir: str | Path | None = None, seq_len: int | None = None):
    """A loaded ``SessionDataModule`` with exactly the checkpoint's sessions, instruments and split."""
    from deeporb.data.datamodule import SessionDataModule

    facts.require_split()
    known = {k: v for k, v in facts.data_settings().items() if v is not None}
    dm = SessionDataModule(**{**known, "sessions_dir": str(sessions_dir_of(facts, sessions_dir)),
                              "seq_len": int(seq_len or facts.seq_len or 256), "encode": None})
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
            for t in dm.rows
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


def split_note_counts(dm, split: str, mode: str = "tracks") -> list[np.ndarray]:
    """The notes each word of :func:`split_sequences` stands for, from the token cache: a
    window's ``rep_K`` may point to a bar before the window, which only the whole row knows."""
    if mode == "tracks":
        return [note_counts(seq, dm.vocab) for seq in split_sequences(dm, split, mode)]
    import torch

    ds = dm.dataset(split)
    parts = ds.datasets if isinstance(ds, torch.utils.data.ConcatDataset) else [ds]
    return [part.window(i, part.notes, 0)[: int((part.window(i) != part.pad_id).sum())]
            for part in parts for i in range(len(part))]


# ---------------------------------------------------------------------------------------
# evaluating checkpoints


@dataclass
class Evaluation:
    """One table: the n-gram and every checkpoint sharing a test split (and framing)."""

    data: dict
    scores: list[Score]

    def as_dict(self) -> dict:
        return {"data": self.data, "rows": [s.as_dict() for s in self.scores]}


def model_label(model, path: Path) -> str:
    """``LSTM 2×256 (RUN/best.ckpt)``: the size, and enough of the path to tell runs apart."""
    h = model.hparams
    where = path.parent.parent.name + "/" + path.name if path.parent.name == "checkpoints" else path.name
    return f"LSTM {h.num_layers}×{h.hidden_size} ({where})"


def _data_key(facts: SessionFacts, vocab: Vocabulary, sessions_dir) -> str:
    return json.dumps(
        {
            "names": list(facts.names),
            "dir": str(sessions_dir_of(facts, sessions_dir)),
            "val": facts.val_fraction,
            "test": facts.test_fraction,
            "instruments": list(facts.instruments_filter) if facts.instruments_filter is not None else None,
            "vocab": vocab.to_dict(),
        },
        sort_keys=True,
    )


def evaluate_checkpoints(
    checkpoints: Iterable[str | Path | tuple[str | None, str | Path]],
    mode: str = "tracks",
    orders: Sequence[int] = DEFAULT_ORDERS,
    sessions_dir: str | Path | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    log=print,
) -> list[Evaluation]:
    """Test-split scores of each checkpoint beside an n-gram on the same split and words.

    ``checkpoints``: paths (a .ckpt file or a run folder), or ``(label, path)`` pairs; a
    ``None`` label becomes :func:`model_label`. Checkpoints that share sessions, split and
    vocabulary (and, in ``windows`` mode, seq_len) share one table and one n-gram row. The
    n-gram is fitted once per data.
    """
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    checkpoints = [item if isinstance(item, tuple) else (None, item) for item in checkpoints]
    if not checkpoints:
        raise UserError("name at least one checkpoint to evaluate")
    groups: dict[str, list] = {}
    for label, path in checkpoints:
        model = load_generator(path, device)
        ckpt = Path(model.checkpoint_path)
        facts = facts_of(model).require_split(f"checkpoint {str(ckpt)!r}")
        key = _data_key(facts, model.vocab, sessions_dir)
        if mode == "windows":
            key += f"|seq_len={facts.seq_len}"
        groups.setdefault(key, []).append((label or model_label(model, ckpt), ckpt, model, facts))

    baselines: dict[str, NGramBaseline] = {}
    evaluations = []
    for key, members in groups.items():
        _, _, first_model, facts = members[0]
        dm = datamodule_for(facts, sessions_dir)
        if dm.vocab != first_model.vocab:
            raise UserError(
                f"the sessions {', '.join(facts.names)} now give a different vocabulary "
                f"({len(dm.vocab)} words, instruments {', '.join(dm.vocab.instruments)}) than the checkpoint "
                f"({len(first_model.vocab)} words); they were re-encoded or edited since training"
            )
        data_key = key.split("|seq_len=")[0]
        if data_key not in baselines:
            log(f"fitting the n-gram on the train split of {', '.join(facts.names)} ...")
            train = split_sequences(dm, "train", "tracks")
            val = split_sequences(dm, "val", "tracks")
            baselines[data_key] = fit_ngram(train, val, len(dm.vocab), orders)
        test, test_notes = split_sequences(dm, "test", mode), split_note_counts(dm, "test", mode)
        scores = [score_ngram(baselines[data_key], test, dm.vocab, test_notes)]
        for label, ckpt, model, own in members:
            log(f"scoring {ckpt} ...")
            s = score_lstm(model, test, label, batch_size, counts=test_notes)
            h = model.hparams
            s.about = f"{h.num_layers}×{h.hidden_size}, {model.parameter_count():,} params"
            s.detail = {"checkpoint": str(ckpt), "seq_len": own.seq_len,
                        "num_layers": h.num_layers, "hidden_size": h.hidden_size,
                        "params": model.parameter_count()}
            scores.append(s)
        evaluations.append(
            Evaluation(
                {
                    "sessions": list(facts.names),
                    "sessions_dir": str(dm.sessions_dir),
                    "val_fraction": dm.val_fraction,
                    "test_fraction": dm.test_fraction,
                    "instruments": dm.instruments_filter,
                    "mode": mode,
                    "seq_len": facts.seq_len if mode == "windows" else None,
                    "pieces": dm.pieces_per_split(),
                    "test_tracks": sum(1 for t in dm.rows if t["split"] == "test"),
                    "test_sequences": len(test),
                },
                scores,
            )
        )
    return evaluations
