"""Checkpoints are data: loading one never runs code. A real checkpoint with a pickled payload
in its hyper-parameters is refused by every app (sample, evaluate, serve, train's resume and
evaluate-only runs) in one ``error:`` line, and the payload never runs; what train.py writes
loads with ``torch.load(weights_only=True)`` and resumes.

The apps run with ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which makes every ``torch.load`` that
does not ask for data only run what the file holds, so a load anywhere on the way that forgets
``weights_only=True`` (DeepOrb's or Lightning's) runs the payload and fails these tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import deeporb.stages.train as train_stage
from deeporb.checkpoints import read_checkpoint
from deeporb.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "model.embed_dim=16", "model.hidden_size=16", "model.num_layers=1", "data.seq_len=32", "data.batch_size=8",
    "trainer.enable_progress_bar=false", "++callbacks.rich_progress_bar=null", "++callbacks.model_summary=null",
    "trainer.val_check_interval=2", "trainer.num_sanity_val_steps=0", "logger=csv",
]
UNSAFE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"  # set to 1: a load that does not ask for data only runs code


class MakeDir:
    """Unpickled in full, it makes the folder ``marker``: the stand-in for any code a file runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def config(out: Path, sessions: Path, *overrides: str):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={out}", f"paths.sessions_dir={sessions}",
                                           "data.session=chorales", *TINY, *overrides])


@pytest.fixture(scope="module")
def run_dir(chorale_sessions_dir, tmp_path_factory) -> Path:
    """A real train.py run of 4 steps: checkpoints at steps 2 and 4, and last.ckpt."""
    out = tmp_path_factory.mktemp("trusted")
    train_stage.train(config(out, chorale_sessions_dir, "trainer.max_steps=4"))
    return out


@pytest.fixture(scope="module")
def attack(run_dir, tmp_path_factory) -> tuple[Path, Path]:
    """(the checkpoint, its marker): the run's last.ckpt with a payload added to its
    hyper-parameters that makes the marker folder when the file is unpickled in full. The
    payload is checked to be live, so a marker that never appears means it never ran."""
    folder = tmp_path_factory.mktemp("attack")
    marker = folder / "payload-ran"
    data = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    data["hyper_parameters"]["note"] = MakeDir(marker)
    path = folder / "gift.ckpt"
    torch.save(data, path)
    torch.load(path, weights_only=False)
    assert marker.is_dir(), "the payload must run when the file is unpickled in full"
    marker.rmdir()
    return path, marker


def refusal(path: Path) -> str:
    return (f"error: checkpoint {str(path)!r} holds Python objects that loading would run (os.makedirs); "
            "DeepOrb loads checkpoints as data only: use one written by train.py")


APPS = {  # each app's arguments besides ckpt_path=: what a user runs
    "sample": ["sample.py", "num_samples=1", "bars=1", "out_dir={tmp}/samples"],
    "evaluate": ["evaluate.py", "hydra.run.dir={tmp}/hydra"],
    "serve": ["serve.py", "port=0", "out_dir={tmp}/pieces"],
    "train-resume": ["train.py", "paths.sessions_dir={sessions}", "data.session=chorales", "trainer.max_steps=6",
                     "hydra.run.dir={tmp}/resumed", *TINY],
    "train-evaluate-only": ["train.py", "train=false", "test=true", "hydra.run.dir={tmp}/evaluated", *TINY],
}


@pytest.fixture(scope="module")
def ran(attack, chorale_sessions_dir, tmp_path_factory) -> dict[str, tuple[int, str, str]]:
    """Every app run on the attack checkpoint, all at once (they spend their time importing):
    app -> (exit code, stdout, stderr)."""
    path, _ = attack
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update({UNSAFE: "1"}, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")
    procs = {}
    for name, (script, *args) in APPS.items():
        tmp = tmp_path_factory.mktemp(name)
        filled = [a.format(tmp=tmp, sessions=chorale_sessions_dir) for a in args]
        procs[name] = subprocess.Popen([sys.executable, str(ROOT / script), f"ckpt_path={path}", *filled], cwd=tmp,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    results = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results[name] = (proc.returncode, out, err)
    return results


# -- a checkpoint that would run code is refused by every app ---------------------------


@pytest.mark.parametrize("name", list(APPS))
def test_every_app_refuses_a_checkpoint_that_would_run_code_in_one_line(name, ran, attack):
    path, marker = attack
    code, out, err = ran[name]
    assert not marker.exists(), "an app ran the checkpoint's payload"
    assert code == 2, out + err
    assert [line for line in err.splitlines() if line.strip()] == [refusal(path)], err
    assert "serving" not in out


def test_a_run_folder_whose_best_checkpoint_would_run_code_is_refused_in_one_line(attack, tmp_path):
    path, marker = attack
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    best = tmp_path / "run" / "checkpoints" / "best-epoch=0.ckpt"
    best.write_bytes(path.read_bytes())
    with pytest.raises(UserError) as e:
        read_checkpoint(tmp_path / "run")
    assert f"error: {e.value}" == refusal(best) and not marker.exists()


def test_lightnings_own_read_of_the_checkpoint_is_data_only_too(
    run_dir, attack, chorale_sessions_dir, tmp_path, monkeypatch
):
    """The file is swapped for the payload after DeepOrb read it as data and before Lightning's
    resume reads it again: Lightning refuses it too, in the same line."""
    path, marker = attack
    monkeypatch.setenv(UNSAFE, "1")
    clean = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    monkeypatch.setattr(train_stage, "read_checkpoint", lambda _: clean)
    with pytest.raises(UserError) as e:
        train_stage.train(config(tmp_path, chorale_sessions_dir, f"ckpt_path={path}", "trainer.max_steps=6"))
    assert f"error: {e.value}" == refusal(path)
    assert not marker.exists()


# -- what train.py writes is data --------------------------------------------------------


def test_what_train_writes_loads_as_data_only_and_resumes(run_dir, chorale_sessions_dir, tmp_path, monkeypatch):
    for ckpt in (run_dir / "checkpoints").glob("*.ckpt"):
        data = torch.load(ckpt, weights_only=True)  # raises if anything in it is not plain data
        assert data["hyper_parameters"]["session"]["names"] == ["chorales"]
        assert data["deeporb_config"]["model"]["hidden_size"] == 16
        assert data["callbacks"] and data["optimizer_states"] and data["lr_schedulers"]
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4
    monkeypatch.setenv(UNSAFE, "1")
    with warnings.catch_warnings(record=True) as caught:  # torch warns when the variable makes a load full
        warnings.simplefilter("always")
        train_stage.train(config(tmp_path, chorale_sessions_dir, f"ckpt_path={last}", "trainer.max_steps=6"))
    assert not [w for w in caught if UNSAFE in str(w.message)], "a load did not ask for data only"
    assert json.loads((tmp_path / "metrics.json").read_text())["global_step"] == 6
    resumed = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["global_step"] == 6 and int(resumed["optimizer_states"][0]["state"][0]["step"]) == 6
