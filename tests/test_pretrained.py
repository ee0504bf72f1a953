"""Bundled models: a tiny trained run exported as a compact file and a card, loaded back by
``pretrained:NAME`` from a folder of our own (``$DEEPORB_PRETRAINED_DIR``), sampled from, and used
when no ``ckpt_path`` is given; the demo's and the bundled models' configs count steps."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch
from hydra import compose, initialize_config_dir
from midi_factory import make_midi

import deeporb.stages.train as train_stage
from deeporb.checkpoints import (
    PRETRAINED_DIR_ENV,
    checkpoint_or_default,
    load_generator,
    pretrained_dir,
    pretrained_names,
    resolve_checkpoint,
)
from deeporb.data.facts import SessionFacts
from deeporb.errors import UserError
from deeporb.evaluation.cross_part import cross_part_features
from deeporb.midi import read_midi
from deeporb.pretrained.export import export, sets_to_compare
from deeporb.stages.sample import RenderConfig, SampleConfig, run, sample

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "model.embed_dim=32", "model.hidden_size=32", "model.num_layers=1", "data.seq_len=32", "data.batch_size=8",
    "logger=csv", "trainer.enable_progress_bar=false", "trainer.num_sanity_val_steps=0",
    "++callbacks.rich_progress_bar=null", "++callbacks.model_summary=null", "++callbacks.samples=null",
]


def compose_train(*overrides: str):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=list(overrides))


def train(out: Path, sessions: Path, *overrides: str) -> Path:
    train_stage.train(compose_train(f"paths.output_dir={out}", f"paths.sessions_dir={sessions}",
                                    "data.session=chorales", *TINY, *overrides))
    return out


@pytest.fixture(scope="module")
def exported(chorale_sessions_dir, tmp_path_factory):
    """Six steps of a tiny model, exported as ``tiny`` into a folder of bundled models of our own."""
    run_dir = train(tmp_path_factory.mktemp("run"), chorale_sessions_dir, "trainer.max_steps=6",
                    "trainer.val_check_interval=3")
    folder = tmp_path_factory.mktemp("pretrained")
    done = export(run_dir, "tiny", folder, num_samples=2, bars=2, seed=0, log=lambda message: None)
    return run_dir, done


@pytest.fixture
def bundled(exported, monkeypatch):
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(exported[1].file.parent))
    return exported


def test_the_exported_file_is_float16_weights_and_facts_read_as_data_only(exported):
    run_dir, done = exported
    ckpt = torch.load(done.file, map_location="cpu", weights_only=True)
    assert set(ckpt) == {"format", "state_dict", "hyper_parameters", "global_step", "pretrained"}  # no optimizer
    floats = [v for v in ckpt["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert {"vocab", "session", "hidden_size"} <= set(ckpt["hyper_parameters"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    full = Path(metrics["best_checkpoint"])
    assert done.bytes == done.file.stat().st_size < full.stat().st_size / 2
    record = ckpt["pretrained"]
    assert record["test_bits_per_note"] == pytest.approx(metrics["test"]["test/bits_per_note"])
    assert record["step"] == torch.load(full, weights_only=True)["global_step"]
    assert record["steps_trained"] == 6


def test_the_card_tells_data_steps_bits_and_the_samples_beside_real_music(exported):
    _, done = exported
    card = done.card.read_text()
    assert card.startswith("# pretrained:tiny\n")
    bits = done.record["test_bits_per_note"]
    assert f"| test bits/note | **{bits:.3f}**" in card
    assert "| data | chorales (" in card and "6 steps" in card and "float16" in card
    rows = {r["feature"]: r for r in done.record["ensemble"]["all"]["rows"]}
    shown = ["pitch_range", "cross_part_consonance"] if "cross_part_consonance" in rows else ["pitch_range"]
    for feature in shown:  # cross-part rows when a sample has two parts (the tiny model draws its ensembles)
        r = rows[feature]
        assert re.search(rf"\| {feature} \| {r['gen_mean']:.3f} \| {r['ref_mean']:.3f} \| {r['overlap']:.3f} \|", card)
    assert "2 samples of 2 bars" in card


def test_pretrained_name_loads_the_checkpoints_weights_rounded_to_float16(bundled):
    run_dir, _ = bundled
    small = load_generator("pretrained:tiny")
    full = load_generator(run_dir)
    assert small.checkpoint_path.name == "tiny.ckpt"
    for key, value in full.state_dict().items():
        assert torch.equal(small.state_dict()[key], value.half().float()), key
    tokens = torch.randint(4, len(full.vocab), (2, 24))
    with torch.no_grad():
        loss = [torch.nn.functional.cross_entropy(m(tokens[:, :-1])[0].transpose(1, 2), tokens[:, 1:])
                for m in (small, full)]
    assert loss[0].item() == pytest.approx(loss[1].item(), rel=1e-3)


def test_sampling_from_the_bundled_name_writes_what_the_full_checkpoint_writes(bundled, tmp_path):
    run_dir, _ = bundled
    rounded = load_generator(run_dir)
    with torch.no_grad():
        for p in rounded.parameters():
            p.copy_(p.half().float())  # the bundled file's weights: the draws must then agree exactly
    settings = {"num_samples": 2, "bars": 2, "seed": 5, "render": RenderConfig(piano_roll=False, page=False)}
    ours = sample(SampleConfig(ckpt_path="pretrained:tiny", out_dir=str(tmp_path / "a"), **settings))
    theirs = sample(SampleConfig(out_dir=str(tmp_path / "b"), **settings), model=rounded)
    assert [r.notes for r in ours] == [r.notes for r in theirs] and sum(r.notes for r in ours) > 0
    for a, b in zip(ours, theirs, strict=True):
        assert a.midi.read_bytes() == b.midi.read_bytes()


def test_an_unknown_name_is_one_line_listing_the_bundled_ones(bundled):
    with pytest.raises(UserError) as e:
        resolve_checkpoint("pretrained:nope")
    assert "\n" not in str(e.value) and "'nope'" in str(e.value) and "pretrained:tiny" in str(e.value)
    with pytest.raises(UserError, match="pretrained:tiny"):  # a path is not a name
        resolve_checkpoint("pretrained:../pretrained/tiny")


def test_no_ckpt_path_samples_from_the_default_bundled_model_and_says_so(exported, tmp_path, monkeypatch, capsys):
    folder = tmp_path / "bundled"
    folder.mkdir()
    shutil.copy(exported[1].file, folder / "bach_chorales.ckpt")
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(folder))
    out = tmp_path / "samples"
    run(SampleConfig(num_samples=1, bars=2, seed=0, out_dir=str(out), title="The bundled model",
                     render=RenderConfig(piano_roll=False)))
    said = [line for line in capsys.readouterr().err.splitlines() if "bundled" in line]
    assert said == [f"no ckpt_path given: using the bundled model pretrained:bach_chorales "
                    f"(its card: {folder / 'bach_chorales.md'})"]
    assert json.loads((out / "samples.json").read_text())["checkpoint"] == str(folder / "bach_chorales.ckpt")
    assert "<h1>The bundled model</h1>" in (out / "index.html").read_text()


def test_no_ckpt_path_before_any_model_is_bundled_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setenv(PRETRAINED_DIR_ENV, str(tmp_path))
    assert checkpoint_or_default("run/x.ckpt") == "run/x.ckpt"
    with pytest.raises(UserError) as e:
        checkpoint_or_default(None)
    assert "\n" not in str(e.value) and "make pretrained" in str(e.value) and "ckpt_path=" in str(e.value)


def test_the_bundled_models_load_as_data_ship_with_the_package_and_have_cards(monkeypatch):
    monkeypatch.delenv(PRETRAINED_DIR_ENV, raising=False)
    assert pretrained_dir() == ROOT / "deeporb" / "pretrained"
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert {"*.ckpt", "*.md"} <= set(data["deeporb.pretrained"])
    total = 0
    for name in pretrained_names():  # none until make pretrained has run: then each must hold
        ckpt = torch.load(pretrained_dir() / f"{name}.ckpt", weights_only=True)
        assert all(v.dtype == torch.float16 for v in ckpt["state_dict"].values() if v.is_floating_point())
        assert (pretrained_dir() / f"{name}.md").read_text().startswith(f"# pretrained:{name}\n")
        load_generator(f"pretrained:{name}")
        total += (pretrained_dir() / f"{name}.ckpt").stat().st_size
    assert total < 6_000_000  # a few MB in all


@pytest.mark.parametrize("experiment", ["demo", "pretrained_bach_chorales", "pretrained_styles"])
def test_the_demo_and_the_bundled_models_count_their_budget_in_steps(experiment):
    cfg = compose_train(f"experiment={experiment}", "paths.output_dir=/tmp/unused")
    assert cfg.trainer.max_steps > 0 and cfg.trainer.max_epochs == -1 and cfg.trainer.max_time is None
    assert cfg.trainer.check_val_every_n_epoch is None and cfg.trainer.val_check_interval <= cfg.trainer.max_steps
    if experiment == "demo":  # the clock only guards, and says so when it stops a run
        assert cfg.callbacks.time_guard._target_ == "deeporb.stages.callbacks.TimeGuard"
    else:  # both fit the package in float16: 2 x 256 at most
        assert cfg.model.hidden_size <= 256 and cfg.model.embed_dim <= 256 and cfg.model.num_layers <= 2


def test_the_time_guard_stops_training_and_says_so_in_one_line(chorale_sessions_dir, tmp_path, capsys):
    train(tmp_path, chorale_sessions_dir, "trainer.max_steps=5", "trainer.val_check_interval=5",
          "trainer.check_val_every_n_epoch=null", "test=false",
          "+callbacks.time_guard._target_=deeporb.stages.callbacks.TimeGuard", "+callbacks.time_guard.max_seconds=0")
    assert json.loads((tmp_path / "metrics.json").read_text())["global_step"] == 1
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("time guard")]
    assert said == ["time guard: training stopped at step 1 of 5 after 0 s (the machine is busy or slow), so the "
                    "model is less trained than its config asks; callbacks.time_guard=null trains every step"]


def test_the_export_command_refuses_a_name_that_is_no_key_in_one_line(exported, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "deeporb.pretrained", "export", str(exported[0]), "Bach-Chorales",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and not list(tmp_path.iterdir())
    assert proc.stderr.strip().splitlines() == [
        "error: name 'Bach-Chorales' must be lower-case letters, digits and _ (it becomes pretrained:Bach-Chorales)"]


def test_the_readmes_first_example_samples_from_the_shipped_model_with_nothing_else(tmp_path):
    """``python sample.py`` with no checkpoint, no session and no training, from an empty folder:
    the shipped ``pretrained:bach_chorales`` writes four voices."""
    assert {"bach_chorales", "styles"} <= set(pretrained_names())
    env = {k: v for k, v in os.environ.items() if k != PRETRAINED_DIR_ENV}
    done = subprocess.run([sys.executable, str(ROOT / "sample.py"), "num_samples=2", "bars=4", "seed=0",
                           "out_dir=out", "render.piano_roll=false", "instruments=[soprano,alto,tenor,bass]"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "using the bundled model pretrained:bach_chorales" in done.stderr
    assert not (tmp_path / "data").exists()  # no session was read or made
    samples = json.loads((tmp_path / "out" / "samples.json").read_text())["samples"]
    assert len(samples) == 2 and all(set(s["played"]) == {"soprano", "alto", "tenor", "bass"} for s in samples)


def test_the_shipped_model_harmonizes_a_chorale_melody_keeping_it_note_for_note(chorale_midi_dir, tmp_path):
    """The README's "harmonize a melody" with nothing but the package: a real chorale's soprano
    alone as the primer, ``fill.parts=[alto,tenor,bass]``, no ckpt_path. The melody comes back
    note for note, the three added parts play, and they sound with it (cross-part consonance) far
    above the floor of voices taken from another chorale (0.63 on the held-out chorales,
    docs/benchmarks.md)."""
    soprano = read_midi(sorted(chorale_midi_dir.glob("*.mid"))[3]).tracks[0]
    assert soprano.name.lower() == "soprano"
    columns = [soprano.notes[c] for c in ("onset", "duration", "pitch", "velocity")]
    make_midi(tmp_path / "melody.mid", [{"name": "Soprano", "program": 52, "notes": [
        (int(o * 480), int((o + d) * 480), int(p), int(v)) for o, d, p, v in zip(*columns, strict=True)]}])
    env = {k: v for k, v in os.environ.items() if k != PRETRAINED_DIR_ENV}
    done = subprocess.run([sys.executable, str(ROOT / "sample.py"), "primer=melody.mid", "fill.parts=[alto,tenor,bass]",
                           "fill.candidates=2", "num_samples=2", "seed=0", "out_dir=out", "render.piano_roll=false"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "using the bundled model pretrained:bach_chorales" in done.stderr
    for written in json.loads((tmp_path / "out" / "samples.json").read_text())["samples"]:
        tracks = read_midi(tmp_path / "out" / written["midi"]).tracks
        assert [t.name for t in tracks] == ["soprano", "alto", "tenor", "bass"] and all(len(t) for t in tracks)
        for c in ("onset", "duration", "pitch"):
            assert np.allclose(tracks[0].notes[c], soprano.notes[c])  # the melody, note for note
        assert cross_part_features([t.notes for t in tracks])["cross_part_consonance"] > 0.75


def test_a_card_compares_each_style_with_its_own_sessions_pieces(tmp_path):
    """Sessions trained together in the order (nottingham, beethoven_quartets): the card's
    ``style=beethoven_quartets`` set is compared with beethoven_quartets' pieces, whether the
    checkpoint's facts list the styles in the sessions' order or sorted (before 2026-12-05)."""
    for name in ("nottingham", "beethoven_quartets"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps({"style": name}))
    for styles in (("nottingham", "beethoven_quartets"), ("beethoven_quartets", "nottingham")):
        session = SessionFacts(names=("nottingham", "beethoven_quartets"), sessions_dir=str(tmp_path), styles=styles)
        assert [(style, facts.names) for style, facts in sets_to_compare(session)] == [
            ("nottingham", ("nottingham",)), ("beethoven_quartets", ("beethoven_quartets",))]
