"""Tests for evaluation: the n-gram and the LSTM score the same held-out words, the
evaluate-only train run uses the checkpoint's own split, ``python evaluate.py`` prints every row,
and the music statistics see real held-out chorales as close to their training pieces and noise as far."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from deeporb.checkpoints import load_generator
from deeporb.data.split import split_of, split_pieces
from deeporb.errors import UserError
from deeporb.evaluation.compare import compare_samples, excerpts, overlap_summary, reference_pieces
from deeporb.evaluation.likelihood import count_targets, evaluate_checkpoints, split_sequences
from deeporb.stages.encode import encode_session
from deeporb.stages.sample import RenderConfig, SampleConfig, sample

ROOT = Path(__file__).resolve().parents[1]
VAL, TEST = 0.3, 0.2  # gives 3 train, 1 val and 2 test pieces of the 6 fixture chorales


@pytest.fixture(scope="module")
def sessions_dir(tmp_path_factory, chorale_midi_dir) -> Path:
    """The 6 chorales encoded as session ``chorales``, one instrument per voice."""
    d = tmp_path_factory.mktemp("sessions")
    encode_session(midi_dir=str(chorale_midi_dir), session="chorales", sessions_dir=str(d),
                   instrument_key="name", workers=1)
    return d


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def run_train(out: Path, sessions_dir: Path, *extra: str) -> dict:
    """train.py's config and run, in process (the CLI is a thin Hydra shell around it)."""
    from deeporb.stages.train import train

    os.environ.setdefault("WANDB_MODE", "offline")
    cfg = compose([
        f"paths.output_dir={out}", f"paths.sessions_dir={sessions_dir}", "logger=csv", "trainer=cpu",
        "callbacks.rich_progress_bar=null", "callbacks.early_stopping=null",
        "trainer.enable_progress_bar=false", "trainer.num_sanity_val_steps=0", *extra,
    ])
    train(cfg)
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def run(tmp_path_factory, sessions_dir) -> dict:
    """A tiny checkpoint trained for real on the 3 training chorales (2 epochs)."""
    out = tmp_path_factory.mktemp("run")
    metrics = run_train(
        out, sessions_dir, "data=default", "data.session=chorales", "data.view=tracks", f"data.val_fraction={VAL}",
        f"data.test_fraction={TEST}", "data.seq_len=48", "data.batch_size=8", "data.transpose=0",
        "data.repeat_bars=0", "data.final_bar=false",  # rows are the note files' words, which split_counts
        # counts (folded: test_repeats; a marked last bar: test_endings)
        "model.embed_dim=16", "model.hidden_size=32", "model.num_layers=1", "trainer.max_epochs=2",
    )
    assert Path(metrics["best_checkpoint"]).is_file()
    return metrics


@pytest.fixture(scope="module")
def model(run):
    return load_generator(run["best_checkpoint"])


@pytest.fixture(scope="module")
def session(model) -> dict:
    return dict(model.hparams.session)


def split_counts(sessions_dir, split="test") -> tuple[int, int]:
    """(words incl. inst_KEY and <eos>, notes) of a split, read straight from the note files."""
    words = notes = 0
    files = split_pieces(sessions_dir / "chorales", split, VAL, TEST).values()
    for path in (p for piece in files for p in piece):
        record = json.loads(path.read_text())
        words += len(record["words"].split()) + 2
        notes += len(record["notes"]["pitch"])
    return words, notes


# ---------------------------------------------------------------------------------------
# likelihood


def test_ngram_and_lstm_predict_the_same_words(run, sessions_dir):
    words, notes = split_counts(sessions_dir)
    assert notes > 300
    for mode in ("tracks", "windows"):
        [ev] = evaluate_checkpoints([run["best_checkpoint"]], mode=mode, orders=(1, 2, 3, 4), log=lambda m: None)
        ngram, lstm = ev.scores
        assert ngram.name.startswith("n-gram") and ngram.detail["order"] in (1, 2, 3, 4)
        assert (ngram.words, ngram.notes) == (lstm.words, lstm.notes), mode
        assert ev.data["pieces"] == {"train": 3, "val": 1, "test": 2}
        for s in ev.scores:
            assert math.isfinite(s.bits_per_note) and s.bits_per_note > 0
            assert s.bits_per_note == pytest.approx(s.bits / s.notes)
        if mode == "tracks":  # every test word once, counted independently from the note files
            assert (lstm.words, lstm.notes) == (words, notes)
            assert ev.data["test_sequences"] == ev.data["test_tracks"] == 8  # 2 chorales x 4 voices
        else:  # windows of 47 words tile each track: every note once, one inst_KEY per window
            assert ev.data["test_sequences"] > ev.data["test_tracks"]
            assert lstm.notes == notes
            assert lstm.words == words + ev.data["test_sequences"] - ev.data["test_tracks"]
    # 2 epochs on 3 chorales: the n-gram, whose order is chosen on validation, is far ahead
    assert ngram.bits_per_note < lstm.bits_per_note


def test_checkpoints_with_other_windows_share_the_tracks_table(run, sessions_dir, tmp_path):
    """A seed-like run (windows of 16 words): one table with whole tracks, two with windows."""
    short = run_train(
        tmp_path, sessions_dir, "data=default", "data.session=chorales", f"data.val_fraction={VAL}",
        f"data.test_fraction={TEST}", "data.seq_len=16", "data.repeat_bars=0", "data.final_bar=false", "data.fill_share=0",
        "data.batch_size=8", "model.embed_dim=8",
        "model.hidden_size=16", "model.num_layers=1", "trainer.max_epochs=1",
    )
    ckpts = [("long", run["best_checkpoint"]), ("short", short["best_checkpoint"])]
    [ev] = evaluate_checkpoints(ckpts, mode="tracks", orders=(1, 2), log=lambda m: None)
    assert [s.name for s in ev.scores][1:] == ["long", "short"]
    assert [s.detail["seq_len"] for s in ev.scores[1:]] == [48, 16]
    assert len({(s.words, s.notes) for s in ev.scores}) == 1
    by_window = evaluate_checkpoints(ckpts, mode="windows", orders=(1, 2), log=lambda m: None)
    assert [ev.data["seq_len"] for ev in by_window] == [48, 16]
    for ev in by_window:
        ngram, lstm = ev.scores
        assert (ngram.words, ngram.notes) == (lstm.words, lstm.notes)
    # shorter windows: more of them, so more inst_KEY targets; the notes are the same
    assert by_window[1].scores[0].words > by_window[0].scores[0].words
    assert by_window[1].scores[0].notes == by_window[0].scores[0].notes == split_counts(sessions_dir)[1]
    assert by_window[1].scores[1].bits_per_note == pytest.approx(short["test"]["test/bits_per_note"], rel=1e-4)


def test_windows_mode_reproduces_train_py_test_metrics(run):
    [ev] = evaluate_checkpoints([run["best_checkpoint"]], mode="windows", orders=(1, 2), log=lambda m: None)
    lstm = ev.scores[1]
    test = run["test"]
    assert (lstm.words, lstm.notes) == (int(test["test/words"]), int(test["test/notes"]))
    assert lstm.bits_per_note == pytest.approx(test["test/bits_per_note"], rel=1e-4)
    # test/loss averages batch means; test/ppl is exact over words
    assert lstm.bits_per_word * math.log(2) == pytest.approx(math.log(test["test/ppl"]), rel=1e-4)


def test_lstm_scoring_in_chunks_equals_one_pass(model, sessions_dir):
    from deeporb.checkpoints import facts
    from deeporb.evaluation.likelihood import datamodule_for, score_lstm

    seqs = split_sequences(datamodule_for(facts(model)), "test", "tracks")
    whole = score_lstm(model, seqs, batch_size=3, chunk=10_000)
    chunked = score_lstm(model, seqs, batch_size=8, chunk=37)
    assert chunked.bits == pytest.approx(whole.bits, rel=1e-5)
    one = score_lstm(model, seqs[:1], batch_size=1)
    with torch.no_grad():  # direct: the summed cross-entropy of one forward pass, in bits
        t = torch.as_tensor(seqs[0])[None]
        logits, _ = model(t[:, :-1])
        nll = torch.nn.functional.cross_entropy(logits[0], t[0, 1:], reduction="sum")
    assert one.bits == pytest.approx(float(nll) / math.log(2), rel=1e-5)
    assert (one.words, one.notes) == count_targets(seqs[:1], model.vocab)


def test_evaluate_only_run_uses_the_checkpoints_split(run, sessions_dir, tmp_path):
    # the data config says another session and other fractions: the checkpoint's must win
    metrics = run_train(tmp_path, sessions_dir, "train=false", "test=true",
                        f"ckpt_path={run['best_checkpoint']}", "data.val_fraction=0.1",
                        "data.test_fraction=0.1")
    assert metrics["test"]["test/notes"] == run["test"]["test/notes"]
    assert metrics["test"]["test/words"] == run["test"]["test/words"]
    assert metrics["test"]["test/bits_per_note"] == pytest.approx(run["test"]["test/bits_per_note"], rel=1e-6)
    assert metrics["val"]["val/notes"] >= split_counts(sessions_dir, "val")[1] > 0
    assert sorted(p.name for p in sessions_dir.iterdir()) == ["chorales"]  # nothing else encoded


def evaluate_command(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python evaluate.py OVERRIDES``, as a user runs it (wide rich tables, its own cwd)."""
    env = dict(os.environ, COLUMNS="200", PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(ROOT / "evaluate.py"), *overrides, f"hydra.run.dir={cwd / 'hydra'}"],
                          cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def test_evaluate_command_prints_every_row(run, tmp_path):
    out = tmp_path / "rows.json"
    ckpt = run["best_checkpoint"]
    run_dir = str(Path(ckpt).parents[1])
    proc = evaluate_command(f"checkpoints={{tiny: '{ckpt}'}}", f"ckpt_path='{run_dir}'", "orders=[1,2,3]",
                            f"json='{out}'", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stdout = proc.stdout
    assert "test bits/note" in stdout and "bits/word" in stdout and "2 pieces, 8 tracks" in stdout
    lines = [line for line in stdout.splitlines() if line.startswith("│")]
    assert len(lines) == 3
    assert lines[0].split("│")[1].strip().startswith("n-gram (")
    assert lines[1].split("│")[1].strip() == "tiny"
    assert lines[2].split("│")[1].strip().startswith("LSTM 1×32 (")
    [table] = json.loads(out.read_text())
    rows = table["rows"]
    assert [r["name"] for r in rows][1] == "tiny" and rows[1]["checkpoint"] == rows[2]["checkpoint"] == ckpt
    assert rows[1]["bits_per_note"] == rows[2]["bits_per_note"]
    for r, line in zip(rows, lines, strict=True):
        assert f"{r['bits_per_note']:.4f}" in line and f"{r['notes']:,}" in line
    assert rows[0]["order"] in (1, 2, 3) and table["data"]["mode"] == "tracks"


def test_command_errors_are_one_line(tmp_path):
    for overrides, start, named in (
        ([f"ckpt_path={tmp_path / 'missing.ckpt'}"], "error: checkpoint", "missing.ckpt"),
        ([], "error: pass ckpt_path=", "checkpoints={LABEL: RUN_OR_CKPT"),
        ([f"ckpt_path={tmp_path}", "mode=bars"], "error: mode must be one of tracks, windows", "'bars'"),
    ):
        proc = evaluate_command(*overrides, cwd=tmp_path)
        assert proc.returncode == 2, (overrides, proc.stderr[-2000:])
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(start) and named in lines[0], (overrides, lines)


def test_moved_sessions_are_named_with_the_fix(run, tmp_path):
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    with pytest.raises(UserError, match="unknown session 'chorales'"):
        evaluate_checkpoints([run["best_checkpoint"]], sessions_dir=moved, log=lambda m: None)


# ---------------------------------------------------------------------------------------
# music statistics


def test_reference_pieces_are_the_held_out_pieces(session, sessions_dir):
    pieces = reference_pieces(session)
    assert len(pieces) == 2
    assert all(split_of(p["piece"], VAL, TEST) == "test" for p in pieces)
    assert {p["piece"] for p in pieces} == set(split_pieces(sessions_dir / "chorales", "test", VAL, TEST))
    assert sum(len(p["pitch"]) for p in pieces) == split_counts(sessions_dir)[1]
    assert all(p["instruments"] == ["alto", "bass", "soprano", "tenor"] and p["tracks"] == 4 for p in pieces)
    train = reference_pieces(session, "train")
    assert len(train) == 3 and all(split_of(p["piece"], VAL, TEST) == "train" for p in train)
    soprano = reference_pieces(session, instruments=["soprano"])
    assert [p["instruments"] for p in soprano] == [["soprano"], ["soprano"]]
    assert sum(len(p["pitch"]) for p in soprano) < sum(len(p["pitch"]) for p in pieces) / 2
    for p in pieces:  # on the model's grid: 12 steps per quarter
        assert np.allclose(p["onset"] * 12, np.round(p["onset"] * 12))
        # each track is a part; the piece's own columns are the parts together
        assert sorted(part["instrument"] for part in p["parts"]) == p["instruments"]
        assert not any(part["is_drum"] for part in p["parts"])
        assert sorted(np.concatenate([part["pitch"] for part in p["parts"]])) == sorted(p["pitch"])


def noise_pieces(n: int, quarters: float = 64.0, seed: int = 0) -> list[dict]:
    """White noise: uniform onsets, durations and pitches over the whole MIDI range."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = 250
        out.append({"onset": np.sort(rng.uniform(0, quarters, k)), "duration": rng.uniform(0.05, 4.0, k),
                    "pitch": rng.integers(0, 128, k), "velocity": np.full(k, 64)})
    return out


def test_real_held_out_pieces_overlap_and_noise_does_not(session):
    real_pieces = reference_pieces(session, "train") + reference_pieces(session, "val")
    real = {r["feature"]: r for r in compare_samples(real_pieces, session)}
    noise = {r["feature"]: r for r in compare_samples(noise_pieces(4), session)}
    # rhythm does not depend on the key: real chorales agree, noise is far off
    for name in ("note_length_histogram", "ioi_histogram", "onset_position_histogram"):
        assert real[name]["overlap"] > 0.8, name
        assert noise[name]["overlap"] < real[name]["overlap"] - 0.5, name
    # 2 held-out chorales in their own keys: pitch classes differ even between real pieces
    # (0.55 here, 0.85+ over 10 vs 10 in test_metrics.py), but pitches spread over the whole
    # MIDI range are still far further away
    assert noise["pitch_histogram"]["overlap"] < real["pitch_histogram"]["overlap"] - 0.25
    for name in ("scale_consistency", "pitch_range", "pitch_entropy", "groove_consistency"):
        assert noise[name]["overlap"] < 0.05 < 0.5 < real[name]["overlap"], name
    summary, floor = overlap_summary(list(real.values())), overlap_summary(list(noise.values()))
    assert summary["histogram"] > 0.6 and floor["histogram"] < summary["histogram"] - 0.25
    assert summary["scalar"] > 0.5 > 0.2 > floor["scalar"]
    assert real["scale_consistency"]["ref_mean"] > 0.85 and real["pitch_range"]["n_ref"] >= 2
    # the real pieces and their excerpts keep their four voices: the cross-part rows are
    # there, and Bach's voices are consonant with each other; noise has no parts, so no rows
    for side in ("gen_mean", "ref_mean"):
        assert real["cross_part_consonance"][side] > 0.8
        assert real["key_consistency"][side] > 0.85
    assert real["cross_part_consonance"]["kind"] == "cross_part" and summary["cross_part"] > 0.3
    assert "cross_part_consonance" not in noise and math.isnan(floor["cross_part"])


def test_compare_samples_takes_the_samplers_results(model, session, tmp_path):
    results = sample(SampleConfig(out_dir=tmp_path, num_samples=2, bars=4, seed=1, instruments=["soprano"],
                                  render=RenderConfig(piano_roll=False)), model=model)
    rows = {r["feature"]: r for r in compare_samples(results, session)}
    assert rows["pitch_histogram"]["n_gen"] == 2 and rows["pitch_histogram"]["n_ref"] >= 2
    # only the soprano voice of the held-out chorales is the reference
    ref = rows["pitch_histogram"]["ref_hist"]
    assert ref[:55].sum() == 0 and ref.sum() == pytest.approx(1.0)
    full = {r["feature"]: r for r in compare_samples(results, session, instruments=["bass", "soprano"])}
    assert full["pitch_histogram"]["ref_hist"][:55].sum() > 0.2
    # 4 bars of 4/4 samples: the reference chorales are cut into 16-quarter excerpts
    assert rows["note_density"]["n_ref"] > len(reference_pieces(session))
    # what sample.py holds is the checkpoint path (or run folder): the same comparison
    by_path = compare_samples(results, str(Path(model.checkpoint_path).parents[1]))
    np.testing.assert_array_equal([r["overlap"] for r in by_path], [r["overlap"] for r in rows.values()])


def test_excerpts_cut_shift_and_clip():
    piece = {"onset": np.array([0.0, 1.0, 4.5, 7.0, 8.5]), "duration": np.array([1.0, 5.0, 1.0, 2.0, 2.0]),
             "pitch": np.array([60, 62, 64, 65, 67]), "velocity": np.full(5, 80)}
    a, b, c = excerpts(piece, 4.0)
    assert a["onset"].tolist() == [0.0, 1.0] and a["duration"].tolist() == [1.0, 3.0]
    assert b["onset"].tolist() == [0.5, 3.0] and b["duration"].tolist() == [1.0, 1.0]
    assert c["pitch"].tolist() == [67] and c["onset"].tolist() == [0.5] and c["duration"].tolist() == [2.0]
    assert len(excerpts(piece, 8.0)) == 1  # a 2.5-quarter tail of an 8-quarter cut is dropped
    # parts are cut alike; a part silent in an excerpt is left out of it
    low = {"onset": np.array([0.0, 1.0]), "duration": np.array([1.0, 5.0]), "pitch": np.array([60, 62])}
    high = {"onset": np.array([4.5, 7.0, 8.5]), "duration": np.array([1.0, 2.0, 2.0]),
            "pitch": np.array([64, 65, 67]), "instrument": "flute"}
    a, b, c = excerpts({**piece, "parts": [low, high]}, 4.0)
    assert [len(x["parts"]) for x in (a, b, c)] == [1, 1, 1]
    assert a["parts"][0]["duration"].tolist() == [1.0, 3.0]
    assert b["parts"][0]["onset"].tolist() == [0.5, 3.0] and b["parts"][0]["instrument"] == "flute"
    assert len(excerpts(piece, 100.0)) == 1  # a short piece stays whole
