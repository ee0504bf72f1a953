"""train.py end to end on real chorales: tiny models, few steps, configs composed in-process
(Hydra's compose API) unless a fresh process is the point (multirun, the CLI error line,
loading a checkpoint with no config)."""

import csv
import importlib.util
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

import deeporb.stages.train  # noqa: F401 - registers the resolvers the configs use
from deeporb.model import LSTMGenerator

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "model.embed_dim=32", "model.hidden_size=32", "model.num_layers=1",
    "data.seq_len=32", "data.batch_size=8",
    "trainer.enable_progress_bar=false", "++callbacks.rich_progress_bar=null", "++callbacks.model_summary=null",
]


def load_train_module():
    spec = importlib.util.spec_from_file_location("train_app", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TRAIN = load_train_module()


def config(out: Path, sessions: Path, *overrides: str):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=[
            f"paths.output_dir={out}", f"paths.sessions_dir={sessions}", "data.session=chorales", "logger=csv",
            *TINY, *overrides,
        ])


def run(out: Path, sessions: Path, *overrides: str):
    """train.py's task function on a composed config (errors go through exit_on_user_error)."""
    return TRAIN.main(config(out, sessions, *overrides))


def logged(out: Path, key: str) -> list[tuple[int, float]]:
    rows = csv.DictReader(open(out / "csv" / "metrics.csv"))
    return [(int(r["step"]), float(r[key])) for r in rows if r.get(key)]


def env_offline() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.fixture(scope="module")
def short_run(chorale_sessions_dir, tmp_path_factory):
    """Six steps with checkpoints: the run that resume and evaluation tests start from."""
    out = tmp_path_factory.mktemp("short")
    value = run(out, chorale_sessions_dir, "trainer.max_steps=6", "trainer.val_check_interval=3",
                "trainer.log_every_n_steps=1", "trainer.num_sanity_val_steps=0")
    return out, value


# -- runs ---------------------------------------------------------------------------------


def test_fast_dev_run_end_to_end(chorale_sessions_dir, tmp_path):
    value = run(tmp_path, chorale_sessions_dir, "debug=fast_dev_run")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["global_step"] == 1
    for split in ("val", "test"):
        m = metrics[split]
        assert m[f"{split}/loss"] > 0 and m[f"{split}/bits_per_note"] > 0 and 0 <= m[f"{split}/acc"] <= 1
        assert m[f"{split}/ppl"] == pytest.approx(math.exp(m[f"{split}/loss"]), rel=1e-4)
    assert value == metrics["val"]["val/bits_per_note"]  # what sweepers minimise


def test_a_tiny_corpus_overfits(chorale_sessions_dir, tmp_path):
    run(tmp_path, chorale_sessions_dir, "debug=overfit", "logger=csv", "trainer.max_epochs=80",
        "model.embed_dim=64", "model.hidden_size=128", "data.seq_len=64", "data.batch_size=4",
        "model.optimizer.lr=0.01")
    losses = [v for _, v in logged(tmp_path, "train/loss")]
    assert len(losses) == 80
    assert losses[-1] <= 0.2 * losses[0], f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"


def test_run_folder_holds_checkpoints_metrics_and_the_learning_rate(short_run):
    out, value = short_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert Path(metrics["best_checkpoint"]).is_file()
    assert Path(metrics["best_checkpoint"]).parent == out / "checkpoints"
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert value == pytest.approx(metrics["val"]["val/bits_per_note"])
    lrs = [v for _, v in logged(out, "lr-AdamW")]
    assert len(lrs) == 6 and lrs[0] < max(lrs) and lrs[-1] < max(lrs)  # warm-up, then cosine decay
    hparams = (out / "csv" / "hparams.yaml").read_text()
    assert "params:" in hparams and "dataset:" in hparams and "optimized_metric" in hparams


def test_resume_continues_the_step_count_and_the_optimizer(short_run, chorale_sessions_dir, tmp_path):
    first, _ = short_run
    last = first / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 6
    run(tmp_path, chorale_sessions_dir, f"ckpt_path={last}", "trainer.max_steps=10",
        "trainer.val_check_interval=3", "trainer.log_every_n_steps=1", "trainer.num_sanity_val_steps=0")
    assert json.loads((tmp_path / "metrics.json").read_text())["global_step"] == 10
    steps = [s for s, _ in logged(tmp_path, "train/loss")]
    assert steps == [6, 7, 8, 9]  # only the four new steps were trained
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    adam = ckpt["optimizer_states"][0]["state"][0]
    assert int(adam["step"]) == 10  # AdamW's moments carried on from step 6


def test_a_checkpoint_with_its_parts_in_key_order_resumes_and_evaluates_in_that_order(chorale_sessions_dir, tmp_path):
    """Checkpoints trained before parts stood top-down hold them by key: resuming one, and
    evaluating it, reads the data in its order (the sessions now say top-down). Its other
    vocabulary settings (here a marked last bar and no repeated bars) come with it too."""
    keyed = ["alto", "bass", "soprano", "tenor"]
    run(tmp_path / "a", chorale_sessions_dir, "data.score_order=[alto,bass,soprano,tenor]", "data.final_bar=true",
        "data.repeat_bars=0", "trainer.max_steps=2", "trainer.val_check_interval=2", "test=false")
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    vocab = torch.load(last, weights_only=True)["hyper_parameters"]["vocab"]
    assert vocab["instruments"] == keyed and vocab.get("final_bar") and not vocab.get("repeat_bars")
    run(tmp_path / "b", chorale_sessions_dir, f"ckpt_path={last}", "trainer.max_steps=4", "trainer.val_check_interval=2",
        "test=false")
    assert json.loads((tmp_path / "b" / "metrics.json").read_text())["global_step"] == 4
    run(tmp_path / "c", chorale_sessions_dir, f"ckpt_path={last}", "train=false", "test=true")
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["test"]["test/loss"] < 10


def test_train_false_evaluates_a_checkpoint_on_its_own_test_split(short_run, tmp_path):
    first, _ = short_run
    trained = json.loads((first / "metrics.json").read_text())
    # no data.session: the checkpoint says which sessions, split and instruments it used
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[
            f"paths.output_dir={tmp_path}", "logger=csv", *TINY, "data.seq_len=256",
            "train=false", "test=true", f"ckpt_path={trained['best_checkpoint']}",
        ])
    TRAIN.main(cfg)
    again = json.loads((tmp_path / "metrics.json").read_text())
    assert again["test"]["test/loss"] == pytest.approx(trained["test"]["test/loss"], rel=1e-5)
    assert again["test"]["test/words"] == trained["test"]["test/words"]


def test_checkpoint_loads_in_a_fresh_process_with_no_config(short_run):
    first, _ = short_run
    code = (
        "import json, sys, torch\n"
        "from deeporb.model import LSTMGenerator\n"
        "m = LSTMGenerator.load_from_checkpoint(sys.argv[1], map_location='cpu')\n"
        "tok = torch.tensor([m.vocab.index['<bos>']])\n"
        "logits, state = m.step(tok)\n"
        "logits, state = m.step(torch.tensor([m.vocab.inst_id('soprano')]), state)\n"
        "print(json.dumps({'session': m.hparams.session, 'vocab': len(m.vocab), 'out': list(logits.shape),\n"
        "  'hidden': m.hparams.hidden_size, 'finite': bool(torch.isfinite(logits).all())}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(first / "checkpoints" / "last.ckpt")],
                          capture_output=True, text=True, cwd="/", env=env_offline(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["hidden"] == 32 and got["finite"] and got["out"] == [1, got["vocab"]]
    session = got["session"]
    assert session["names"] == ["chorales"]
    assert set(session["instruments"]) == {"soprano", "alto", "tenor", "bass"}
    assert session["instruments"]["soprano"] == {"program": 52, "is_drum": False, "tracks": 6,
                                                 "notes": session["instruments"]["soprano"]["notes"]}
    assert session["instruments"]["soprano"]["notes"] > 100
    assert session["qpm_median"] > 0 and sum(session["time_signatures"].values()) >= 6
    assert {session[k] for k in ("val_fraction", "test_fraction")} == {0.1}
    assert session["instruments_filter"] is None and Path(session["sessions_dir"]).is_dir()
    ckpt = torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["deeporb_config"]["model"]["hidden_size"] == 32  # the run config rides along


# -- the errors a user makes end in one line -----------------------------------------------


def one_error_line(capsys, call) -> str:
    with pytest.raises(SystemExit) as e:
        call()
    assert e.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_unknown_session_from_the_command_line_is_one_line(chorale_sessions_dir, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "data.session=chorals", f"paths.sessions_dir={chorale_sessions_dir}",
         f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, cwd=tmp_path, env=env_offline(), timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: unknown session 'chorals' in {chorale_sessions_dir} (existing: chorales); make it with: "
        "python encode.py dataset=bach_chorales  (or: python encode.py midi_dir=DIR session=chorals)"
    )


def test_unknown_instrument_nan_loss_and_vocabulary_mismatch_are_one_line(
    short_run, chorale_sessions_dir, tmp_path, capsys
):
    line = one_error_line(capsys, lambda: run(tmp_path / "a", chorale_sessions_dir, "data.instruments=[viola,alto]"))
    assert line == "error: unknown instrument(s) viola in session(s) chorales; available: alto, bass, soprano, tenor"

    line = one_error_line(capsys, lambda: run(tmp_path / "b", chorale_sessions_dir, "debug=limit",
                                              "model.optimizer.lr=1e30", "trainer.gradient_clip_val=null"))
    assert line.startswith("error: train loss is nan at step") and "model.optimizer.lr" in line

    last = short_run[0] / "checkpoints" / "last.ckpt"
    line = one_error_line(capsys, lambda: run(tmp_path / "c", chorale_sessions_dir, "data.instruments=[soprano]",
                                              f"ckpt_path={last}", "trainer.max_steps=8"))
    assert line.startswith(f"error: checkpoint {last} has a different vocabulary")
    assert "instruments: soprano, alto, tenor, bass" in line


# -- multirun and wandb -------------------------------------------------------------------


def wandb_records(run_dir: Path):
    """Records of an offline run file (wandb's block log: 32 KiB blocks, 7-byte headers)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = next(run_dir.glob("run-*.wandb")).read_bytes()
    assert data[:4] == b":W&B"
    i, buf = 7, b""
    while i + 7 <= len(data):
        left = 32768 - i % 32768
        if left < 7:
            i += left
            continue
        _, n, kind = struct.unpack("<IHB", data[i : i + 7])
        if kind == 0 and n == 0:
            break
        buf += data[i + 7 : i + 7 + n]
        i += 7 + n
        if kind in (1, 4):  # a full record, or the last piece of one
            record = pb.Record()
            record.ParseFromString(buf)
            buf = b""
            yield record


def test_two_job_multirun_logs_to_offline_wandb(chorale_sessions_dir, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "-m", "model=lstm_small,original", "debug=limit", "logger=wandb",
         "data.session=chorales", f"paths.sessions_dir={chorale_sessions_dir}", f"hydra.sweep.dir={tmp_path}",
         *TINY],
        capture_output=True, text=True, cwd=tmp_path, env=env_offline(), timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job, optimizer in (("0", "AdamW"), ("1", "SGD")):
        out = tmp_path / job
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["global_step"] == 10  # debug=limit: 2 epochs of 5 batches
        run_dir = Path(metrics["wandb_dir"])
        assert run_dir.parent == out / "wandb" and run_dir.name.startswith("offline-run-")
        assert f"wandb sync {run_dir}" in proc.stdout
        history, config = [], {}
        for record in wandb_records(run_dir):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                history.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
            elif kind == "config":
                config.update({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.config.update})
        logged_keys = set().union(*history)
        assert {"train/loss", "val/bits_per_note", "val/loss", "test/bits_per_note", "trainer/global_step"} <= logged_keys
        assert f"lr-{optimizer}" in logged_keys
        val = [h["val/bits_per_note"] for h in history if "val/bits_per_note" in h]
        assert val[-1] == pytest.approx(metrics["val"]["val/bits_per_note"], rel=1e-5)
        assert config["params"]["total"] > 0 and config["dataset"]["train"]["pieces"] == 4
        assert config["model"]["optimizer"]["_target_"] == f"torch.optim.{optimizer}"
    original = LSTMGenerator.load_from_checkpoint(tmp_path / "1" / "checkpoints" / "last.ckpt")
    assert original.hparams.num_layers == 1 and not original.hparams.tie_weights


def test_a_run_stopped_before_its_first_validation_finishes(chorale_sessions_dir, tmp_path):
    """max_steps (or max_time) inside epoch 0: early stopping waits for a validation, no crash."""
    run(tmp_path, chorale_sessions_dir, "trainer.max_steps=2", "data.batch_size=2")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["global_step"] == 2
    assert Path(metrics["last_checkpoint"]).is_file() and metrics["test"]["test/bits_per_note"] > 0
