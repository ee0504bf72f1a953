"""Tests for deeporb/sampling.py and sample.py: valid music out of every row, files every
MIDI library opens, primers, determinism, the user's error lines, the Hydra app end to end."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import miditoolkit
import mido
import numpy as np
import pretty_midi
import pytest
import pytorch_lightning as pl
import symusic
import torch

from deeporb.checkpoints import load_generator
from deeporb.data.facts import SessionFacts
from deeporb.encoding.grammar import KINDS
from deeporb.encoding.words import (
    BOS,
    EOS,
    PAD,
    EncodingConfig,
    GridNotes,
    Meter,
    Vocabulary,
    decode_words,
    encode,
    quantize,
)
from deeporb.errors import UserError
from deeporb.generation.compose import tidy_notes
from deeporb.generation.draw import candidates, choose
from deeporb.generation.loop import generate
from deeporb.generation.masks import Grammar
from deeporb.generation.prompts import build_prompts, load_primer
from deeporb.instruments import program_key
from deeporb.midi import read_midi
from deeporb.model import LSTMGenerator
from deeporb.stages.sample import RenderConfig, SampleConfig, sample

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("acoustic_bass", "acoustic_grand_piano", "drums")
PROGRAMS = {"acoustic_grand_piano": 0, "acoustic_bass": 32}


def write_piece(path: Path, ts=(4, 4), bars=4, seed=0, qpm=100.0, extra_program=None) -> Path:
    """A small piano + bass + drums piece (optionally with one more pitched track)."""
    rng = np.random.default_rng(seed)
    m = miditoolkit.MidiFile(ticks_per_beat=480)
    m.tempo_changes.append(miditoolkit.TempoChange(qpm, 0))
    m.time_signature_changes.append(miditoolkit.TimeSignature(ts[0], ts[1], 0))
    piano = miditoolkit.Instrument(0, name="piano")
    bass = miditoolkit.Instrument(32, name="bass")
    drums = miditoolkit.Instrument(0, is_drum=True, name="kit")
    extra = miditoolkit.Instrument(extra_program, name="extra") if extra_program is not None else None
    for b in range(bars):
        root = 48 + int(rng.choice([0, 5, 7, 9]))
        for beat in range(ts[0]):
            t = (b * ts[0] + beat) * 480
            for iv in (12, 16, 19):
                piano.notes.append(miditoolkit.Note(80, root + iv, t, t + 480))
            bass.notes.append(miditoolkit.Note(90, root - 12, t, t + 240))
            drums.notes.append(miditoolkit.Note(100, 36 if beat % 2 == 0 else 38, t, t + 120))
            drums.notes.append(miditoolkit.Note(70, 42, t + 240, t + 360))
            if extra is not None:
                extra.notes.append(miditoolkit.Note(64, root + 24, t, t + 360))
    m.instruments += [piano, bass, drums] + ([extra] if extra is not None else [])
    m.dump(str(path))
    return path


def session_dict() -> dict:
    return {
        "names": ["synthetic"],
        "qpm_median": 100.0,
        "time_signatures": {"4/4": 3, "3/4": 1},
        "instruments": {
            k: {"program": PROGRAMS.get(k, 0), "is_drum": k == "drums", "tracks": 4, "notes": 100}
            for k in KEYS
        },
    }


def tiny_model(vocab: Vocabulary, session: dict | None = None, seed: int = 0) -> LSTMGenerator:
    torch.manual_seed(seed)
    return LSTMGenerator(
        vocab.to_dict(), embed_dim=32, hidden_size=64, num_layers=2, dropout=0.0, session=session
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Four encoded pieces (one in 3/4) as token sequences, and the vocabulary."""
    d = tmp_path_factory.mktemp("corpus")
    vocab = Vocabulary(EncodingConfig(), KEYS)
    seqs = []
    for i in range(4):
        piece = read_midi(write_piece(d / f"p{i}.mid", ts=(3, 4) if i == 3 else (4, 4), seed=i))
        for tr in piece.tracks:
            words, _ = encode(tr.notes, piece.time_signatures, vocab)
            key = program_key(tr.program, tr.is_drum)
            seqs.append(vocab.ids([BOS, f"inst_{key}", *words.split(), EOS]))
    return vocab, seqs


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, corpus):
    """A training run folder holding a checkpoint written by a real pl.Trainer."""
    vocab, seqs = corpus
    window = 64
    rows = [s[i : i + window] for s in seqs for i in range(0, max(1, len(s) - window // 2), window)]
    tokens = torch.full((len(rows), window), vocab.index[PAD], dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.as_tensor(r)
    loader = torch.utils.data.DataLoader([{"tokens": t} for t in tokens], batch_size=8, shuffle=True)
    pl.seed_everything(0, verbose=False)
    model = tiny_model(vocab, session_dict())
    trainer = pl.Trainer(
        max_steps=20, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", devices=1,
    )
    trainer.fit(model, loader)
    run = tmp_path_factory.mktemp("run")
    (run / "checkpoints").mkdir()
    trainer.save_checkpoint(run / "checkpoints" / "best-epoch=0.ckpt")
    return run


@pytest.fixture(scope="module")
def ckpt(run_dir) -> Path:
    return run_dir / "checkpoints" / "best-epoch=0.ckpt"


@pytest.fixture(scope="module")
def model(ckpt):
    return load_generator(ckpt)


def no_render() -> RenderConfig:
    return RenderConfig(piano_roll=False)


# ---------------------------------------------------------------------------------------
# the grammar


def test_grammar_accepts_what_the_encoder_writes(corpus):
    """The mask never forbids a word of a real sequence (ts only right after bar: the sampler
    takes time signatures from the prompt). tests/test_grammar.py checks this in depth."""
    vocab, seqs = corpus
    g = Grammar(vocab)
    for seq in seqs:
        s = g.fresh(1, 48)
        for prev, tok in zip(seq[:-2], seq[1:-1], strict=True):  # up to <eos>
            g.advance(s, torch.tensor([prev]))
            if KINDS[vocab.kinds[tok]] == "ts":
                assert KINDS[int(s.prev)] == "bar"
                continue
            assert g.mask(s, target=10**6)[0, tok], (vocab.words[prev], vocab.words[tok])


def test_every_row_decodes_strictly_and_has_the_bars_asked(corpus):
    """Random weights, hot temperature, several filters: every row is still valid music."""
    vocab, _ = corpus
    model = tiny_model(vocab, seed=1)
    meter = Meter([0], [(3, 4)])
    prompts = build_prompts(vocab, list(KEYS), meter, None)
    for temperature, top_k, top_p, seed in [(3.0, 0, 1.0, 0), (1.0, 20, 0.9, 1), (0.0, 0, 1.0, 2)]:
        rows = generate(model, prompts, 3, 3, temperature, top_k, top_p, seed=seed, max_bar_words=60)
        assert len(rows) == 3 and all(len(r) == len(KEYS) for r in rows)
        for sample_rows in rows:
            for prompt, row in zip(prompts, sample_rows, strict=True):
                words = vocab.decode_ids(prompt + row)
                grid, m = decode_words(words, vocab, strict=True)
                assert m.signatures == [(3, 4)]
                assert words.count("bar") == 3  # the prompt's bar + two generated ones
                assert EOS not in words and PAD not in words
                assert np.all(grid.onset < 3 * 36) and np.all(grid.duration > 0)
                # no repeated (onset, pitch) once tidied (the grammar allows them, as real files have them)
                grid = tidy_notes(grid)
                assert len(set(zip(grid.onset.tolist(), grid.pitch.tolist(), strict=True))) == len(grid)


def test_batched_state_carrying_matches_refeeding_the_history(corpus):
    """Greedy batched rows equal a slow loop that re-runs the whole history for each word."""
    vocab, _ = corpus
    model = tiny_model(vocab, seed=2).eval()
    meter = Meter([0], [(4, 4)])
    prompts = build_prompts(vocab, ["acoustic_grand_piano", "drums"], meter, None)
    rows = generate(model, prompts, 2, 2, temperature=0.0, max_bar_words=40)
    g = Grammar(vocab, max_bar_words=40)
    for j, prompt in enumerate(prompts):
        seq = list(prompt)
        s = g.state_after(prompt, 48)
        target = int(s.bars) + 2 - 1
        out = []
        with torch.no_grad():
            while True:
                logits = model(torch.tensor([seq]))[0][:, -1]
                tok = int(logits.masked_fill(~g.mask(s, target), -math.inf).argmax())
                if bool(g.advance(s, torch.tensor([tok]), target)):
                    break
                seq.append(tok)
                out.append(tok)
        assert rows[0][j] == out
        assert rows[1][j] == out  # greedy: both samples agree


def kept_words(logits, temperature, top_k, top_p) -> list[int]:
    weights, order = candidates(logits, temperature, top_k, top_p)
    ids = order if order is not None else torch.arange(logits.shape[-1])[None]
    return sorted(ids[weights > 0].tolist())


def test_candidates_apply_temperature_top_k_and_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert kept_words(logits, 1.0, 0, 1.0) == [0, 1, 2, 3]
    assert kept_words(logits, 1.0, 2, 1.0) == [0, 1]
    assert kept_words(logits, 1.0, 0, 0.7) == [0, 1]  # 0.5 < 0.7, 0.8 crosses it
    assert kept_words(logits, 1.0, 0, 0.4) == [0]
    weights, _ = candidates(logits, 1.0, 3, 1.0)
    assert torch.allclose(weights, torch.tensor([[0.5, 0.3, 0.15]]) / 0.95)
    masked = logits.clone()
    masked[0, 0] = -math.inf
    assert kept_words(masked, 1.0, 3, 0.5) == [1]  # renormalised: 0.3/0.5 = 0.6 > 0.5
    assert kept_words(masked, 2.0, 3, 0.5) == [1, 2]  # hotter: sqrt-weights give 0.47 < 0.5
    assert kept_words(masked, 1.0, 0, 1.0) == [1, 2, 3]  # a masked word never comes back
    # rows whose nucleus is wider than the first candidates looked at are sorted in full:
    # the kept sets equal a plain full sort's, row by row
    rows = torch.randn(40, 300) * torch.linspace(0.1, 8.0, 40)[:, None]
    rows[::3, ::2] = -math.inf
    weights, order = candidates(rows, 1.0, 0, 0.9)
    for i in range(len(rows)):
        p, o = torch.sort(torch.softmax(rows[i], -1), descending=True)
        want = o[(p.cumsum(0) - p) <= 0.9]
        want = want[p[: len(want)] > 0]
        assert sorted(order[i][weights[i] > 0].tolist()) == sorted(want.tolist()), i
    g = torch.Generator().manual_seed(0)
    draws = choose(masked.repeat(2000, 1), 1.0, 0, 0.8, g)
    counts = torch.bincount(draws, minlength=4).tolist()
    assert counts[0] == 0 and counts[3] == 0 and 1200 < counts[1] < 1470  # 0.6 / 0.9 = 2/3
    assert choose(masked, 0.0, 0, 1.0, g).tolist() == [1]


FILTERS = [(0, 1.0), (0, 0.9), (3, 1.0), (3, 0.5), (300, 0.95)]  # (top_k, top_p): every draw path


@pytest.mark.parametrize("top_k,top_p", FILTERS)
def test_a_vanishing_temperature_draws_greedily_on_every_path(top_k, top_p):
    """logits / 1e-300 overflowed float32 to inf and nan: the sorted paths picked index -1,
    which failed every request batched beside it in serve.py (issue 17)."""
    rows = torch.randn(64, 300) * 4
    rows[::2, ::3] = -math.inf
    g = torch.Generator().manual_seed(0)
    for temperature in (1e-300, 1e-7, 5e-324):
        assert torch.equal(choose(rows, temperature, top_k, top_p, g), rows.argmax(-1)), temperature


@pytest.mark.parametrize("top_k,top_p", FILTERS)
def test_a_row_with_one_allowed_word_draws_it_at_any_temperature(top_k, top_p):
    rows = torch.full((4, 300), -math.inf)
    rows[torch.arange(4), torch.tensor([0, 17, 150, 299])] = torch.tensor([-1e30, 0.0, 5.0, 1e30])
    g = torch.Generator().manual_seed(0)
    for temperature in (0.0, 1e-300, 1e-6, 1e-3, 0.7, 1.0, 3.0, 1e30, 1e300, math.inf):
        assert choose(rows, temperature, top_k, top_p, g).tolist() == [0, 17, 150, 299], temperature


def test_tidy_notes_cuts_overlaps_of_one_pitch():
    grid = GridNotes(
        onset=np.array([0, 0, 6, 6, 24]),
        duration=np.array([12, 4, 24, 3, 6]),
        pitch=np.array([60, 60, 60, 64, 64]),
        velocity_bin=np.array([4, 4, 4, 4, 4]),
    )
    out = tidy_notes(grid)
    notes = sorted(zip(out.onset.tolist(), out.pitch.tolist(), out.duration.tolist(), strict=True))
    assert notes == [(0, 60, 6), (6, 60, 24), (6, 64, 3), (24, 64, 6)]


def test_session_meter_picks_the_commonest_representable_signature():
    def meter(session: dict) -> list:
        return SessionFacts.from_dict(session).meter().signatures

    assert meter({"time_signatures": {"4/4": 3, "3/4": 5}}) == [(3, 4)]
    assert meter({"time_signatures": {"99/4": 9, "6/8": 1}}) == [(6, 8)]
    assert meter({}) == [(4, 4)]


# ---------------------------------------------------------------------------------------
# files


def note_balance_ok(path: Path) -> bool:
    """Every note_on is closed by a note_off on its channel and pitch; none left open."""
    open_notes = defaultdict(int)
    for msg in mido.merge_tracks(mido.MidiFile(path).tracks):
        if msg.type == "note_on" and msg.velocity > 0:
            open_notes[msg.channel, msg.note] += 1
        elif msg.type in ("note_off", "note_on"):
            open_notes[msg.channel, msg.note] -= 1
            if open_notes[msg.channel, msg.note] < 0:
                return False
    return all(v == 0 for v in open_notes.values())


def test_generated_files_open_in_every_library(model, tmp_path):
    results = sample(SampleConfig(out_dir=tmp_path, num_samples=2, bars=3, seed=5, render=no_render()), model=model)
    assert len(results) == 2
    assert json.loads((tmp_path / "samples.json").read_text())["seed"] == 5
    for r in results:
        path = r.midi
        assert path.is_file() and r.bars == 3 and r.time_signature == "4/4" and r.qpm == 100.0
        mt = miditoolkit.MidiFile(str(path))
        assert [i.name for i in mt.instruments] == list(KEYS)
        for inst in mt.instruments:
            assert inst.is_drum == (inst.name == "drums")
            assert inst.program == PROGRAMS.get(inst.name, 0)
            assert all(n.end > n.start for n in inst.notes)
        assert sum(len(i.notes) for i in mt.instruments) == r.notes
        pm = pretty_midi.PrettyMIDI(str(path))
        assert sum(len(i.notes) for i in pm.instruments) == r.notes
        assert [(i.program, i.is_drum) for i in pm.instruments] == [(32, False), (0, False), (0, True)]
        assert pm.get_tempo_changes()[1][0] == pytest.approx(100.0)
        score = symusic.Score(str(path))
        assert sum(len(t.notes) for t in score.tracks) == r.notes
        assert all(n.duration > 0 for t in score.tracks for n in t.notes)
        for track in mido.MidiFile(path).tracks[1:]:  # one MIDI track per instrument
            name = next(m.name for m in track if m.type == "track_name")
            channels = {m.channel for m in track if m.type in ("note_on", "program_change")}
            if name == "drums":
                assert channels == {9}
            else:
                assert len(channels) == 1 and 9 not in channels
        assert note_balance_ok(path)
        assert r.seconds >= 3 * 4 * 60 / 100.0 - 1e-9 and pm.get_end_time() <= r.seconds + 1e-6


def test_same_seed_gives_byte_identical_midi(model, tmp_path):
    a = sample(SampleConfig(out_dir=tmp_path / "a", num_samples=2, bars=2, seed=11, render=no_render()), model=model)
    b = sample(SampleConfig(out_dir=tmp_path / "b", num_samples=2, bars=2, seed=11, render=no_render()), model=model)
    c = sample(SampleConfig(out_dir=tmp_path / "c", num_samples=2, bars=2, seed=12, render=no_render()), model=model)
    for x, y in zip(a, b, strict=True):
        assert x.midi.read_bytes() == y.midi.read_bytes()
    assert [x.midi.read_bytes() for x in a] != [z.midi.read_bytes() for z in c]


def test_instruments_choice_tempo_and_meter_from_statistics(model, tmp_path):
    results = sample(SampleConfig(out_dir=tmp_path, num_samples=1, bars=2, seed=0, instruments=["drums"],
                                  tempo=72, render=no_render()), model=model)
    mt = miditoolkit.MidiFile(str(results[0].midi))
    assert [i.name for i in mt.instruments] == ["drums"] and mt.instruments[0].is_drum
    assert mt.tempo_changes[0].tempo == pytest.approx(72.0)
    ts = mt.time_signature_changes[0]
    assert (ts.numerator, ts.denominator) == (4, 4)


# ---------------------------------------------------------------------------------------
# primers


def notes_of(track, lo, hi):
    n = track.notes
    keep = (n["onset"] >= lo) & (n["onset"] < hi)
    cols = (np.round(n["onset"][keep], 9), n["pitch"][keep], np.round(n["duration"][keep], 9))
    return sorted(zip(*(c.tolist() for c in cols), strict=True))


def test_primer_notes_open_the_output_when_kept(model, tmp_path):
    primer = write_piece(tmp_path / "primer.mid", ts=(3, 4), bars=4, seed=7, qpm=90.0, extra_program=40)
    kept = sample(SampleConfig(out_dir=tmp_path / "kept", num_samples=2, bars=2, seed=3, primer=primer,
                               primer_bars=2, render=no_render()), model=model)
    summary = json.loads((tmp_path / "kept" / "samples.json").read_text())
    assert summary["primer_bars"] == 2 and summary["ignored_primer_instruments"] == ["violin"]
    src = read_midi(primer)
    expected = {}
    for tr in src.tracks[:3]:
        grid = quantize(tr.notes, model.vocab.config)
        q = grid.to_quarters(model.vocab.config)
        keep = q["onset"] < 6.0  # two bars of 3/4
        expected[program_key(tr.program, tr.is_drum)] = sorted(
            zip(q["onset"][keep].tolist(), q["pitch"][keep].tolist(), q["duration"][keep].tolist(), strict=True)
        )
    for r in kept:
        assert r.bars == 4 and r.time_signature == "3/4" and r.qpm == pytest.approx(90.0)
        by_name = {t.name: t for t in r.tracks}
        assert sorted(by_name) == list(KEYS)  # the violin is not a known instrument
        for key, notes in expected.items():
            assert notes and notes_of(by_name[key], 0.0, 6.0) == notes
        mt = miditoolkit.MidiFile(str(r.midi))
        assert (mt.time_signature_changes[0].numerator, mt.time_signature_changes[0].denominator) == (3, 4)

    # the same run without the primer bars: the generated bars, moved to the start
    cut = sample(SampleConfig(out_dir=tmp_path / "cut", num_samples=2, bars=2, seed=3, primer=primer,
                              primer_bars=2, keep_primer=False, render=no_render()), model=model)
    for k, c in zip(kept, cut, strict=True):
        assert c.bars == 2
        for tk, tc in zip(k.tracks, c.tracks, strict=True):
            later = [(round(o - 6.0, 9), p, d) for o, p, d in notes_of(tk, 6.0, 1e9)]
            assert notes_of(tc, 0.0, 1e9) == later


def test_instrument_missing_from_the_primer_gets_empty_primer_bars(model, tmp_path):
    primer = tmp_path / "solo.mid"
    m = miditoolkit.MidiFile(ticks_per_beat=480)
    inst = miditoolkit.Instrument(0, name="p")
    inst.notes = [miditoolkit.Note(80, 60 + i, i * 480, i * 480 + 480) for i in range(8)]
    m.instruments.append(inst)
    m.dump(str(primer))
    loaded = load_primer(primer, model.vocab, 1)
    assert loaded.bars == 1 and loaded.end_step == 48 and list(loaded.words) == ["acoustic_grand_piano"]
    results = sample(SampleConfig(out_dir=tmp_path / "out", num_samples=1, bars=1, seed=0, primer=primer,
                                  primer_bars=1, instruments=["drums", "acoustic_grand_piano"],
                                  render=no_render()), model=model)
    tracks = {t.name: t for t in results[0].tracks}
    assert notes_of(tracks["acoustic_grand_piano"], 0, 4) == [(float(i), 60 + i, 1.0) for i in range(4)]
    assert notes_of(tracks["drums"], 0, 4) == []


def test_primer_tracks_are_keyed_by_name_when_the_session_was(tmp_path):
    """A session encoded with instrument_key=name keys the primer's tracks by name too."""
    vocab = Vocabulary(EncodingConfig(), ("alto", "soprano"))
    session = {"instrument_key": "name", "qpm_median": 80.0,
               "instruments": {"alto": {"program": 52, "is_drum": False}, "soprano": {"program": 53, "is_drum": False}}}
    model = tiny_model(vocab, session).eval()
    primer = tmp_path / "choir.mid"
    m = miditoolkit.MidiFile(ticks_per_beat=480)
    for name, pitch in (("Soprano", 72), ("Alto", 65), ("Organ", 48)):
        inst = miditoolkit.Instrument(0, name=name)  # every track says piano: the names decide
        inst.notes = [miditoolkit.Note(80, pitch, i * 480, i * 480 + 480) for i in range(8)]
        m.instruments.append(inst)
    m.dump(str(primer))
    results = sample(SampleConfig(out_dir=tmp_path / "out", num_samples=1, bars=1, seed=0, primer=primer,
                                  primer_bars=1, render=no_render()), model=model)
    summary = json.loads((tmp_path / "out" / "samples.json").read_text())
    assert summary["instruments"] == ["alto", "soprano"] and summary["ignored_primer_instruments"] == ["organ"]
    tracks = {t.name: t for t in results[0].tracks}
    assert (tracks["alto"].program, tracks["soprano"].program) == (52, 53)
    assert notes_of(tracks["soprano"], 0, 4) == [(float(i), 72, 1.0) for i in range(4)]
    assert notes_of(tracks["alto"], 0, 4) == [(float(i), 65, 1.0) for i in range(4)]
    with pytest.raises(UserError, match="the primer has acoustic_grand_piano; the model knows alto, soprano"):
        load_primer(primer, vocab, 1, key_mode="program")


def test_primer_errors_are_one_clear_line(model, tmp_path):
    unknown = tmp_path / "strings.mid"
    m = miditoolkit.MidiFile(ticks_per_beat=480)
    inst = miditoolkit.Instrument(40, name="violin")
    inst.notes = [miditoolkit.Note(80, 70, 0, 480)]
    m.instruments.append(inst)
    m.dump(str(unknown))
    with pytest.raises(UserError, match=r"no instrument this model knows.*violin.*acoustic_bass, acoustic_grand_piano, drums"):
        sample(SampleConfig(out_dir=tmp_path / "o", primer=unknown, render=no_render()), model=model)
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"this is not midi")
    with pytest.raises(UserError, match="primer .*bad.mid.*not a MIDI file"):
        sample(SampleConfig(out_dir=tmp_path / "o", primer=bad, render=no_render()), model=model)
    with pytest.raises(UserError, match="primer .*missing.mid"):
        sample(SampleConfig(out_dir=tmp_path / "o", primer=tmp_path / "missing.mid", render=no_render()), model=model)


# ---------------------------------------------------------------------------------------
# the user's errors


def test_unknown_instrument_and_bad_settings(model, tmp_path):
    with pytest.raises(UserError, match="unknown instrument 'banjo'; this model knows: acoustic_bass"):
        sample(SampleConfig(out_dir=tmp_path, instruments=["banjo"], render=no_render()), model=model)
    with pytest.raises(UserError, match="top_p"):
        sample(SampleConfig(out_dir=tmp_path, top_p=0.0, render=no_render()), model=model)
    with pytest.raises(UserError, match=r"bars must be between 1 and 1,024 \(got 0\)"):
        sample(SampleConfig(out_dir=tmp_path, bars=0, render=no_render()), model=model)


def test_audio_without_fluidsynth_fails_before_generating(model, tmp_path):
    with pytest.raises(UserError, match="no-such-fluidsynth.*not installed"):
        no_tool = RenderConfig(audio=True, synth="fluidsynth", fluidsynth="no-such-fluidsynth")
        sample(SampleConfig(out_dir=tmp_path / "o", render=no_tool), model=model)
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="fluidsynth is not installed")
def test_sample_writes_wav_with_fluidsynth(model, tmp_path):
    from deeporb.render.audio import DEFAULT_SOUNDFONTS

    if not any(Path(p).is_file() for p in DEFAULT_SOUNDFONTS):
        pytest.skip("no General MIDI soundfont installed")
    r = sample(SampleConfig(out_dir=tmp_path, num_samples=1, bars=1, seed=0, render=RenderConfig(audio=True, synth="fluidsynth")), model=model)[0]
    assert r.wav is not None and r.wav.stat().st_size > 10_000 and r.png.is_file()


# ---------------------------------------------------------------------------------------
# the Hydra app


def run_app(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "COLUMNS": "120", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "sample.py", *args], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=300)


def test_hydra_app_end_to_end(run_dir, tmp_path):
    out = tmp_path / "out"
    proc = run_app(f"ckpt_path={run_dir}", f"out_dir={out}", "num_samples=2", "bars=2", "seed=4",
                   "instruments=[acoustic_grand_piano,drums]")
    assert proc.returncode == 0, proc.stderr
    assert "sample_001.mid" in proc.stdout and "pitch range" in proc.stdout
    for i in range(2):
        assert (out / f"sample_{i:03d}.mid").is_file() and (out / f"sample_{i:03d}.png").is_file()
        pm = pretty_midi.PrettyMIDI(str(out / f"sample_{i:03d}.mid"))
        assert [i.name for i in pm.instruments] == ["acoustic_grand_piano", "drums"]
    summary = json.loads((out / "samples.json").read_text())
    assert summary["seed"] == 4 and summary["checkpoint"].endswith("best-epoch=0.ckpt")


def test_hydra_app_user_error_is_one_line(tmp_path):
    proc = run_app(f"ckpt_path={tmp_path / 'missing.ckpt'}", f"out_dir={tmp_path / 'out'}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: checkpoint") and "missing.ckpt" in lines[0]
