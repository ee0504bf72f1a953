"""sample.py compare=true: samples against the checkpoint's held-out test pieces."""

import json
import os
import subprocess
import sys
from pathlib import Path

from deeporb.data.split import split_of

ROOT = Path(__file__).resolve().parents[1]


def test_sample_compare_prints_and_writes_the_comparison(tmp_path, chorale_sessions_dir):
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONWARNINGS="ignore")
    run = tmp_path / "run"
    train = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "data=bach_chorales", "data.session=chorales",
         f"data.sessions_dir={chorale_sessions_dir}", "data.encode=null", "logger=csv",
         "data.val_fraction=0.3", "data.test_fraction=0.2", "model.embed_dim=16", "model.hidden_size=32",
         "data.seq_len=64", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
         "~callbacks.rich_progress_bar", f"hydra.run.dir={run}"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert train.returncode == 0, train.stderr[-2000:]
    out = tmp_path / "samples"
    sample = subprocess.run(
        [sys.executable, str(ROOT / "sample.py"), f"ckpt_path={run}", "num_samples=3", "bars=4", "seed=3",
         "compare=true", "render.piano_roll=false", f"out_dir={out}"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert sample.returncode == 0, sample.stderr[-2000:]
    assert "samples vs held-out test pieces" in sample.stdout
    assert "pitch_class_histogram" in sample.stdout
    report = json.loads((out / "comparison.json").read_text())
    rows = {r["feature"]: r for r in report["rows"]}
    assert 0 <= rows["pitch_class_histogram"]["overlap"] <= 1 and rows["pitch_class_histogram"]["kl"] >= 0
    assert 0 < report["summary"]["histogram"] <= 1
    # form: the samples beside the whole held-out pieces (longer than the 4-bar samples)
    assert "form/length_overlap" in sample.stdout and 0 <= report["form"]["length_overlap"] <= 1
    assert 1 <= report["form"]["samples"]["form/pieces"] <= 3
    assert report["form"]["reference"]["form/mean_bars"] > 4 >= report["form"]["samples"]["form/mean_bars"]
    # the reference really is the test split of the training session
    test_pieces = [s for s in json.loads((chorale_sessions_dir / "chorales" / "manifest.json").read_text())["pieces"]
                   if split_of(s["source"], 0.3, 0.2) == "test"]
    assert test_pieces and all(r["n_ref"] >= 1 for r in report["rows"])
