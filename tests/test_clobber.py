"""Outputs never clobber what DeepOrb did not write (issue 17): encode replaces only a session,
sample.py fills only a folder it made, the dataset export empties only its own cache, staging
cleanup removes only its own leftovers, and a folder that cannot be read is a listed skip.
Every refusal is one ``error:`` line before any work, and leaves every file byte for byte."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from midi_factory import make_midi, scale
from pytorch_lightning.trainer.states import TrainerFn

from deeporb.builtin_corpora.export import export_dataset
from deeporb.encoding.words import EncodingConfig, Vocabulary
from deeporb.errors import UserError
from deeporb.fileio import MARKER, owned_folder
from deeporb.model import LSTMGenerator
from deeporb.session_store import MANIFEST, load_manifest
from deeporb.stages.callbacks import SampleLogger
from deeporb.stages.encode import encode_session
from deeporb.stages.sample import RenderConfig, SampleConfig, sample

ROOT = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict[str, str]:
    """Every path under ``folder``: a file's SHA-256, a link's target, or ``dir``."""
    seen = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_symlink():
            seen[rel] = "-> " + os.readlink(path)
        elif path.is_dir():
            seen[rel] = "dir"
        else:
            seen[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return seen


def someones_songs(folder: Path) -> Path:
    """A folder as a person keeps it: MIDI files, notes, a subfolder of pictures."""
    make_midi(folder / "song.mid", [{"name": "Piano", "notes": scale()}])
    make_midi(folder / "live" / "take2.mid", [{"name": "Flute", "program": 73, "notes": scale(pitches=(72, 74))}])
    (folder / "lyrics.txt").write_text("la la la\n")
    (folder / "art").mkdir()
    (folder / "art" / "cover.jpg").write_bytes(bytes(range(256)) * 4)
    return folder


def encode(**settings) -> dict:
    return encode_session(workers=1, progress=False, **settings)


def run_encode_app(*args: str, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "encode.py"), "progress=false", "workers=1", *args],
                          capture_output=True, text=True, cwd=cwd, timeout=300, **kwargs)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


# ---------------------------------------------------------------------------------------
# encode: a session replaces only a session


def test_encoding_a_folder_into_its_own_parent_is_refused_and_deletes_nothing(tmp_path):
    x = tmp_path / "x"
    songs = someones_songs(x / "songs")
    before = snapshot(x)
    # the session name defaults to the folder's name: x/songs would replace the MIDI folder
    proc = run_encode_app(f"midi_dir={songs}", f"sessions_dir={x}", cwd=tmp_path)
    line = one_error_line(proc)
    assert f"session folder '{songs}' is or holds midi_dir '{songs}'" in line
    assert "pass session=NAME or sessions_dir=PATH" in line
    assert snapshot(x) == before
    ok = run_encode_app(f"midi_dir={songs}", f"sessions_dir={x}", "session=mine", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert load_manifest(x / "mine")["totals"]["encoded_files"] == 2
    assert {k: v for k, v in snapshot(x).items() if not k.startswith("mine")} == before


def test_a_session_name_over_someones_folder_file_or_link_is_refused(tmp_path):
    songs = someones_songs(tmp_path / "songs")
    sessions = tmp_path / "s"
    (sessions / "photos").mkdir(parents=True)
    (sessions / "photos" / "beach.jpg").write_bytes(b"\xff\xd8 a photo")
    (sessions / "notes").write_text("a file where the session would go")
    encode(midi_dir=str(songs), session="real", sessions_dir=str(sessions))
    (sessions / "linked").symlink_to(sessions / "real", target_is_directory=True)
    # a manifest that is not a session's (a web app's, say) does not make a folder a session
    (sessions / "app").mkdir()
    (sessions / "app" / MANIFEST).write_text('{"name": "my app", "icons": []}')
    before = snapshot(tmp_path)
    for name, what in (("photos", "a folder"), ("notes", "a file"), ("linked", "a link"), ("app", "a folder")):
        with pytest.raises(UserError) as err:
            encode(midi_dir=str(songs), session=name, sessions_dir=str(sessions))
        assert str(err.value) == (
            f"{str(sessions / name)!r} is {what}, not a DeepOrb session (no {MANIFEST} of one), and encoding "
            "would replace it; pass session=NAME or sessions_dir=PATH"
        )
    assert snapshot(tmp_path) == before


def test_an_input_inside_the_session_folder_is_refused_even_through_a_link(tmp_path):
    sessions = tmp_path / "s"
    encode(midi_dir=str(someones_songs(tmp_path / "songs")), session="band", sessions_dir=str(sessions))
    inside = someones_songs(sessions / "band" / "raw")  # someone kept the MIDI files in the session
    (tmp_path / "shortcut").symlink_to(inside, target_is_directory=True)
    before = snapshot(tmp_path)
    for midi_dir in (inside, tmp_path / "shortcut"):
        with pytest.raises(UserError, match=f"session folder '{sessions / 'band'}' is or holds midi_dir"):
            encode(midi_dir=str(midi_dir), session="band", sessions_dir=str(sessions))
    with pytest.raises(UserError, match="is inside midi_dir .*; pass sessions_dir=PATH outside it"):
        encode(midi_dir=str(tmp_path / "songs"), session="band", sessions_dir=str(tmp_path / "songs" / "sessions"))
    assert snapshot(tmp_path) == before


def test_re_encoding_replaces_an_earlier_session_and_fills_an_empty_folder(tmp_path):
    songs = someones_songs(tmp_path / "songs")
    sessions = tmp_path / "s"
    (sessions / "empty").mkdir(parents=True)
    first = encode(midi_dir=str(songs), session="band", sessions_dir=str(sessions))
    assert encode(midi_dir=str(songs), session="empty", sessions_dir=str(sessions))["totals"] == first["totals"]
    (sessions / "band" / "cache").mkdir()
    (sessions / "band" / "cache" / "index-0.json").write_text("{}")
    (songs / "song.mid").unlink()
    again = encode(midi_dir=str(songs), session="band", sessions_dir=str(sessions))
    assert first["totals"]["encoded_files"] == 2 and again["totals"]["encoded_files"] == 1
    assert [p["source"] for p in load_manifest(sessions / "band")["pieces"]] == ["live/take2.mid"]
    assert (sessions / "band" / "cache" / "index-0.json").read_text() == "{}"  # the token cache is kept
    assert sorted(p.name for p in sessions.iterdir()) == ["band", "empty"]  # no staging left behind
    assert not (sessions / "band" / MARKER).exists()


# ---------------------------------------------------------------------------------------
# the dataset export empties only its own cache


def test_the_dataset_export_refuses_a_folder_it_did_not_make(tmp_path):
    mine = someones_songs(tmp_path / "datasets" / "bach_chorales")
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match="holds files the dataset export did not write .*pass datasets_dir=PATH"):
        export_dataset("bach_chorales", tmp_path / "datasets", limit=1)
    with pytest.raises(UserError, match="holds files the dataset export did not write"):
        encode(dataset="bach_chorales", dataset_limit=1, datasets_dir=str(tmp_path / "datasets"),
               sessions_dir=str(tmp_path / "s"))
    assert snapshot(tmp_path) == before and (mine / "song.mid").is_file()
    # the session folder would be the export folder itself: refused before exporting anything
    with pytest.raises(UserError, match="is or holds the dataset folder"):
        encode(dataset="nottingham", datasets_dir=str(tmp_path / "d"), sessions_dir=str(tmp_path / "d"))
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------------------------------
# samples: only into a folder DeepOrb made for them


def tiny_model() -> LSTMGenerator:
    torch.manual_seed(0)
    vocab = Vocabulary(EncodingConfig(), ("flute", "violin"), ())
    session = {"view": "score", "qpm_median": 100.0, "time_signatures": {"4/4": 2},
               "instruments": {"flute": {"program": 73, "is_drum": False}, "violin": {"program": 40, "is_drum": False}}}
    return LSTMGenerator(vocab.to_dict(), embed_dim=8, hidden_size=16, num_layers=1, dropout=0.0,
                         session=session).eval()


def quick(out_dir: Path, **settings) -> SampleConfig:
    return SampleConfig(out_dir=str(out_dir), num_samples=1, bars=1, seed=0, render=RenderConfig(piano_roll=False),
                        **settings)


def test_sampling_into_someones_folder_is_refused_and_into_its_own_works(tmp_path):
    model = tiny_model()
    songs = someones_songs(tmp_path / "songs")
    make_midi(songs / "sample_000.mid", [{"name": "mine", "notes": scale()}])  # a name sample.py would write
    (tmp_path / "a file").write_text("not a folder")
    before = snapshot(tmp_path)
    with pytest.raises(UserError, match=f"out_dir='{songs}' already holds files DeepOrb did not write there"):
        sample(quick(songs), model=model)
    with pytest.raises(UserError, match="is a file, not a folder"):
        sample(quick(tmp_path / "a file"), model=model)
    assert snapshot(tmp_path) == before
    out = tmp_path / "out"
    first = sample(quick(out), model=model)[0].midi.read_bytes()
    assert owned_folder(out, "samples") and sorted(p.name for p in out.iterdir()) == [
        MARKER, "index.html", "sample_000.mid", "samples.json"]
    (out / "sample_000.mid").write_bytes(b"overwritten below")
    assert sample(quick(out), model=model)[0].midi.read_bytes() == first  # its own folder: reused


def test_the_sample_app_refuses_someones_folder_with_one_line_and_fills_a_new_one(tmp_path):
    ckpt = tmp_path / "tiny.ckpt"
    model = tiny_model()
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, ckpt)
    songs = someones_songs(tmp_path / "songs")
    before = snapshot(songs)
    app = [sys.executable, str(ROOT / "sample.py"), f"ckpt_path={ckpt}", "num_samples=1", "bars=1", "seed=0",
           "render.piano_roll=false"]
    env = {**os.environ, "HYDRA_FULL_ERROR": "0", "OMP_NUM_THREADS": "1"}
    refused = subprocess.run([*app, f"out_dir={songs}"], capture_output=True, text=True, cwd=tmp_path, env=env,
                             timeout=300)
    assert one_error_line(refused).startswith(f"error: out_dir='{songs}' already holds files DeepOrb did not write")
    assert snapshot(songs) == before  # nothing added either: Hydra writes no run files into out_dir
    out = tmp_path / "new"
    ok = subprocess.run([*app, f"out_dir={out}"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert owned_folder(out, "samples") and (out / "sample_000.mid").is_file()


def test_the_training_callback_refuses_someones_folder_and_claims_its_own(tmp_path):
    model = tiny_model()
    trainer = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.FITTING), sanity_checking=False, fast_dev_run=False,
                              is_global_zero=True, current_epoch=0, global_step=7, default_root_dir=str(tmp_path),
                              loggers=[])
    taken = tmp_path / "samples" / "epoch000-step000007"
    taken.mkdir(parents=True)
    (taken / "samples.json").write_text('{"mine": true}')
    callback = SampleLogger(num_samples=1, bars=1, audio=False)
    with pytest.raises(UserError, match="already holds files DeepOrb did not write"):
        callback.on_validation_end(trainer, model)
    assert [p.name for p in taken.iterdir()] == ["samples.json"] and "mine" in (taken / "samples.json").read_text()
    trainer.global_step = 8
    callback.on_validation_end(trainer, model)
    assert callback.folders == [tmp_path / "samples" / "epoch000-step000008"]
    assert owned_folder(callback.folders[0], "samples") and (callback.folders[0] / "sample_000.mid").is_file()


# ---------------------------------------------------------------------------------------
# folders that cannot be read (root reads any folder: its children lose that power)


def _as_plain_owner() -> None:
    """In the child, before exec: drop root's capabilities to read past file permissions
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) from its bounding set, so what it runs is stopped
    by permission bits like any user."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def unprivileged() -> dict:
    """subprocess settings under which file permissions hold, for root too."""
    return {"preexec_fn": _as_plain_owner} if os.geteuid() == 0 else {}


def test_an_unreadable_subfolder_is_a_listed_skip_and_an_unreadable_midi_dir_says_so(tmp_path):
    songs = someones_songs(tmp_path / "songs")
    make_midi(songs / "locked" / "secret.mid", [{"name": "a", "notes": scale()}])
    (songs / "locked").chmod(0o000)
    out = tmp_path / "s"
    check = textwrap.dedent(f"""
        import os
        try:
            os.listdir({str(songs / 'locked')!r})
        except PermissionError:
            print("blocked")
    """)
    probe = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, **unprivileged())
    assert probe.stdout == "blocked\n", probe.stderr  # the test runs where permissions hold
    proc = run_encode_app(f"midi_dir={songs}", f"sessions_dir={out}", cwd=tmp_path, **unprivileged())
    assert proc.returncode == 0, proc.stderr
    manifest = load_manifest(out / "songs")
    assert manifest["skipped"] == [{"file": "locked", "reason": "cannot read folder: Permission denied"}]
    assert manifest["totals"]["skipped_files"] == 1 and manifest["totals"]["encoded_files"] == 2
    assert "skipped files (1)" in proc.stdout and "cannot read folder: Permission denied" in proc.stdout
    (songs / "locked").chmod(0o755)
    songs.chmod(0o000)
    refused = run_encode_app(f"midi_dir={songs}", f"sessions_dir={out}", "session=again", cwd=tmp_path,
                             **unprivileged())
    assert one_error_line(refused) == (f"error: cannot read midi_dir '{songs}': Permission denied; "
                                       "make it readable or pass midi_dir=PATH")
    songs.chmod(0o755)
    (songs / "song.mid").unlink()
    (songs / "live" / "take2.mid").unlink()
    (songs / "locked").chmod(0o000)
    empty = run_encode_app(f"midi_dir={songs}", f"sessions_dir={out}", "session=again", cwd=tmp_path,
                           **unprivileged())
    assert one_error_line(empty) == (f"error: no .mid or .midi files under '{songs}' "
                                     "(1 folder(s) cannot be read, e.g. 'locked')")
    (songs / "locked").chmod(0o755)
    assert sorted(p.name for p in out.iterdir()) == ["songs"]
    json.loads((out / "songs" / MANIFEST).read_text())  # the first session is still whole
