"""Scale-out without code changes: DDP on CPU, Optuna, joblib and SLURM launchers; the configs they compose."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir

from deeporb.stages.encode import encode_session

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "model=lstm_small", "model.embed_dim=16", "model.hidden_size=16", "model.num_layers=1",
    "data.seq_len=32", "data.batch_size=8", "data.val_fraction=0.3", "data.test_fraction=0.2",
    "trainer.max_epochs=1", "++trainer.limit_train_batches=4", "++trainer.limit_val_batches=2",
    "++trainer.limit_test_batches=2", "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false",
    "~callbacks.rich_progress_bar", "~callbacks.model_summary",
]


@pytest.fixture(scope="module")
def sessions(chorale_midi_dir, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("sessions")
    encode_session(midi_dir=str(chorale_midi_dir), session="chorales", sessions_dir=str(d), instrument_key="name", workers=1)
    return d


def train(tmp_path: Path, sessions: Path, *overrides: str, timeout: int = 300) -> subprocess.CompletedProcess:
    flags = [o for o in overrides if o.startswith("-")]  # -m must precede the overrides
    overrides = tuple(o for o in overrides if not o.startswith("-"))
    cmd = [
        sys.executable, str(ROOT / "train.py"), *flags, "data=bach_chorales", "data.session=chorales",
        f"data.sessions_dir={sessions}", "data.encode=null", f"paths.log_dir={tmp_path / 'outputs'}",
        *TINY, *overrides,
    ]
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", PYTHONWARNINGS="ignore")
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def test_ddp_sim_trains_with_two_processes(tmp_path, sessions):
    out = train(tmp_path, sessions, "trainer=ddp_sim", "logger=csv")
    runs = [p.parent for p in (tmp_path / "outputs").rglob("metrics.json")]
    assert len(runs) == 1, runs  # written once, by rank 0
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert metrics["test"]["test/bits_per_note"] > 0 and metrics["val"]["val/loss"] > 0
    assert len(list(runs[0].glob("checkpoints/*.ckpt"))) >= 1
    assert len(list(runs[0].rglob("metrics.csv"))) == 1  # one log, not one per rank
    # each of the 2 ranks took 4 batches of its own shard: 4 optimizer steps in all
    assert metrics["global_step"] == 4
    assert "distributed_backend=gloo" in out.stdout + out.stderr
    assert "All distributed processes registered. Starting with 2 processes" in out.stdout + out.stderr


def test_optuna_sweep_returns_best_and_continues_from_storage(tmp_path, sessions):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    common = ["-m", "hparams_search=optuna", "logger=csv", f"hydra.sweeper.storage={storage}",
              "hydra.sweeper.study_name=t", "hydra.sweeper.sampler.n_startup_trials=1",
              f"hydra.sweep.dir={tmp_path / 'sweep'}"]  # the real search space of configs/hparams_search
    train(tmp_path, sessions, *common, "hydra.sweeper.n_trials=2")
    result = (tmp_path / "sweep" / "optimization_results.yaml").read_text()
    assert "best_value" in result and "model.optimizer.lr" in result
    values = [json.loads(p.read_text())["val"]["val/bits_per_note"] for p in (tmp_path / "sweep").rglob("metrics.json")]
    assert len(values) == 2
    best = float(result.split("best_value:")[1].split()[0])
    assert best == pytest.approx(min(values), rel=1e-5)

    import optuna

    train(tmp_path, sessions, *common, "hydra.sweeper.n_trials=1")  # same study: one more trial
    study = optuna.load_study(study_name="t", storage=storage)
    assert len(study.trials) == 3 and all(t.value is not None for t in study.trials)


def test_joblib_multirun_runs_two_jobs(tmp_path, sessions):
    train(tmp_path, sessions, "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "logger=csv",
          "model.hidden_size=8,16", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    runs = sorted((tmp_path / "sweep").glob("*/metrics.json"))
    assert [p.parent.name for p in runs] == ["0", "1"]
    sizes = sorted(yaml.safe_load((p.parent / ".hydra" / "config.yaml").read_text())["model"]["hidden_size"] for p in runs)
    assert sizes == [8, 16]
    assert all(json.loads(p.read_text())["val"]["val/loss"] > 0 for p in runs)


def test_slurm_launcher_and_gpu_trainers_compose():
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm_gpu", "trainer=ddp", "trainer.num_nodes=2"], return_hydra_config=True)
        launcher = cfg.hydra.launcher
        assert launcher._target_.endswith("SlurmLauncher")
        assert (launcher.partition, launcher.gpus_per_node, launcher.tasks_per_node, launcher.timeout_min) == ("gpu", 4, 4, 240)
        assert (cfg.trainer.strategy, cfg.trainer.num_nodes, cfg.trainer.precision) == ("ddp", 2, "bf16-mixed")
        plain = compose("train", overrides=["hydra/launcher=submitit_slurm", "hydra.launcher.partition=p"], return_hydra_config=True)
        assert plain.hydra.launcher.partition == "p"
        gpu = compose("train", overrides=["trainer=gpu"])
        assert (gpu.trainer.accelerator, gpu.trainer.precision) == ("gpu", "bf16-mixed")


def test_original_baseline_is_the_original_network_on_its_windows():
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        plain = compose("train")
        original = compose("train", overrides=["model=original"])
        baseline = compose("train", overrides=["experiment=original_baseline", "data=nottingham"])
    model = original.model
    assert (model.embed_dim, model.hidden_size, model.num_layers, model.optimizer._target_) == (64, 64, 1, "torch.optim.SGD")
    assert original.data == plain.data and original.seed == plain.seed  # model=original sets only the model
    assert baseline.model == model and (baseline.data.seq_len, baseline.data.batch_size) == (16, 16)
    assert baseline.data.session == "nottingham"  # any corpus: the experiment leaves data= alone

