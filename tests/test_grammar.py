"""The grammar is declared once (deeporb/encoding/grammar.py) and its two readers agree:
strict decoding (a word-by-word Walk) and the sampler's vectorised masks. Every sequence the
masks allow decodes strictly, and every sequence the encoder writes is one the masks allow."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from midi_factory import make_midi, scale
from torch.overrides import TorchFunctionMode

from deeporb.encoding import grammar
from deeporb.encoding.grammar import FIELDS, KINDS, Walk
from deeporb.encoding.score import decode_score, encode_score, quantize_parts
from deeporb.encoding.words import (
    BAR,
    EOS,
    FINAL,
    PAD,
    DecodeError,
    EncodingConfig,
    Meter,
    Vocabulary,
    decode_words,
    encode_ids,
    quantize,
)
from deeporb.generation.masks import Grammar
from deeporb.instruments import instrument_key
from deeporb.midi import read_midi

ROOT = Path(__file__).resolve().parents[1]
SMALL = EncodingConfig(resolution=4, max_bar_quarters=4, velocity_bins=4, exact_duration_quarters=2,
                       max_duration_quarters=4)
INSTRUMENTS = ("alto", "bass", "drums", "soprano")
VOCAB = Vocabulary(SMALL, INSTRUMENTS, ("bach",), repeat_bars=2, final_bar=True)  # rep_1, rep_2, final: walks use them too


def kind_value(vocab: Vocabulary, token: int) -> tuple[str, int]:
    return KINDS[vocab.kinds[token]], int(vocab.values[token])


def assert_same_state(walk: Walk, s, context) -> None:
    """Both readers hold the same integer fields and ensemble after the same words."""
    assert s.values[0, : len(FIELDS)].tolist() == walk.state[: len(FIELDS)], context
    assert s.ensemble[0].tolist() == walk.ensemble.tolist(), context


def sampler_may(vocab: Vocabulary, walk: Walk, state, target: int, limit: int) -> set[int]:
    """What the Walk allows next, then the sampler's policy (the only rules masks.py adds)."""
    allowed = {t for t in range(len(vocab)) if walk.refusal(*kind_value(vocab, t)) is None}
    allowed -= set(range(*vocab.blocks["ts"]))  # the meter comes from the prompt
    if int(state.bars) < target:
        allowed.discard(vocab.index[EOS])
    closes = vocab.index[BAR] in allowed or (int(state.may_open) < 1 and vocab.index[EOS] in allowed)  # a final bar
    if int(state.bar_words) >= limit and closes:
        allowed &= {vocab.index[BAR], vocab.index[EOS]}
    final = vocab.index.get(FINAL)
    if final in allowed:  # `final` from bar min_target (= target) on, and bar target is final
        allowed = {final} if int(state.bars) >= target else allowed - {final}
    return allowed


def random_walk(vocab, view, prompt: list[str], target: int, limit: int, seed: int) -> list[str]:
    """Words drawn at random through the masks (a kind first, ``bar`` seldom so that bars fill
    up, then a word of it), checking at every step that the masks allow exactly what the Walk
    and the sampler's policy allow, from the same state."""
    rng = np.random.default_rng(seed)
    g = Grammar(vocab, max_bar_words=limit, view=view)
    walk = Walk(view, len(vocab.instruments), SMALL.bar_steps(4, 4), vocab.final_bar)
    ids = [int(i) for i in vocab.ids(prompt)]
    s = g.state_after(ids, SMALL.bar_steps(4, 4))
    for t in ids:
        walk.step(*kind_value(vocab, t))
    for _ in range(5000):
        assert_same_state(walk, s, vocab.decode_ids(ids[-8:]))
        mask = g.mask(s, target)[0]
        allowed = set(torch.nonzero(mask)[:, 0].tolist())
        assert allowed == sampler_may(vocab, walk, s, target, limit), vocab.decode_ids(ids)
        kinds = sorted({int(vocab.kinds[t]) for t in allowed})
        weights = np.array([0.1 if KINDS[k] == "bar" else 1.0 for k in kinds])
        kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
        token = int(rng.choice([t for t in sorted(allowed) if vocab.kinds[t] == kind]))
        if bool(g.advance(s, torch.tensor([token]), target)):
            return vocab.decode_ids(ids)
        walk.step(*kind_value(vocab, token))
        ids.append(token)
    raise AssertionError("the walk did not finish")


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([
    ["<bos>", "inst_bass"],
    ["<bos>", "style_bach", "inst_drums", "bar", "ts_3/4"],
    ["<bos>", "inst_soprano", "bar", "ts_6/8", "pos_3", "vel_1", "C4", "dur_2"],
]))
def test_every_tracks_walk_the_masks_allow_decodes_strictly(seed, prompt):
    words = random_walk(VOCAB, "tracks", prompt, target=3, limit=24, seed=seed)
    grid, meter = decode_words(words, VOCAB, strict=True)
    assert words.count(BAR) == 3 and PAD not in words
    if "ts_6/8" in prompt:
        assert meter.signatures == [(6, 8)] and np.all(grid.onset < 3 * 12)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([
    ["<bos>"],
    ["<bos>", "style_bach"],
    ["<bos>", "inst_alto", "inst_drums", "bar", "ts_3/4"],
    ["<bos>", "inst_bass", "inst_soprano", "bar", "ts_2/4", "pos_1", "inst_bass", "vel_0", "C2", "dur_1"],
]))
def test_every_score_walk_the_masks_allow_decodes_strictly(seed, prompt):
    words = random_walk(VOCAB, "score", prompt, target=3, limit=30, seed=seed)
    parts, _ = decode_score(words, VOCAB, strict=True)
    header = [w[5:] for w in words[: words.index(BAR)] if w.startswith("inst_")]
    assert list(parts) == header == sorted(set(header))  # the ensemble, in score order (VOCAB: by key), once each
    named = [w[5:] for w in prompt[: prompt.index(BAR)] if w.startswith("inst_")] if BAR in prompt else []
    if named:  # a prompt's ensemble is exactly who may play
        assert header == named
        assert {w[5:] for w in words if w.startswith("inst_")} <= set(named)


def tracks_and_scores(path: Path, vocab: Vocabulary, key_mode: str):
    """A MIDI file's sequences in both views, as the data module frames them."""
    piece = read_midi(path)
    keys = [instrument_key(key_mode, t.program, t.is_drum, t.name) for t in piece.tracks]
    seqs = []
    meter = Meter.from_changes(piece.time_signatures, vocab.config)
    for key, track in zip(keys, piece.tracks, strict=True):
        body = encode_ids(quantize(track.notes, vocab.config), meter, vocab, final=True)
        seqs.append(("tracks", np.concatenate([vocab.header_ids([key]), body, [vocab.index[EOS]]])))
    parts = quantize_parts(((k, t.notes) for k, t in zip(keys, piece.tracks, strict=True)), vocab.config)
    seqs.append(("score", encode_score(parts, meter, vocab)))
    return seqs


def assert_allowed_word_by_word(vocab: Vocabulary, view: str, ids: np.ndarray) -> None:
    """The Walk accepts every word; the masks allow every word but ``ts`` (policy: prompts)."""
    g = Grammar(vocab, view=view)
    walk = Walk(view, len(vocab.instruments), vocab.config.bar_steps(4, 4), vocab.final_bar)
    s = g.fresh(1, vocab.config.bar_steps(4, 4))
    for i, t in enumerate(ids.tolist()):
        kind, value = kind_value(vocab, t)
        assert walk.refusal(kind, value) is None, (i, vocab.decode_ids(ids[max(0, i - 8) : i + 1]))
        if kind != "ts":
            assert g.mask(s, target=0)[0, t], (i, vocab.decode_ids(ids[max(0, i - 8) : i + 1]))
        walk.step(kind, value)
        g.advance(s, torch.tensor([t]))
        assert_same_state(walk, s, i)


def test_real_chorales_are_allowed_word_by_word_in_both_views(chorale_midi_dir):
    vocab = Vocabulary(EncodingConfig(), ("alto", "bass", "soprano", "tenor"), repeat_bars=16, final_bar=True)
    files = sorted(chorale_midi_dir.glob("*.mid"))[:3]
    for path in files:
        for view, ids in tracks_and_scores(path, vocab, "name"):
            assert_allowed_word_by_word(vocab, view, ids)


def test_built_midi_with_drums_repeated_notes_and_meter_changes_is_allowed(tmp_path):
    """Repeated (onset, pitch) pairs, a drum kit, a long silence, a velocity change inside a
    chord and a change of meter: all as the encoder writes them."""
    twice = [(0, 480, 60, 90), (0, 960, 60, 90), (0, 480, 64, 40), (480, 960, 67, 90)]
    drums = [(t, t + 120, p, v) for t in range(0, 480 * 8, 240) for p, v in ((36, 100), (42, 60))]
    late = scale(start=480 * 40, pitches=(72, 71, 72))
    path = make_midi(tmp_path / "built.mid", [
        {"name": "piano", "program": 0, "notes": twice + late},
        {"name": "kit", "program": 0, "is_drum": True, "notes": drums},
        {"name": "bass", "program": 32, "notes": scale(pitches=(36, 36, 43))},
    ], time_signatures=[(0, 4, 4), (480 * 8, 3, 4)])
    vocab = Vocabulary(EncodingConfig(), ("acoustic_bass", "acoustic_grand_piano", "drums"), repeat_bars=16,
                       final_bar=True)
    for view, ids in tracks_and_scores(path, vocab, "program"):
        assert_allowed_word_by_word(vocab, view, ids)


@pytest.mark.parametrize(("view", "words", "broken"), [
    ("score", "<bos> inst_alto bar pos_0 inst_bass vel_1 C4 dur_1", "header named"),
    ("score", "<bos> inst_alto inst_bass bar pos_0 inst_bass vel_1 C4 dur_1 inst_alto C4 dur_1", "score order"),
    ("score", "<bos> inst_bass inst_alto bar", "score order"),
    ("score", "<bos> inst_alto bar pos_0 vel_1 C4 dur_1", "cannot follow pos"),
    ("score", "<bos> inst_alto bar pos_0 inst_alto vel_1 C4 dur_1 inst_alto", "score order"),
    ("score", "bar pos_0", "cannot follow start"),
    ("tracks", "<bos> inst_alto inst_bass bar", "cannot follow inst"),
    ("tracks", "bar pos_0 vel_1 E4 dur_1 C4 dur_1", "do not fall"),
    ("tracks", "bar pos_0 vel_1 C4 dur_1 vel_1 C4 dur_1", "changes the velocity"),
    ("tracks", "bar pos_0 C4 dur_1", "vel_"),
    ("tracks", "bar final pos_0 vel_1 C4 dur_1 <eos> junk", None),  # reading stops at <eos>
    ("tracks", "bar pos_0 vel_1 C4 dur_1 <eos>", "only after its final bar"),
    ("tracks", "bar pos_0 vel_1 C4 dur_1", "only after its final bar"),  # words that stop must stop there too
    ("tracks", "bar final pos_0 vel_1 C4 dur_1 bar", "no bar follows"),
    ("tracks", "bar ts_3/4 final final", "cannot follow final"),
    ("score", "<bos> inst_alto bar ts_3/4 final <eos>", None),  # an empty last bar keeps its rest
    ("tracks", "bar pos_0 vel_1 <eos>", "cannot follow vel"),
    ("tracks", "bar pos_0 vel_1", "may not end here"),
    ("tracks", "bar rep_1", "bar K back exists"),  # no bar before the first
    ("tracks", "bar pos_0 vel_1 C4 dur_1 bar rep_2", "bar K back exists"),
    ("tracks", "bar ts_3/4 pos_0 vel_1 C4 dur_1 bar ts_2/4 rep_1", "same meter"),
    ("tracks", "bar pos_0 vel_1 C4 dur_1 bar rep_1 pos_0", "cannot follow rep"),
    ("tracks", "bar pos_0 vel_1 C4 dur_1 bar rep_1 bar pos_0 C4 dur_1", "vel_"),  # velocity unknown after a repeat
    ("score", "<bos> inst_alto bar pos_0 inst_alto vel_1 C4 dur_1 bar rep_1 bar final rep_2 <eos>", None),
])
def test_strict_decoding_names_the_broken_rule(view, words, broken):
    decode = decode_score if view == "score" else decode_words
    if broken is None:
        decode(words, VOCAB)
        return
    with pytest.raises(DecodeError, match=broken):
        decode(words, VOCAB)
    decode(words, VOCAB, strict=False)  # lenient: the refused words are dropped


def test_a_new_condition_in_the_table_reaches_both_readers(monkeypatch):
    """Extending the grammar is one row: forbid the top octave and neither reader allows it."""
    monkeypatch.setitem(grammar.CONDITIONS, "low", grammar.Condition("pitch", "<", "bar_len", "below the bar length"))
    with pytest.raises(DecodeError, match="below the bar length"):
        decode_words("bar pos_0 vel_1 C4 dur_1", VOCAB)  # 60 >= 16 steps (4/4 at resolution 4)
    g = Grammar(VOCAB)
    s = g.state_after([int(i) for i in VOCAB.ids("<bos> inst_alto bar pos_0 vel_1")], 16)
    allowed = {VOCAB.words[t] for t in torch.nonzero(g.mask(s, 10)[0])[:, 0].tolist()}
    assert "C0" in allowed and "C4" not in allowed


class IntegerProducts(TorchFunctionMode):
    """Records matrix products of integer tensors: CUDA has none (its BLAS is floating point)."""

    PRODUCTS = {"matmul", "__matmul__", "__rmatmul__", "mm", "bmm", "mv", "addmm", "addmv", "addbmm", "baddbmm",
                "einsum", "dot", "tensordot"}

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = getattr(func, "__name__", "")
        if name in self.PRODUCTS and any(isinstance(a, torch.Tensor) and not a.is_floating_point() for a in args):
            self.found.append(name)
        return func(*args, **(kwargs or {}))


def test_the_masks_use_no_integer_matrix_product_so_they_run_on_cuda_too():
    with IntegerProducts() as products:
        random_walk(VOCAB, "score", ["<bos>", "inst_alto", "inst_drums", "bar"], target=2, limit=30, seed=0)
        random_walk(VOCAB, "tracks", ["<bos>", "inst_bass", "bar"], target=2, limit=24, seed=0)
    assert products.found == []


def test_the_scalar_reader_compiles_the_tables_once_per_view(monkeypatch):
    """A Walk per sequence (strict decoding makes one for every file) shares one compiled
    reader; a table changed while running is compiled afresh."""
    assert Walk("score", 4, 48).tables is Walk("score", 2, 12).tables
    assert Walk("tracks", 4, 48).tables is not Walk("score", 4, 48).tables
    before = Walk("tracks", 4, 48).tables
    monkeypatch.setitem(grammar.CONDITIONS, "low", grammar.Condition("pitch", "<", "bar_len", "below the bar length"))
    assert Walk("tracks", 4, 48).tables is not before
    with pytest.raises(ValueError, match="unknown view 'piano'"):
        Walk("piano", 4, 48)


def test_docs_print_the_grammar_tables():
    assert grammar.markdown() in (ROOT / "docs" / "words.md").read_text()
