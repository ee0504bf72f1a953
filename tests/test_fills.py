"""Fills (issue 20): a piece with marked gaps, then their contents. The words are the grammar's
(both readers agree on random walks through fill sequences), a fill sequence decodes into the
piece, sampling a fill keeps every note outside the gap exactly as the file had it (at the
piece's start, middle and end), an added part plays, bad requests are one clear error, training
mixes fill examples in, and a model trained briefly fills from what surrounds the gap."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from midi_factory import make_midi
from test_grammar import SMALL, assert_same_state, kind_value, random_walk
from trained import small_model, train_briefly

from deeporb.data.fill_examples import fill_example
from deeporb.encoding.fills import LOOKAHEAD, Gap, encode_fill
from deeporb.encoding.grammar import KINDS, View, Walk
from deeporb.encoding.score import decode_score, encode_score, quantize_parts
from deeporb.encoding.words import (
    BAR,
    EOS,
    FILL,
    GRID_COLUMNS,
    HOLE,
    EncodingConfig,
    GridNotes,
    Meter,
    Vocabulary,
    note_counts,
)
from deeporb.errors import UserError
from deeporb.generation.compose import Fill, Settings, compose, generate_plans, plan
from deeporb.generation.forced import kept_notes
from deeporb.generation.loop import generate
from deeporb.generation.masks import Grammar
from deeporb.generation.prompts import MAX_PRIMER_BARS, load_primer
from deeporb.midi import read_midi
from deeporb.model import LSTMGenerator
from deeporb.stages.sample import RenderConfig, SampleConfig, sample

VOICES = ("soprano", "alto", "tenor", "bass")  # top-down, as the data module orders them
FILLS = Vocabulary(SMALL, ("alto", "bass", "drums", "soprano"), ("bach",), repeat_bars=2, fills=True, final_bar=True)


# ---------------------------------------------------------------------------------------
# the words


def scalar_walk(vocab: Vocabulary, seed: int, most: int = 400) -> list[str]:
    """Words drawn at random through the scalar reader alone (Walk.refusal), holes and fills
    included: a kind first (``bar`` and ``<eos>`` seldom), then a word of it."""
    rng = np.random.default_rng(seed)
    walk = Walk("score", len(vocab.instruments), vocab.config.bar_steps(4, 4), vocab.final_bar)
    words = []
    for _ in range(most):
        allowed = [t for t in range(len(vocab)) if walk.refusal(*kind_value(vocab, t)) is None
                   and KINDS[vocab.kinds[t]] not in ("pad", "unk")]
        kinds = sorted({int(vocab.kinds[t]) for t in allowed})
        weights = np.array([{"bar": 0.3, "eos": 0.05, "hole": 2.0, "fill": 0.5, "final": 0.1}.get(KINDS[k], 1.0) for k in kinds])
        kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]
        token = int(rng.choice([t for t in allowed if vocab.kinds[t] == kind]))
        words.append(vocab.words[token])
        if words[-1] == EOS:
            return words
        walk.step(*kind_value(vocab, token))
    return words


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_random_walks_through_fill_sequences_decode_and_each_fill_bar_lands_in_its_hole(seed):
    words = scalar_walk(FILLS, seed)
    if words[-1] != EOS:
        return  # a walk that did not end in time has nothing to decode
    parts, meter = decode_score(words, FILLS, strict=True)
    assert words.count(FILL) <= 1
    holes = [i for i, w in enumerate(words) if w == HOLE]
    if FILL in words:
        assert holes and words[words.index(FILL) + 1 :].count(BAR) == len(holes)  # one bar per hole
    # the masks agree with the scalar reader word by word on the same walk
    g, walk = Grammar(FILLS, view="score"), Walk("score", len(FILLS.instruments), SMALL.bar_steps(4, 4), True)
    s = g.fresh(1, SMALL.bar_steps(4, 4))
    for i, w in enumerate(words[:-1]):
        t = FILLS.index[w]
        kind, value = kind_value(FILLS, t)
        if kind not in ("ts", "hole", "fill"):  # policy: those come from prompts
            assert g.mask(s, target=0)[0, t], (i, words[max(0, i - 8) : i + 1])
        walk.step(kind, value)
        g.advance(s, torch.tensor([t]))
        assert_same_state(walk, s, i)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([
    (["<bos>", "inst_alto", "inst_bass", "bar", "ts_4/4", "pos_0", "inst_bass", "vel_1", "C2", "dur_1", "bar", "hole",
      "bar", "hole", "bar", "pos_0", "inst_alto", "C3", "dur_1", "fill", "inst_alto", "inst_bass", "bar"], 2),
    (["<bos>", "style_bach", "inst_alto", "inst_soprano", "bar", "ts_3/4", "hole", "fill", "inst_alto",
      "inst_soprano", "bar"], 1),
]))
def test_every_fill_the_masks_allow_decodes_with_one_bar_per_hole_and_only_the_fills_parts(seed, prompt_holes):
    prompt, holes = prompt_holes
    words = random_walk(FILLS, "score", prompt, target=holes, limit=30, seed=seed)
    parts, _ = decode_score(words, FILLS, strict=True)
    fill = words[words.index(FILL) + 1 :]
    named = [w for w in fill[: fill.index(BAR)]]
    assert fill.count(BAR) == holes
    assert {w for w in fill[fill.index(BAR) :] if w.startswith("inst_")} <= set(named)


# ---------------------------------------------------------------------------------------
# fill sequences of real chorales


def chorale_parts(path, vocab):
    piece = read_midi(path)
    meter = Meter.from_changes(piece.time_signatures, vocab.config)
    return quantize_parts(((t.name.lower(), t.notes) for t in piece.tracks), vocab.config), meter


def test_a_fill_sequence_of_a_real_chorale_decodes_into_the_piece_at_its_start_middle_and_end(chorale_midi_dir):
    """...up to LOOKAHEAD bars past the gap, where the sequence stops reading the piece."""
    vocab = Vocabulary(EncodingConfig(), VOICES, repeat_bars=16, fills=True)
    for path in sorted(chorale_midi_dir.glob("*.mid"))[:4]:
        parts, meter = chorale_parts(path, vocab)
        whole = decode_score(vocab.decode_ids(encode_score(parts, meter, vocab)), vocab)[0]
        nbars = encode_score(parts, meter, vocab).tolist().count(vocab.index[BAR])
        lines, _ = meter.bar_lines(nbars * 96, vocab.config)
        for gap in (Gap((0, 1, 2, 3), VOICES), Gap((nbars // 2,), ("alto", "tenor")),
                    Gap((nbars - 2, nbars - 1), ("bass",)), Gap(tuple(range(nbars)), ("alto", "bass", "tenor"))):
            head, fill = encode_fill(parts, meter, vocab, gap)
            got = decode_score(vocab.decode_ids(np.concatenate([head, fill])), vocab)[0]
            end = lines[min(gap.bars[-1] + 1 + LOOKAHEAD, len(lines) - 1)]
            for voice in VOICES:
                g, w = got[voice], whole[voice]
                assert g == GridNotes(*(getattr(w, c)[w.onset < end] for c in GRID_COLUMNS)), (gap, voice)
            assert head.tolist().count(vocab.index[HOLE]) == len(gap.bars)
            assert vocab.decode_ids(head[-5:]) == ["fill", *(f"inst_{v}" for v in VOICES)]  # the fill writes bars whole


def test_a_fill_bar_that_repeats_an_earlier_bar_of_the_piece_is_one_rep_word_and_decodes_back(chorale_midi_dir):
    """Left to right a bar equal to one up to 16 back is one ``rep_K`` word; in a fill too, the
    bar K back being before the gap or one the fill wrote, so every 4-bar gap of these chorales
    reads back into its piece."""
    vocab = Vocabulary(EncodingConfig(), VOICES, repeat_bars=16, fills=True)
    first, end = vocab.rep_ids
    repeats = 0
    for path in sorted(chorale_midi_dir.glob("*.mid"))[:6]:
        parts, meter = chorale_parts(path, vocab)
        row = encode_score(parts, meter, vocab)
        whole = decode_score(vocab.decode_ids(row), vocab)[0]
        nbars = row.tolist().count(vocab.index[BAR])
        lines, _ = meter.bar_lines(nbars * 96, vocab.config)
        for start in range(nbars - 4):
            gap = Gap(tuple(range(start, start + 4)), VOICES)
            head, fill = encode_fill(parts, meter, vocab, gap, lookahead=0)
            repeats += int(((fill >= first) & (fill < end)).sum())
            got = decode_score(vocab.decode_ids(np.concatenate([head, fill])), vocab)[0]
            for voice in VOICES:
                w = whole[voice]
                assert got[voice] == GridNotes(*(getattr(w, c)[w.onset < lines[start + 4]] for c in GRID_COLUMNS))
            assert note_counts(np.concatenate([head, fill]), vocab).sum() == sum(len(g) for g in got.values())
    assert repeats >= 10


def test_training_fill_examples_fit_the_window_and_hold_every_hole_they_mark(chorale_midi_dir):
    vocab = Vocabulary(EncodingConfig(), VOICES, repeat_bars=16, fills=True)
    parts, meter = chorale_parts(sorted(chorale_midi_dir.glob("*.mid"))[0], vocab)
    rng = np.random.default_rng(0)
    for width in (96, 257, 1025):
        for _ in range(30):
            ids = fill_example(parts, meter, vocab, None, width, rng)
            if ids is None:
                continue
            assert len(ids) <= width and ids[-1] == vocab.index[EOS]
            words = vocab.decode_ids(ids)
            fill = words.index(FILL)
            assert words[:fill].count(HOLE) == words[fill:].count(BAR) >= 1


# ---------------------------------------------------------------------------------------
# sampling a fill


def fill_model(seed: int = 0, keys=VOICES, final_bar: bool = False) -> LSTMGenerator:
    torch.manual_seed(seed)
    vocab = Vocabulary(EncodingConfig(), keys, (), 16, True, final_bar)
    session = {"view": "score", "qpm_median": 100.0, "time_signatures": {"4/4": 2}, "instrument_key": "name",
               "instruments": {k: {"program": 52, "is_drum": False} for k in keys}}
    return LSTMGenerator(vocab.to_dict(), embed_dim=16, hidden_size=32, num_layers=1, dropout=0.0,
                         session=session).eval()


def notes_outside(tracks, name: str, lines: np.ndarray, bars: range) -> list[tuple]:
    """A part's notes (onset, duration, pitch, velocity) whose onset is outside ``bars``."""
    out = []
    for t in tracks:
        if t.name.lower() != name:
            continue
        bar = np.searchsorted(lines, t.notes["onset"] * 12 + 1e-6, side="right") - 1
        out += [tuple(float(t.notes[c][i]) for c in ("onset", "duration", "pitch", "velocity"))
                for i in np.flatnonzero(~np.isin(bar, list(bars)))]
    return sorted(out)


@pytest.mark.parametrize(("where", "final_bar"), [("start", False), ("middle", False), ("end", False), ("end", True)])
def test_a_fill_keeps_every_note_outside_the_gap_exactly_as_the_file_had_it(chorale_midi_dir, where, final_bar):
    model = fill_model(final_bar=final_bar)  # with `final`, the piece's last bar says so before the fill
    path = sorted(chorale_midi_dir.glob("*.mid"))[1]
    primer = load_primer(path, model.vocab, MAX_PRIMER_BARS, "name")
    n = primer.bars
    first = {"start": 1, "middle": n // 2 - 1, "end": n - 2}[where]
    fill = Fill(parts=["alto", "tenor"], bars=[first, first + 2])
    pieces = compose(model, Settings(fill=fill, seed=5), 3, primer)
    lines = np.arange(n + 2) * 48  # the chorales are in 4/4
    gap = range(first - 1, first + 2)
    original = read_midi(path).tracks
    for piece in pieces:
        assert piece.bars == n and [t.name for t in piece.tracks] == ["soprano", "alto", "tenor", "bass"]
        for voice in VOICES:
            inside = gap if voice in fill.parts else range(0)
            assert notes_outside(piece.tracks, voice, lines, inside) == notes_outside(original, voice, lines, inside)
        for voice in fill.parts:  # the fill wrote its parts inside the gap only, and played
            track = next(t for t in piece.tracks if t.name == voice)
            bar = np.searchsorted(lines, track.notes["onset"] * 12 + 1e-6, side="right") - 1
            assert np.isin(gap, bar).any()
    assert len({tuple(p.tracks[1].notes["pitch"]) for p in pieces}) > 1  # three samples, drawn afresh


@pytest.mark.parametrize(("candidates", "final_bar"), [(1, False), (6, False), (1, True)])
def test_the_words_a_fill_writes_give_the_parts_it_keeps_note_for_note_at_their_onsets(chorale_midi_dir, candidates,
                                                                                        final_bar):
    """The fill's bars are written whole: the kept parts' notes stand in them as the primer has
    them (given to the sampler word by word), the asked parts are the model's, also when one
    fill is drawn among several candidates, and with `final` (a harmonized piece's last bar is
    final, as the sampler makes bar `bars`)."""
    model = fill_model(seed=3, final_bar=final_bar)
    primer = load_primer(sorted(chorale_midi_dir.glob("*.mid"))[3], model.vocab, MAX_PRIMER_BARS, "name")
    for fill in (Fill(parts=["alto", "tenor", "bass"], candidates=candidates),
                 Fill(parts=["tenor"], bars=[2, 5], candidates=candidates)):
        planned = plan(model, Settings(fill=fill, seed=4), 4, primer)
        gap = planned.gap
        start, end = gap.bars[0] * 48, (gap.bars[-1] + 1) * 48  # 4/4
        for prompt, row in zip(planned.prompts, generate_plans(model, [planned])[0], strict=True):
            words = model.vocab.decode_ids(prompt + row)
            written, _ = decode_score(words, model.vocab, strict=True)
            assert words.count("final") == int(final_bar and (gap.bars[-1] + 2 >= primer.bars or fill.bars is None))
            for voice in VOICES:
                g = written[voice]
                inside = GridNotes(*(getattr(g, c)[(g.onset >= start) & (g.onset < end)] for c in GRID_COLUMNS))
                p = primer.parts[voice]
                given = GridNotes(*(getattr(p, c)[(p.onset >= start) & (p.onset < end)] for c in GRID_COLUMNS))
                if voice not in fill.parts:
                    assert inside == given, voice
                elif candidates == 1:  # (an untrained model's likeliest fills may rest: the kept words cost least)
                    assert len(inside) and inside != given


def test_the_weights_are_the_probability_the_model_gave_the_kept_notes(chorale_midi_dir):
    """A row that keeps nothing weighs 0 (log 1); one that keeps the soprano weighs the log of a
    probability below 1, different for each fill."""
    model = fill_model(seed=2)
    primer = load_primer(sorted(chorale_midi_dir.glob("*.mid"))[0], model.vocab, MAX_PRIMER_BARS, "name")
    harmonize = plan(model, Settings(fill=Fill(parts=["alto", "tenor", "bass"]), seed=1), 1, primer)
    everything = plan(model, Settings(fill=Fill(bars=[2, 3]), seed=1), 1, primer)
    for planned, keeps in ((harmonize, True), (everything, False)):
        weights: list[float] = []
        generate(model, planned.prompts * 3, 1, planned.bars[0], view=View.SCORE, kept=[planned.kept] * 3,
                 weights=weights)
        assert len(weights) == 3 and all(math.isfinite(w) for w in weights)
        assert (all(w < -1.0 for w in weights) and len(set(weights)) == 3) if keeps else weights == [0.0] * 3


def test_a_fill_may_repeat_a_bar_only_where_the_bar_holds_the_same_kept_notes(chorale_midi_dir):
    """A model that would repeat a bar wherever it may: a fill of every part repeats bars, a fill
    of two parts repeats only bars whose soprano and bass are this bar's (a repeat copies every
    part), so the kept notes still come back exactly."""
    model = fill_model(seed=6)
    vocab = model.vocab
    with torch.no_grad():
        model.head.bias[slice(*vocab.rep_ids)] += 30.0
    asked = ["alto", "tenor"]
    found = [(primer, first) for primer in (load_primer(p, vocab, MAX_PRIMER_BARS, "name")
                                            for p in sorted(chorale_midi_dir.glob("*.mid")))
             for first in range(1, primer.bars - 4)
             if any(kept_notes(primer.parts, primer.meter, vocab, Gap(tuple(range(first, first + 4)), asked)).repeats)]
    primer, first = found[0]
    start, end = first * 48, (first + 4) * 48  # 4/4
    for parts in (list(VOICES), asked):
        planned = plan(model, Settings(fill=Fill(parts=parts, bars=[first + 1, first + 4]), seed=2), 2, primer)
        for prompt, row in zip(planned.prompts, generate_plans(model, [planned])[0], strict=True):
            words = vocab.decode_ids(prompt + row)
            assert any(w.startswith("rep_") for w in words[words.index(FILL):])
            written, _ = decode_score(words, vocab, strict=True)
            for voice in set(VOICES) - set(parts):
                got, given = (GridNotes(*(getattr(x, c)[(x.onset >= start) & (x.onset < end)] for c in GRID_COLUMNS))
                              for x in (written[voice], primer.parts[voice]))
                assert got == given and len(given), voice


def test_a_part_the_primer_lacks_is_added_and_plays_in_every_sample(chorale_midi_dir, tmp_path):
    model = fill_model(seed=1)
    path = sorted(chorale_midi_dir.glob("*.mid"))[2]
    tracks = read_midi(path).tracks
    solo = make_midi(tmp_path / "melody.mid", [
        {"name": "soprano", "program": 52,
         "notes": [(int(o * 480), int((o + d) * 480), int(p), int(v)) for o, d, p, v in zip(
             *(tracks[0].notes[c] for c in ("onset", "duration", "pitch", "velocity")), strict=True)]}])
    results = sample(SampleConfig(primer=str(solo), fill=Fill(parts=["alto", "tenor", "bass"]), num_samples=2,
                                  seed=2, out_dir=str(tmp_path / "out"), render=RenderConfig(piano_roll=False, page=False)),
                     model=model)
    for r in results:
        assert [t.name for t in r.tracks] == ["soprano", "alto", "tenor", "bass"]
        assert all(len(t) for t in r.tracks)  # each added part plays
        assert np.allclose(r.tracks[0].notes["onset"], tracks[0].notes["onset"])  # the melody is kept


def test_fill_requests_the_checkpoint_cannot_honour_are_one_clear_error(chorale_midi_dir, tmp_path):
    model = fill_model()
    path = sorted(chorale_midi_dir.glob("*.mid"))[0]
    primer = load_primer(path, model.vocab, MAX_PRIMER_BARS, "name")
    cases = [
        (Fill(bars=[1, 2]), None, "pass primer="),
        (Fill(bars=[0, 2]), primer, "must lie in the primer's bars"),
        (Fill(bars=[3, 2]), primer, "first <= last"),
        (Fill(bars=[1, primer.bars + 1]), primer, f"1 to {primer.bars}"),
        (Fill(bars=[1, 2, 3]), primer, r"\[first, last\]"),
        (Fill(parts=["piano"]), primer, "does not know"),
        (Fill(parts=[]), primer, "names no part"),
    ]
    for fill, given_primer, message in cases:
        with pytest.raises(UserError, match=message):
            compose(model, Settings(fill=fill, seed=0), 1, given_primer)
    plain = fill_model()
    plain.vocab = Vocabulary(EncodingConfig(), VOICES, (), 16, False)
    with pytest.raises(UserError, match="cannot fill"):
        compose(plain, Settings(fill=Fill(bars=[1, 2]), seed=0), 1, primer)


def test_a_primer_longer_than_a_fill_reads_says_so(tmp_path, capsys):
    model = fill_model(keys=("alto", "soprano"))
    bar = 4 * 480
    notes = [(b * bar, b * bar + 480, 72, 80) for b in (0, 1, 2, MAX_PRIMER_BARS + 5)]
    path = make_midi(tmp_path / "long.mid", [{"name": "soprano", "program": 52, "notes": notes}])
    results = sample(SampleConfig(primer=str(path), fill=Fill(parts=["alto"], bars=[1, 2]), num_samples=1, seed=0,
                                  out_dir=str(tmp_path / "out"), render=RenderConfig(piano_roll=False, page=False)),
                     model=model)
    assert "notes after its first 1,024 bars" in capsys.readouterr().err
    assert results[0].tracks[0].notes["onset"].tolist() == [0.0, 4.0, 8.0]  # the bars read, note for note


def test_candidates_of_a_fill_that_keeps_nothing_in_its_gap_say_they_write_one(chorale_midi_dir, tmp_path, capsys):
    path = sorted(chorale_midi_dir.glob("*.mid"))[0]
    config = SampleConfig(primer=str(path), fill=Fill(bars=[2, 3], candidates=4), num_samples=1, seed=0,
                          out_dir=str(tmp_path / "out"), render=RenderConfig(piano_roll=False, page=False))
    sample(config, model=fill_model())
    assert "fill.candidates=4 writes one fill a piece here" in capsys.readouterr().err


def test_the_bars_of_a_fill_must_share_one_meter(tmp_path):
    model = fill_model(keys=("alto", "soprano"))
    bar4, bar3 = 4 * 480, 3 * 480
    notes = [(b * bar4, b * bar4 + 480, 72, 80) for b in range(2)] + [(2 * bar4 + b * bar3, 2 * bar4 + b * bar3 + 480, 74, 80)
                                                                    for b in range(2)]
    path = make_midi(tmp_path / "meters.mid", [{"name": "soprano", "program": 52, "notes": notes}],
                     time_signatures=[(0, 4, 4), (2 * bar4, 3, 4)])
    primer = load_primer(path, model.vocab, MAX_PRIMER_BARS, "name")
    with pytest.raises(UserError, match="one meter"):
        compose(model, Settings(fill=Fill(parts=["alto"], bars=[2, 3]), seed=0), 1, primer)
    pieces = compose(model, Settings(fill=Fill(parts=["alto"], bars=[3, 4]), seed=0), 1, primer)
    assert pieces[0].meter.signatures == [(4, 4), (3, 4)]


# ---------------------------------------------------------------------------------------
# training


WHITE, BLACK = (60, 62, 64, 65, 67, 69, 71, 72), (61, 63, 66, 68, 70, 73, 75, 78)  # C major; the black keys


def two_scale_piece(path, seed: int, bars: int = 8):
    """A flute melody (quarter notes) over a bass (half notes), both on the white keys or both
    on the black keys: the piece decides which, and a gap can only know it from its context."""
    rng = np.random.default_rng(seed)
    scale = np.array(WHITE if seed % 2 else BLACK)
    flute = [(i * 480, (i + 1) * 480, int(p), 80) for i, p in enumerate(rng.choice(scale, 4 * bars))]
    bass = [(i * 960, (i + 1) * 960, int(p) - 24, 70) for i, p in enumerate(rng.choice(scale, 2 * bars))]
    return make_midi(path, [{"name": "flute", "program": 73, "notes": flute},
                            {"name": "bass", "program": 32, "notes": bass}])


def test_a_model_trained_briefly_on_fills_writes_each_part_of_a_gap_as_that_part_plays(tmp_path):
    """In the corpus the flute plays quarter notes from C4 up, the bass half notes two octaves
    lower. Asked for either part in a gap, a model trained briefly on fill examples writes it
    in that part's register and rhythm (so it reads the fill's header and its holes), where
    an untrained one scatters pitches and lengths."""
    for i in range(40):
        two_scale_piece(tmp_path / "midi" / f"tune{i:02d}.mid", seed=i)
    dm, model = train_briefly(tmp_path / "midi", "scales", steps=300, seq_len=160, fill_share=0.7)
    assert dm.vocab.fills
    untrained = small_model(dm).eval()
    primer = load_primer(two_scale_piece(tmp_path / "new.mid", seed=1001), model.vocab, MAX_PRIMER_BARS, "program")

    def as_the_part_plays(generator, key, low, high, length) -> tuple[float, float]:
        pieces = compose(generator, Settings(fill=Fill(parts=[key], bars=[3, 6]), seed=1, top_p=1.0), 6, primer)
        notes = [t.notes for p in pieces for t in p.tracks if t.name == key]
        inside = [(n["onset"] >= 8) & (n["onset"] < 24) for n in notes]
        pitch = np.concatenate([n["pitch"][i] for n, i in zip(notes, inside, strict=True)])
        duration = np.concatenate([n["duration"][i] for n, i in zip(notes, inside, strict=True)])
        return ((pitch >= low) & (pitch <= high)).mean(), (duration == length).mean()

    for part in (("acoustic_bass", 34, 56, 2.0), ("flute", 60, 80, 1.0)):
        register, rhythm = as_the_part_plays(model, *part)
        before = as_the_part_plays(untrained, *part)
        assert register > 0.6 and rhythm > 0.5 and max(before) < 0.3, (part, register, rhythm, before)
