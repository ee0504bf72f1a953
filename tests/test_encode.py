"""encode.py end to end on real MIDI files, good and bad."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from midi_factory import make_midi, scale

from deeporb.decode import decode_path
from deeporb.encoding.words import EncodingConfig, Vocabulary, decode_words, quantize
from deeporb.errors import UserError
from deeporb.midi import read_midi
from deeporb.session_store import load_manifest, load_note_file
from deeporb.stages.encode import encode_session

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def midi_dir(tmp_path):
    d = tmp_path / "midi"
    make_midi(
        d / "quartet.mid",
        [
            {"name": "Violin I", "program": 40, "notes": scale()},
            {"name": "Cello", "program": 42, "notes": scale(pitches=(36, 43, 48)) + [(960, 960, 50, 70)]},
            {"name": "Kit", "program": 0, "is_drum": True, "notes": scale(step=240, pitches=(36, 38, 42, 42))},
            {"name": "empty", "program": 0, "notes": []},
        ],
        tempos=[(i * 10, 100.0 + i % 7) for i in range(700)],  # 700 tempo changes
        time_signatures=[(0, 3, 4), (1440 * 2, 7, 8), (1440 * 4, 5, 32)],
        tpq=96,
    )
    make_midi(d / "sub" / "Piano.MIDI", [{"name": "../../etc/passwd", "program": 0, "notes": scale()}])
    (d / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff\xff\xff")
    (d / "empty.mid").write_bytes(b"")
    (d / "text.mid").write_text("not a midi file at all")
    make_midi(d / "silent.mid", [{"name": "nothing", "program": 0, "notes": []}])
    return d


def test_encode_keeps_every_note_and_lists_skips(midi_dir, tmp_path):
    m = encode_session(midi_dir=str(midi_dir), session="t", sessions_dir=str(tmp_path / "s"), workers=2)
    assert m["totals"]["encoded_files"] == 2 and m["totals"]["tracks"] == 4
    assert m["totals"]["notes"] == 5 + 4 + 4 + 5
    assert set(m["instruments"]) == {"violin", "cello", "drums", "acoustic_grand_piano"}
    reasons = {s["file"]: s["reason"] for s in m["skipped"]}
    assert reasons["empty.mid"] == "empty file"
    assert reasons["text.mid"].startswith("not a MIDI file")
    assert reasons["corrupt.mid"].startswith("corrupt MIDI")
    assert reasons["silent.mid"] == "no notes in any track"
    assert m["quantization"]["zero_length_notes"] == 1
    assert m["quantization"]["time_signatures_replaced"] == 1  # 5/32 is off the grid

    session = tmp_path / "s" / "t"
    (cello,) = (session / "cello").glob("quartet-*.json")
    rec = load_note_file(cello)
    assert rec["source"] == "quartet.mid" and rec["program"] == 42 and rec["name"] == "Cello"
    assert rec["notes"]["onset"] == [0.0, 5.0, 10.0, 10.0]  # quarters, exact at tpq 96
    assert len(rec["tempos"]) == 700 and rec["time_signatures"][1] == [30.0, 7, 8]
    vocab = Vocabulary(EncodingConfig.from_dict(m["encoding"]))
    grid, _ = decode_words(rec["words"], vocab)
    assert grid == quantize(rec["notes"], vocab.config)
    drums = load_note_file(next((session / "drums").glob("*.json")))
    assert drums["is_drum"] and drums["instrument"] == "drums"


def test_track_names_as_keys_are_sanitized(midi_dir, tmp_path):
    m = encode_session(
        midi_dir=str(midi_dir), session="n", sessions_dir=str(tmp_path / "s"), instrument_key="name", workers=1
    )
    assert set(m["instruments"]) == {"violin_i", "cello", "drums", "etc_passwd"}
    assert all(p.parent.parent == tmp_path / "s" / "n" for p in (tmp_path / "s" / "n").glob("*/*.json"))


def test_re_encoding_is_byte_identical_and_atomic(midi_dir, tmp_path):
    a = tmp_path / "a"
    encode_session(midi_dir=str(midi_dir), session="x", sessions_dir=str(a), workers=2)
    first = {p.relative_to(a): p.read_bytes() for p in a.rglob("*") if p.is_file()}
    encode_session(midi_dir=str(midi_dir), session="x", sessions_dir=str(a), workers=1)
    second = {p.relative_to(a): p.read_bytes() for p in a.rglob("*") if p.is_file()}
    assert first == second
    assert [p.name for p in a.iterdir()] == ["x"]  # no temp folders left behind
    assert all(p.stat().st_mode & 0o044 == 0o044 for p in a.rglob("*.json"))  # readable by others
    assert not list(a.rglob("*.tmp"))


def test_user_errors(tmp_path):
    with pytest.raises(UserError, match="is not a folder"):
        encode_session(midi_dir=str(tmp_path / "missing"), sessions_dir=str(tmp_path))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.mid").write_text("nope")
    with pytest.raises(UserError, match="no notes encoded from 1 file.*x.mid: not a MIDI file"):
        encode_session(midi_dir=str(bad), sessions_dir=str(tmp_path / "s"))
    assert not (tmp_path / "s" / "bad").exists()
    with pytest.raises(UserError, match="exactly one of"):
        encode_session(sessions_dir=str(tmp_path))


def test_cli_summary_and_exit_codes(midi_dir, tmp_path):
    run = [sys.executable, str(ROOT / "encode.py"), f"sessions_dir={tmp_path / 's'}", "progress=false"]
    ok = subprocess.run([*run, f"midi_dir={midi_dir}", "session=cli"], capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "skipped files (4)" in ok.stdout and "text.mid" in ok.stdout
    bad = subprocess.run([*run, f"midi_dir={tmp_path / 'nope'}"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [f"error: midi_dir '{tmp_path / 'nope'}' is not a folder; pass midi_dir=PATH to a folder of .mid files"]


def test_encode_does_not_import_torch():
    code = "import sys, deeporb.stages.encode, deeporb.session_store, deeporb.builtin_corpora.export; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_decode_session_back_to_midi(midi_dir, tmp_path):
    encode_session(midi_dir=str(midi_dir), session="d", sessions_dir=str(tmp_path / "s"), workers=1)
    cache = tmp_path / "s" / "d" / "cache"  # what the DataModule leaves in a trained-on session
    cache.mkdir()
    (cache / "index-0123.json").write_text('{"tracks": []}')
    out = tmp_path / "decoded"
    written = decode_path(tmp_path / "s" / "d", out)
    assert len(written) == 4 and all(p.suffix == ".mid" for p in written)
    (cello_json,) = (tmp_path / "s" / "d" / "cello").glob("*.json")
    cello = read_midi(out / "cello" / cello_json.with_suffix(".mid").name)
    expected = quantize(load_note_file(cello_json)["notes"], EncodingConfig())
    assert cello.tracks[0].program == 42
    np.testing.assert_array_equal(np.sort(cello.tracks[0].notes["pitch"]), np.sort(expected.pitch))
    np.testing.assert_allclose(np.sort(cello.tracks[0].notes["onset"]), np.sort(expected.onset / 12))
    cli = subprocess.run(
        [sys.executable, "-m", "deeporb.decode", str(cello_json), str(tmp_path / "one.mid")], capture_output=True, text=True
    )
    assert cli.returncode == 0 and (tmp_path / "one.mid").is_file()
    missing = subprocess.run([sys.executable, "-m", "deeporb.decode", str(tmp_path), str(out)], capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.startswith("error:")


def test_manifest_is_plain_json(midi_dir, tmp_path):
    encode_session(midi_dir=str(midi_dir), session="j", sessions_dir=str(tmp_path / "s"), workers=1)
    m = load_manifest(tmp_path / "s" / "j")
    assert json.loads(json.dumps(m)) == m
    assert {p["source"] for p in m["pieces"]} == {"quartet.mid", "sub/Piano.MIDI"}
