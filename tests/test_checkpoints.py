"""Tests for deeporb/checkpoints.py and deeporb/data/facts.py: run folders resolve, every broken
checkpoint is its own one-line error (one holding Python objects too, whose payload never runs),
the model is built one way, what it writes is plain data, and the session facts read old
checkpoints with one set of defaults."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from omegaconf import OmegaConf

from deeporb.checkpoints import facts, load_generator, read_checkpoint, resolve_checkpoint
from deeporb.data.facts import SessionFacts, plain_data
from deeporb.encoding.words import PAD, EncodingConfig, Vocabulary
from deeporb.errors import UserError
from deeporb.model import LSTMGenerator

VOCAB = Vocabulary(EncodingConfig(), ("acoustic_bass", "soprano"))
SESSION = SessionFacts(
    names=("choir",), sessions_dir="/data/sessions", val_fraction=0.2, test_fraction=0.1,
    instruments_filter=("soprano",), seq_len=64, qpm_median=90.0, time_signatures={"3/4": 5, "4/4": 2},
    instruments={"soprano": {"program": 53, "is_drum": False, "tracks": 6, "notes": 300}},
    instrument_keys=VOCAB.instruments, instrument_key="name", encoding=VOCAB.config,
    pieces={"train": 4, "val": 1, "test": 1},
)


class MakeDir:
    """Unpickled in full, it makes the folder ``marker``: the stand-in for any code a file runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


class Style:
    """An object a careless caller might hand the model as a hyper-parameter."""


def save_trained(path: Path, session: dict | None, vocab=None) -> Path:
    """A checkpoint written by a real ``pl.Trainer`` after one step on random words."""
    torch.manual_seed(0)
    model = LSTMGenerator(VOCAB.to_dict() if vocab is None else vocab, embed_dim=8, hidden_size=16, num_layers=1, dropout=0.0, session=session)
    tokens = torch.randint(len(VOCAB), (4, 12))
    tokens[:, -2:] = VOCAB.index[PAD]
    loader = torch.utils.data.DataLoader([{"tokens": t} for t in tokens], batch_size=4)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(model, loader)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run")
    return save_trained(run / "checkpoints" / "best-epoch=0.ckpt", SESSION.to_dict())


def error_line(call) -> str:
    with pytest.raises(UserError) as e:
        call()
    message = str(e.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------------
# finding and reading a checkpoint


def test_run_folder_resolves_to_its_best_checkpoint(ckpt, tmp_path):
    assert resolve_checkpoint(ckpt.parents[1]) == ckpt
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(ckpt, run / "checkpoints" / "last.ckpt")
    assert resolve_checkpoint(run) == run / "checkpoints" / "last.ckpt"
    shutil.copy(ckpt, run / "checkpoints" / "epoch=3-step=9.ckpt")
    (run / "metrics.json").write_text(json.dumps({"best_checkpoint": "checkpoints/epoch=3-step=9.ckpt"}))
    assert resolve_checkpoint(run) == run / "checkpoints" / "epoch=3-step=9.ckpt"
    # a run folder moved after training: its metrics.json names the old absolute path
    moved = {"best_checkpoint": "/old/place/run/checkpoints/epoch=3-step=9.ckpt"}
    (run / "metrics.json").write_text(json.dumps(moved))
    assert resolve_checkpoint(run) == run / "checkpoints" / "epoch=3-step=9.ckpt"
    assert read_checkpoint(run)["hyper_parameters"]["session"]["names"] == ["choir"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no checkpoint in run folder" in error_line(lambda: resolve_checkpoint(empty))
    assert error_line(lambda: resolve_checkpoint(None)).startswith("pass ckpt_path")


def broken(kind: str, ckpt: Path, folder: Path) -> Path:
    """A file that is wrong in one way."""
    path = folder / f"{kind}.ckpt"
    if kind == "missing":
        return path
    if kind == "truncated":
        path.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"state_dict": {}, "hyper_parameters": {}}))
    elif kind == "foreign":  # someone else's Lightning checkpoint: no vocabulary
        torch.save({"state_dict": {"w": torch.zeros(2)}, "hyper_parameters": {"lr": 1}}, path)
    elif kind == "weights_only":
        torch.save(torch.load(ckpt, weights_only=True)["state_dict"], path)
    else:
        data = torch.load(ckpt, map_location="cpu", weights_only=True)
        if kind == "code":  # a real checkpoint with a payload in its hyper-parameters
            data["hyper_parameters"]["note"] = MakeDir(folder / "ran")
        elif kind == "unreadable_vocab":
            data["hyper_parameters"]["vocab"] = {"config": {"no_such_setting": 1}, "instruments": []}
        else:  # another vocabulary than the weights were trained with
            data["hyper_parameters"]["vocab"]["config"]["velocity_bins"] = 16
        torch.save(data, path)
    return path


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("missing", r"checkpoint '.*missing.ckpt' not found; pass ckpt_path="),
        ("truncated", r"cannot read checkpoint '.*truncated.ckpt' \(truncated, or not written by torch.save\)"),
        ("pickle", r"cannot read checkpoint '.*pickle.ckpt' \(truncated, or not written by torch.save\): "
                   r"Unsupported operand"),
        ("code", r"checkpoint '.*code.ckpt' holds Python objects that loading would run \(os.makedirs\); "
                 r"DeepOrb loads checkpoints as data only: use one written by train.py$"),
        ("foreign", r"'.*foreign.ckpt' is not a DeepOrb checkpoint .*pass a file written by train.py"),
        ("weights_only", r"'.*weights_only.ckpt' is not a DeepOrb checkpoint"),
        ("unreadable_vocab", r"checkpoint '.*unreadable_vocab.ckpt' has an unreadable vocabulary"),
        ("other_vocab", r"checkpoint '.*other_vocab.ckpt' was trained with another vocabulary \(\d+ words in its weights"),
    ],
)
def test_each_broken_checkpoint_is_its_own_one_line_error(kind, expected, ckpt, tmp_path):
    path = broken(kind, ckpt, tmp_path)
    for read in (read_checkpoint, load_generator, facts):  # every reader says the same line
        message = error_line(lambda r=read: r(path))
        assert re.match(expected, message), message
        assert "weights_only=False" not in message and "trusted source" not in message  # no advice to load unsafely
    assert not (tmp_path / "ran").exists()  # the code payload never ran


def test_the_code_payload_is_live_so_refusing_it_is_what_kept_it_from_running(ckpt, tmp_path):
    path = broken("code", ckpt, tmp_path)
    error_line(lambda: read_checkpoint(path))
    assert not (tmp_path / "ran").exists()
    torch.load(path, weights_only=False)  # what reading used to do
    assert (tmp_path / "ran").is_dir()


def test_load_generator_builds_the_trained_model_for_inference(ckpt):
    model = load_generator(ckpt.parents[1])
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert model.checkpoint_path == ckpt and not model.training
    assert model.vocab == VOCAB and model.hparams.hidden_size == 16
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())


# ---------------------------------------------------------------------------------------
# what a checkpoint holds: plain data


def test_a_model_made_from_hydra_containers_and_numpy_numbers_writes_plain_data(tmp_path):
    session = {**SESSION.to_dict(), "qpm_median": np.float64(90.0), "seq_len": np.int64(64),
               "time_signatures": Counter({"3/4": 5, "4/4": 2}), "sessions_dir": Path("/data/sessions")}
    path = save_trained(tmp_path / "hydra.ckpt", session, vocab=OmegaConf.create(VOCAB.to_dict()))
    hparams = torch.load(path, weights_only=True)["hyper_parameters"]  # loads as data only
    assert type(hparams["vocab"]) is dict and type(hparams["session"]["time_signatures"]) is dict
    assert type(hparams["session"]["qpm_median"]) is float and type(hparams["session"]["seq_len"]) is int
    assert hparams["session"]["sessions_dir"] == "/data/sessions"
    assert facts(path) == SESSION and load_generator(path).vocab == VOCAB


def test_a_value_that_is_not_plain_data_is_refused_where_the_checkpoint_is_made():
    assert plain_data(OmegaConf.create({"a": [1, {"b": 2.5}]})) == {"a": [1, {"b": 2.5}]}
    assert plain_data((np.int32(3), np.arange(2))) == (3, [0, 1])
    with pytest.raises(TypeError, match=r"^LSTMGenerator's session.style is a [\w.]*Style; "
                                        r"a checkpoint holds plain data only"):
        LSTMGenerator(VOCAB.to_dict(), embed_dim=8, hidden_size=8, session={"style": Style()})


# ---------------------------------------------------------------------------------------
# the session facts


def test_facts_read_the_same_from_every_source(ckpt):
    model = load_generator(ckpt)
    hparams = read_checkpoint(ckpt)["hyper_parameters"]
    assert facts(ckpt) == facts(model) == facts(hparams) == facts(hparams["session"]) == SESSION
    assert facts(SESSION) is SESSION


def test_session_facts_round_trip_through_plain_data():
    plain = SESSION.to_dict()
    assert yaml.safe_load(yaml.safe_dump(plain)) == json.loads(json.dumps(plain)) == plain
    assert plain["names"] == ["choir"] and plain["instruments_filter"] == ["soprano"]
    assert plain["encoding"] == VOCAB.config.to_dict() and plain["view"] == "tracks" and plain["styles"] == []
    assert SessionFacts.from_dict(plain) == SESSION
    assert SESSION.meter().signatures == [(3, 4)]
    assert SESSION.instrument_program("soprano") == (53, False)  # what the training tracks used
    assert SESSION.instrument_program("acoustic_bass") == (32, False)  # else the General MIDI name
    assert SESSION.require_split() is SESSION


@pytest.mark.parametrize("old", [None, {}, {"names": ["choir"], "qpm_median": 100.0, "retired_fact": 1}])
def test_an_old_checkpoints_session_is_read_with_one_set_of_defaults(old, tmp_path):
    path = save_trained(tmp_path / "old.ckpt", old)
    got = facts(path)
    assert got.qpm_median == (100.0 if old and "qpm_median" in old else 120.0)
    assert got.time_signatures == {"4/4": 1} and got.meter().signatures == [(4, 4)]
    assert got.instruments == {} and got.instrument_key == "program" and got.view == "tracks"
    assert got.encoding == VOCAB.config and got.instrument_keys == VOCAB.instruments  # from the vocabulary
    assert got.instrument_program("acoustic_bass") == (32, False)
    assert got.seq_len is None and got.instruments_filter is None
    message = error_line(lambda: got.require_split("checkpoint 'old.ckpt'"))
    assert message.startswith("the checkpoint 'old.ckpt''s session facts lack ")
    assert "sessions_dir, val_fraction, test_fraction" in message
    assert load_generator(path).vocab == VOCAB  # and it still samples


def test_a_style_samples_in_its_own_commonest_meter():
    facts = SessionFacts(time_signatures={"2/4": 9, "4/4": 5},
                         style_time_signatures={"chorales": {"4/4": 5}, "folk": {"2/4": 9}})
    assert facts.meter().signatures == [(2, 4)]  # the pooled commonest, with no style named
    assert facts.meter("chorales").signatures == [(4, 4)]
    assert facts.meter("folk").signatures == [(2, 4)]
    assert facts.meter("unknown").signatures == [(2, 4)]
    assert SessionFacts.from_dict(facts.to_dict()) == facts
