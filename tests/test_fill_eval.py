"""Fill likelihoods (deeporb.evaluation.fills): on real chorales, the words of a plain row are
shared out among the parts without loss and hold every note of a gap once; every row divides by
the notes in the gap; a uniform model pays exactly log2 of the vocabulary per word and a model
that knows the words' frequencies pays less; and ``python evaluate.py`` prints a fill table for
score-view checkpoints, fill and left to right, into its JSON rows too."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from test_evaluate import evaluate_command, run_train

from deeporb.data.datamodule import SessionDataModule
from deeporb.encoding.fills import encode_fill
from deeporb.encoding.grammar import KINDS
from deeporb.encoding.score import encode_score
from deeporb.encoding.words import BAR, EncodingConfig, Vocabulary, note_counts
from deeporb.evaluation import fills as F
from deeporb.evaluation.likelihood import split_sequences
from deeporb.evaluation.ngram import NGramLM
from deeporb.model import LSTMGenerator

VOICES = ("soprano", "alto", "tenor", "bass")  # top-down, as the data module orders them
VOCAB = Vocabulary(EncodingConfig(), VOICES, (), 16, True)


@pytest.fixture(scope="module")
def dm(chorale_sessions_dir):
    """The 6 fixture chorales as score rows with fill words and repeated bars folded."""
    dm = SessionDataModule("chorales", str(chorale_sessions_dir), repeat_bars=16, fill_share=0.25)
    dm.prepare_data()
    dm.load()
    assert dm.vocab == VOCAB
    return dm


@pytest.fixture(scope="module")
def pieces(dm) -> list[F.HeldOutPiece]:
    return [p for split in ("train", "val", "test") for p in F.held_out_pieces(dm, split)]


def lstm(bias: np.ndarray | None = None, seed: int = 0) -> LSTMGenerator:
    """A random-weight network; with ``bias`` its output ignores the input: softmax(bias)."""
    torch.manual_seed(seed)
    model = LSTMGenerator(VOCAB.to_dict(), embed_dim=16, hidden_size=24, num_layers=1, dropout=0.0)
    if bias is not None:
        with torch.no_grad():
            model.head.weight.zero_()
            model.head.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return model.eval()


def test_pieces_read_back_into_their_rows_and_every_piece_has_its_gaps(dm, pieces):
    rows = [r for split in ("train", "val", "test") for r in split_sequences(dm, split, "tracks")]
    assert len(pieces) == len(rows) == 6
    for piece, row in zip(pieces, rows, strict=True):
        assert np.array_equal(encode_score(piece.parts, piece.meter, VOCAB, piece.style), row)
        gaps = F.standard_gaps(piece, VOCAB.config)
        [bars4] = gaps["bars4"]
        nbars = len(F.piece_bar_lines(piece, VOCAB.config)) - 1
        assert bars4.parts == tuple(sorted(VOICES)) and len(bars4.bars) == 4 and 1 <= bars4.bars[0] and bars4.bars[-1] <= nbars - 2
        assert [g.parts for g in gaps["part"]] == [(k,) for k in sorted(VOICES)]
        assert all(g.bars == tuple(range(nbars)) for g in gaps["part"])
    assert any((VOCAB.kinds[row] == KINDS.index("rep")).any() for row in rows)  # repeated bars are folded


def test_a_plain_row_is_shared_out_among_the_parts_and_holds_each_gap_note_once(pieces):
    shared_kinds = {KINDS.index(k) for k in ("bos", "eos", "inst", "bar", "ts", "final", "pos")}
    for piece in pieces:
        row = encode_score(piece.parts, piece.meter, VOCAB, piece.style)
        counts = note_counts(row, VOCAB)
        lines = F.piece_bar_lines(piece, VOCAB.config)
        gaps = F.standard_gaps(piece, VOCAB.config)
        total = np.zeros(len(row))
        for gap in gaps["part"]:
            w = F.plain_weights(row, VOCAB, gap)
            assert (w * counts).sum() == pytest.approx(F.gap_notes(piece, gap, lines)) == len(piece.parts[gap.parts[0]])
            total += w
        # every word belongs to one part at most; the words of no part are the shared ones:
        # the header, <eos>, bar, ts_ and the pos_ of onsets where several parts play
        assert total.max() <= 1 + 1e-9
        free = np.flatnonzero(total < 1e-9)
        assert set(VOCAB.kinds[row[free]].tolist()) <= shared_kinds
        rep = VOCAB.kinds[row] == KINDS.index("rep")
        assert np.allclose(total[rep], 1.0) and np.all(total[~rep] % 1 == 0)
        # bars4: every word from the gap's first `bar` to the word before the bar after it
        [gap] = gaps["bars4"]
        w = F.plain_weights(row, VOCAB, gap)
        bars = np.flatnonzero(row == VOCAB.index[BAR])
        span = np.zeros(len(row))
        span[bars[gap.bars[0]] : bars[gap.bars[-1] + 1]] = 1
        assert np.array_equal(w, span)
        assert (w * counts).sum() == F.gap_notes(piece, gap, lines) > 0


def test_a_random_network_gives_finite_bits_over_the_gaps_notes(pieces):
    scores = F.fill_scores([("random", lstm())], pieces, vocab=VOCAB)
    assert [s.how for s in scores] == ["fill", "left to right"]
    lines = [F.piece_bar_lines(p, VOCAB.config) for p in pieces]
    bars4_notes = sum(F.gap_notes(p, F.standard_gaps(p, VOCAB.config)["bars4"][0], ln) for p, ln in zip(pieces, lines, strict=True))
    for s in scores:
        assert s.bars4.gaps == len(pieces) and s.bars4.notes == bars4_notes
        assert {k: g.notes for k, g in s.parts.items()} == {k: sum(len(p.parts[k]) for p in pieces) for k in VOICES}
        for g in [s.bars4, *s.parts.values()]:
            assert math.isfinite(g.bits_per_note) and g.bits_per_note > 0
        assert s.part_bits_per_note == pytest.approx(np.mean([g.bits_per_note for g in s.parts.values()]))
    # the fill's words: all of them for every part (bars4), a part's own for a part (the others given)
    fill = scores[0]
    made = F.fill_sequences(pieces, VOCAB)
    weights = [F.fill_weights(s, h, VOCAB, gap) for _, _, gap, _, s, h in made]
    assert fill.bars4.words + sum(g.words for g in fill.parts.values()) == sum(w.sum() for w in weights)
    for (_, kind, _, _, s, h), w in zip(made, weights, strict=True):
        assert (w == 1).all() if kind == "bars4" else 0 < w.sum() < len(s) - h
    p, gap = pieces[0], F.standard_gaps(pieces[0], VOCAB.config)["bars4"][0]
    head, tail = encode_fill(p.parts, p.meter, VOCAB, gap, p.style)
    assert np.array_equal(made[0][4], np.concatenate([head, tail])) and made[0][5] == len(head)


def test_a_model_that_knows_the_words_frequencies_pays_less_than_a_uniform_one(pieces):
    uniform = lstm(np.zeros(len(VOCAB)))
    per_word = math.log2(len(VOCAB))
    flat = F.fill_scores([("uniform", uniform)], pieces, vocab=VOCAB)
    for s in flat:  # exactly log2(V) bits a word
        for g in [s.bars4, *s.parts.values()]:
            assert g.bits == pytest.approx(g.words * per_word, rel=1e-6)
    words = np.concatenate([*(encode_score(p.parts, p.meter, VOCAB, p.style) for p in pieces),
                            *(s for *_, s, _ in F.fill_sequences(pieces, VOCAB))])
    frequency = np.bincount(words, minlength=len(VOCAB)) + 0.5
    informed = F.fill_scores([("unigram", lstm(np.log(frequency / frequency.sum())))], pieces, vocab=VOCAB)
    for better, worse in zip(informed, flat, strict=True):
        assert better.how == worse.how
        assert better.bars4.notes == worse.bars4.notes
        assert better.bars4.bits_per_note < worse.bars4.bits_per_note
        assert better.part_bits_per_note < worse.part_bits_per_note


def test_the_ngram_scores_the_same_words_left_to_right(dm, pieces):
    train = [s.tolist() for s in split_sequences(dm, "train", "tracks")]
    lm = NGramLM(3, vocab_size=len(VOCAB)).fit(train)
    [ngram] = F.fill_scores([], pieces, lm, "n-gram", VOCAB)
    [_, l2r] = F.fill_scores([("random", lstm())], pieces, vocab=VOCAB)
    assert ngram.how == "left to right"
    assert (ngram.bars4.words, ngram.bars4.notes) == (l2r.bars4.words, l2r.bars4.notes)
    assert {k: (g.words, g.notes) for k, g in ngram.parts.items()} == {k: (g.words, g.notes) for k, g in l2r.parts.items()}
    assert ngram.bars4.bits_per_note < l2r.bars4.bits_per_note  # it learned something; random weights did not


@pytest.fixture(scope="module")
def runs(chorale_sessions_dir, tmp_path_factory) -> dict[str, str]:
    """Two tiny score-view checkpoints on the fixture chorales: one trained with fill examples, one without."""
    tiny = ["data=default", "data.session=chorales", "data.seq_len=96", "data.batch_size=8", "data.transpose=0",
            "model.embed_dim=16", "model.hidden_size=16", "model.num_layers=1", "trainer.max_steps=4",
            "trainer.max_epochs=-1", "trainer.val_check_interval=2", "trainer.check_val_every_n_epoch=null",
            "~callbacks.samples"]
    out = {}
    for name, share in (("fills", 0.5), ("today", 0.0)):
        metrics = run_train(tmp_path_factory.mktemp(name), chorale_sessions_dir, *tiny, f"data.fill_share={share}")
        out[name] = metrics["best_checkpoint"] or metrics["last_checkpoint"]
    return out


def test_evaluate_command_prints_and_writes_the_fill_table(runs, tmp_path):
    out = tmp_path / "rows.json"
    proc = evaluate_command(f"checkpoints={{fills: '{runs['fills']}', today: '{runs['today']}'}}", "orders=[1,2]",
                            f"json='{out}'", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("fills, test split of chorales") == 2  # the two vocabularies: two tables
    lines = [[c.strip() for c in line.split("│")[1:-1]] for line in proc.stdout.splitlines() if line.startswith("│")]
    reads = [(cells[0], cells[1]) for cells in lines if cells[1] in ("fill", "left to right")]
    assert [r for r in reads if not r[0].startswith("n-gram")] == [
        ("fills", "fill"), ("fills", "left to right"), ("today", "left to right")]
    tables = json.loads(out.read_text())
    assert len(tables) == 2
    for table in tables:
        data = table["data"]["fills"]
        assert data["pieces"] == 1 and data["bars4"]["gaps"] == 1 and data["part"]["gaps"] == 4
        ngram, model = table["rows"]
        assert set(ngram["fills"]) == {"left_to_right"}
        assert set(model["fills"]) == ({"fill", "left_to_right"} if model["name"] == "fills" else {"left_to_right"})
        for row in (ngram, model):
            for read in row["fills"].values():
                assert read["bars4"]["notes"] == data["bars4"]["notes"]
                assert sum(p["notes"] for p in read["part"]["parts"].values()) == data["part"]["notes"]
                assert math.isfinite(read["bars4"]["bits_per_note"]) and math.isfinite(read["part"]["bits_per_note"])
    proc = evaluate_command(f"ckpt_path='{runs['today']}'", "orders=[1]", "fills=false", cwd=tmp_path)
    assert proc.returncode == 0 and "fills, test split" not in proc.stdout, proc.stderr[-2000:]
