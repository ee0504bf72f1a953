"""Sampling in the score view (deeporb/generation): every sampled score decodes strictly; the
named instruments, and only they, play, each at least once, with no dead end; model-drawn
ensembles and styles; endings between min_bars and bars; primers with several parts; hostile
primers bounded; the short-meter warning."""

from __future__ import annotations

import json
import struct
import time
import tracemalloc

import numpy as np
import pytest
import torch
from midi_factory import make_midi, scale

from deeporb.encoding.score import decode_score
from deeporb.encoding.words import BAR, EOS, PAD, EncodingConfig, Meter, Vocabulary
from deeporb.errors import UserError
from deeporb.generation.compose import Settings, compose, header_parts, short_bar_warning
from deeporb.generation.loop import draw_header, generate
from deeporb.generation.masks import Grammar
from deeporb.generation.prompts import load_primer, score_prompt
from deeporb.model import LSTMGenerator
from deeporb.stages.sample import RenderConfig, SampleConfig, sample

KEYS = ("acoustic_bass", "drums", "flute", "violin")
STYLES = ("bach", "folk")


def session(view: str = "score", **extra) -> dict:
    programs = {"acoustic_bass": 32, "drums": 0, "flute": 73, "violin": 40}
    return {"view": view, "qpm_median": 100.0, "time_signatures": {"4/4": 2},
            "instruments": {k: {"program": p, "is_drum": k == "drums"} for k, p in programs.items()}, **extra}


def score_model(styles=STYLES, view: str = "score", seed: int = 0, bias: dict | None = None,
                keys=KEYS) -> LSTMGenerator:
    """Random weights; ``bias`` adds to the output bias of whole word blocks (kind -> amount),
    to push the model toward what the constraints must overrule."""
    torch.manual_seed(seed)
    vocab = Vocabulary(EncodingConfig(), keys, styles)
    model = LSTMGenerator(vocab.to_dict(), embed_dim=16, hidden_size=32, num_layers=1, dropout=0.0,
                          session=session(view)).eval()
    with torch.no_grad():
        for kind, amount in (bias or {}).items():
            a, b = (vocab.index[kind], vocab.index[kind] + 1) if kind in (BAR, EOS) else vocab.blocks[kind]
            model.head.bias[a:b] += amount
    return model


def decoded(model, prompt: list[int], row: list[int]):
    parts, meter = decode_score(model.vocab.decode_ids(prompt + row), model.vocab, strict=True)
    assert PAD not in model.vocab.decode_ids(row) and EOS not in model.vocab.decode_ids(row)
    return parts, meter


# ---------------------------------------------------------------------------------------
# the named ensemble


def adversarial_walk(vocab: Vocabulary, named: list[str], meter: Meter, bars: int, limit: int, seed: int) -> list[int]:
    """Words drawn through the masks by a chooser that avoids the named parts and wants to close
    bars, end the piece and stack chords: every step must leave a word, and the walk must end."""
    rng = np.random.default_rng(seed)
    g = Grammar(vocab, max_bar_words=limit, view="score")
    prompt = score_prompt(vocab, named, meter, None)
    s = g.state_after(prompt, 48)
    s.required[0] = s.ensemble[0]
    target = int(s.bars[0]) + bars - 1
    ids = list(prompt)
    a, b = vocab.blocks["inst"]
    for _ in range(20 * limit * bars):
        allowed = torch.nonzero(g.mask(s, target, 1)[0])[:, 0].numpy()
        assert len(allowed), vocab.decode_ids(ids[-12:])  # a dead end
        weight = np.ones(len(allowed))
        weight[(allowed >= a) & (allowed < b)] = 1e-3  # almost never name a part
        weight[np.isin(allowed, [vocab.index[BAR], vocab.index[EOS]])] = 50.0
        weight[(allowed >= vocab.blocks["pitch"][0]) & (allowed < vocab.blocks["pitch"][1])] = 5.0
        token = int(rng.choice(allowed, p=weight / weight.sum()))
        if bool(g.advance(s, torch.tensor([token]), target)):
            return ids[len(prompt):]
        ids.append(token)
    raise AssertionError("the walk did not end")


@pytest.mark.parametrize("ts", [(4, 4), (1, 8), (3, 16)])
def test_named_parts_always_fit_no_dead_end(ts):
    """Against a chooser that avoids them, the named parts still all play before the row ends,
    in full bars (a small word limit) and in the shortest bars too; nothing else plays."""
    vocab = Vocabulary(EncodingConfig(), KEYS)
    meter = Meter([0], [ts])
    for seed in range(60):
        named = sorted(np.random.default_rng(seed).choice(KEYS, size=1 + seed % 4, replace=False).tolist())
        bars, limit = 1 + seed % 3, (8, 14, 40)[seed % 3]
        row = adversarial_walk(vocab, named, meter, bars, limit, seed)
        parts, _ = decode_score(vocab.decode_ids(score_prompt(vocab, named, meter, None) + row), vocab)
        assert sorted(parts) == named
        assert all(len(parts[k]) >= 1 for k in named), (seed, named)


@pytest.mark.parametrize("bias", [{BAR: 8.0, EOS: 8.0, "inst": -8.0}, {"pitch": 6.0, "inst": -6.0}, {}])
def test_named_instruments_and_only_they_play_each_at_least_once(bias):
    """A model pushed to close bars (or to stack chords) and to avoid instrument words still
    writes every named part, and no other; every row decodes strictly."""
    model = score_model(bias=bias)
    vocab = model.vocab
    meter = Meter([0], [(2, 4)])
    for seed, named in enumerate([["violin"], ["drums", "flute"], ["acoustic_bass", "drums", "flute", "violin"]]):
        prompt = score_prompt(vocab, named, meter, None, "folk")
        rows = generate(model, [prompt], 24, 2, temperature=1.5, seed=seed, view="score", min_bars=1,
                        max_bar_words=30, ensembles=[named])
        for (row,) in rows:
            parts, m = decoded(model, prompt, row)
            assert sorted(parts) == sorted(named) and m.signatures == [(2, 4)]
            assert all(len(parts[k]) for k in named), [len(parts[k]) for k in named]


def test_compose_score_view_names_the_tracks_and_records_what_played():
    model = score_model(styles=())
    pieces = compose(model, Settings(bars=3, seed=1, instruments=["violin", "acoustic_bass"]), 5)
    assert len(pieces) == 5
    for p in pieces:
        assert [t.name for t in p.tracks] == ["violin", "acoustic_bass"]  # in the order asked
        assert (p.tracks[0].program, p.tracks[1].program, p.tracks[0].is_drum) == (40, 32, False)
        assert p.played == ["violin", "acoustic_bass"] and p.bars == 3 and p.time_signature == "4/4"
        assert p.style is None and p.seconds >= 3 * 4 * 60 / 100.0 - 1e-9
    with pytest.raises(UserError, match="unknown instrument 'banjo'; this model knows: acoustic_bass, drums, flute, violin"):
        compose(model, Settings(instruments=["banjo"]), 1)


# ---------------------------------------------------------------------------------------
# what the model draws


def test_model_draws_ensembles_in_ascending_order_then_writes_for_them():
    model = score_model()
    vocab = model.vocab
    heads = draw_header(model, vocab.header_ids([]).tolist(), 40, True, True, temperature=2.0, seed=3)
    ensembles = set()
    for h in heads:
        words = vocab.decode_ids(h)
        assert words[0].startswith("style_") and all(w.startswith("inst_") for w in words[1:])
        insts = h[1:]
        assert insts and insts == sorted(set(insts))
        ensembles.add(tuple(insts))
    assert len(ensembles) > 3  # drawn, not fixed
    pieces = compose(model, Settings(bars=2, seed=5, temperature=2.0), 8)
    for p in pieces:
        assert p.instruments and p.instruments == sorted(p.instruments)
        assert set(p.played) <= set(p.instruments) and p.style in STYLES


def test_style_words_and_unknown_style_errors():
    model = score_model()
    pieces = compose(model, Settings(bars=1, seed=0, style="bach", instruments=["flute"]), 3)
    assert {p.style for p in pieces} == {"bach"}
    drawn = compose(model, Settings(bars=1, seed=0, temperature=3.0, instruments=["flute"]), 16)
    assert {p.style for p in drawn} == set(STYLES)  # style=null: the model draws one per sample
    with pytest.raises(UserError, match="unknown style 'jazz'; this checkpoint knows: bach, folk"):
        compose(model, Settings(style="jazz"), 1)
    with pytest.raises(UserError, match="trained without styles"):
        compose(score_model(styles=()), Settings(style="bach"), 1)
    tracks_model = score_model(view="tracks")  # the tracks view frames each row with the style too
    for p in compose(tracks_model, Settings(bars=1, seed=2, instruments=["flute", "drums"]), 4):
        assert p.style in STYLES and [t.name for t in p.tracks] == ["flute", "drums"]


# ---------------------------------------------------------------------------------------
# endings


def test_endings_respect_min_bars_and_bars(tmp_path):
    eager = score_model(styles=(), bias={EOS: 12.0})  # ends wherever it may
    pieces = compose(eager, Settings(bars=6, min_bars=2, seed=0, instruments=["flute"]), 6)
    assert [p.bars for p in pieces] == [2] * 6 and all(p.ended for p in pieces)
    assert all(p.played == ["flute"] for p in pieces)  # it may not end before the flute played
    free = compose(score_model(styles=()), Settings(bars=4, min_bars=1, seed=1, temperature=1.5), 16)
    assert all(1 <= p.bars <= 4 for p in free)
    never = compose(eager, Settings(bars=3, seed=0), 4)  # min_bars=null: exactly `bars`
    assert [p.bars for p in never] == [3] * 4
    results = sample(SampleConfig(out_dir=str(tmp_path), num_samples=2, bars=5, min_bars=3, seed=0,
                                  instruments=["violin"], render=RenderConfig(piano_roll=False, page=False)), model=eager)
    summary = json.loads((tmp_path / "samples.json").read_text())
    assert [s["bars"] for s in summary["samples"]] == [3, 3] == [r.bars for r in results]
    assert summary["samples"][0]["played"] == ["violin"] and summary["samples"][0]["time_signature"] == "4/4"
    with pytest.raises(UserError, match="min_bars needs a score-view checkpoint"):
        compose(score_model(view="tracks"), Settings(bars=4, min_bars=2), 1)
    with pytest.raises(UserError, match="min_bars must be between 1 and bars=4"):
        compose(eager, Settings(bars=4, min_bars=5), 1)


# ---------------------------------------------------------------------------------------
# primers


def quartet(path, bars: int = 3):
    """Violin, bass, drums and an unknown clarinet over ``bars`` bars of 3/4."""
    bar = 3 * 480
    return make_midi(path, [
        {"name": "vn", "program": 40, "notes": [(b * bar + i * 480, b * bar + (i + 1) * 480, 76 + i, 90)
                                                 for b in range(bars) for i in range(3)]},
        {"name": "bs", "program": 32, "notes": [(b * bar, (b + 1) * bar, 40 + b, 80) for b in range(bars)]},
        {"name": "kit", "is_drum": True, "notes": [(b * bar + 240, b * bar + 300, 42, 70) for b in range(bars)]},
        {"name": "cl", "program": 71, "notes": scale(0, 480)},
    ], tempos=[(0, 90.0)], time_signatures=[(0, 3, 4)])


def test_primer_with_several_parts_opens_the_score(tmp_path):
    model = score_model(styles=())
    primer = load_primer(quartet(tmp_path / "q.mid"), model.vocab, 2)
    assert primer.bars == 2 and sorted(primer.parts) == ["acoustic_bass", "drums", "violin"]
    assert primer.ignored == ["clarinet"] and primer.end_step == 2 * 36
    pieces = compose(model, Settings(bars=2, seed=0), 3, primer)
    for p in pieces:
        assert p.instruments == ["acoustic_bass", "drums", "violin"] and p.time_signature == "3/4"
        assert p.bars == 4 and p.tempos[0][1] == pytest.approx(90.0)
        by = {t.name: t.notes for t in p.tracks}
        first = {k: sorted(zip(n["onset"][n["onset"] < 6].tolist(), n["pitch"][n["onset"] < 6].tolist(), strict=True))
                 for k, n in by.items()}
        assert first["violin"] == [(float(i), 76 + i % 3) for i in range(6)]
        assert first["acoustic_bass"] == [(0.0, 40), (3.0, 41)] and first["drums"] == [(0.5, 42), (3.5, 42)]
    # instruments= with a primer: the header holds both, only the named part plays after it
    named = compose(model, Settings(bars=2, seed=0, instruments=["flute"]), 3, primer)
    for p in named:
        assert p.instruments == ["flute", "acoustic_bass", "drums", "violin"]
        later = {t.name: int((t.notes["onset"] >= 6).sum()) for t in p.tracks}
        assert later["flute"] >= 1 and later["violin"] == later["acoustic_bass"] == later["drums"] == 0
    cut = compose(model, Settings(bars=2, seed=0, instruments=["flute"], keep_primer=False), 3, primer)
    assert all(p.instruments == ["flute"] and p.bars == 2 for p in cut)


def tiny_file_with_huge_delta(path):
    """37 bytes: one tick per quarter, a note after the largest delta time (0x0FFFFFFF)."""
    events = b"\xff\xff\xff\x7f\x90\x3c\x64\x01\x80\x3c\x00\x00\xff\x2f\x00"
    path.write_bytes(b"MThd" + struct.pack(">IHHH", 6, 0, 1, 1) + b"MTrk" + struct.pack(">I", len(events)) + events)
    assert path.stat().st_size == 37
    return path


def test_primer_with_a_huge_delta_time_costs_only_its_first_bars(tmp_path):
    model = score_model(styles=(), keys=(*KEYS, "acoustic_grand_piano"))
    path = tiny_file_with_huge_delta(tmp_path / "far.mid")
    tracemalloc.start()
    t0 = time.perf_counter()
    results = sample(SampleConfig(out_dir=str(tmp_path / "o"), num_samples=1, bars=1, seed=0, primer=str(path),
                                  primer_bars=2, render=RenderConfig(piano_roll=False, page=False)), model=model)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 30 and peak < 200e6, (seconds, peak)  # issue 11: it used to die after 39 s
    assert results[0].bars == 3  # two silent primer bars (the note lies ~67 million bars on) + one


def test_primer_folder_and_unreadable_primer_are_one_line_errors(tmp_path):
    model = score_model(styles=())
    (tmp_path / "songs").mkdir()
    with pytest.raises(UserError, match="primer .*songs' is a folder; pass primer=FILE.mid"):
        sample(SampleConfig(out_dir=str(tmp_path / "o"), primer=str(tmp_path / "songs")), model=model)
    (tmp_path / "bad.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01")
    with pytest.raises(UserError, match="primer .*bad.mid"):
        sample(SampleConfig(out_dir=str(tmp_path / "o"), primer=str(tmp_path / "bad.mid")), model=model)


# ---------------------------------------------------------------------------------------
# meter


def test_a_meter_of_a_quarter_or_less_warns_that_bars_are_short(tmp_path, capsys):
    vocab = Vocabulary(EncodingConfig(), KEYS)
    for ts in [(1, 4), (1, 8), (2, 8), (3, 16)]:
        assert "bars=16 is only" in short_bar_warning(Meter([0], [ts]), 16, vocab)
    for ts in [(2, 4), (3, 8), (4, 4), (6, 8)]:
        assert short_bar_warning(Meter([0], [ts]), 16, vocab) is None
    model = score_model(styles=())
    model.hparams.session["time_signatures"] = {"1/4": 5, "4/4": 1}
    sample(SampleConfig(out_dir=str(tmp_path), num_samples=1, bars=8, seed=0, instruments=["flute"],
                        render=RenderConfig(piano_roll=False, page=False)), model=model)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["warning: the meter is 1/4, so bars=8 is only 8 quarter notes; `bars` counts the meter's bars "
                   "(raise bars, or sample with a primer in the music's real meter)"]


def test_header_parts_reads_the_ensemble():
    vocab = Vocabulary(EncodingConfig(), KEYS, STYLES)
    ids = vocab.header_ids(["violin", "drums"], "bach").tolist() + vocab.ids("bar ts_4/4 pos_0 inst_drums").tolist()
    assert header_parts(ids, vocab) == ["drums", "violin"]


@pytest.mark.parametrize("view,instruments", [("score", None), ("score", ["flute"]), ("tracks", ["flute"])])
def test_a_drawn_style_writes_in_its_own_meter_not_the_pooled_one(view, instruments):
    """style=null on a two-style checkpoint: the style is drawn first, then its meter is chosen
    (issue 18: both were chosen before the draw, so every style got the pooled commonest)."""
    model = score_model(view=view)
    model.hparams["session"] = session(view, time_signatures={"2/4": 9, "3/4": 5},
                                       style_time_signatures={"bach": {"3/4": 5}, "folk": {"2/4": 9}})
    pieces = compose(model, Settings(bars=1, seed=3, temperature=3.0, instruments=instruments), 24)
    drawn = {p.style for p in pieces}
    assert drawn == {"bach", "folk"}  # both drawn, so the test can tell the meters apart
    for p in pieces:
        assert p.time_signature == {"bach": "3/4", "folk": "2/4"}[p.style]
