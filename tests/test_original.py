"""encode.py original_dir=...: the original DeepOrb's JSON note files, built here as its writer
made them (music21's own names and durations, a folder per instrument), encode and train; hostile
files are listed skips."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from music21 import chord, note

import deeporb.original_notes as original_notes
from deeporb.encoding.words import EncodingConfig, Vocabulary, decode_words, quantize
from deeporb.errors import UserError
from deeporb.original_notes import instrument_of, quarters_of
from deeporb.session_store import load_manifest, load_note_file
from deeporb.stages.encode import encode_session

ROOT = Path(__file__).resolve().parents[1]
TINY = [  # test_train.py's tiny model
    "model.embed_dim=32", "model.hidden_size=32", "model.num_layers=1", "data.seq_len=32", "data.batch_size=8",
    "trainer.enable_progress_bar=false", "++callbacks.rich_progress_bar=null", "++callbacks.model_summary=null",
]


def train_app():
    """train.py's module (its task function), as test_train.py loads it."""
    import deeporb.stages.train  # noqa: F401 - registers the resolvers the configs use

    spec = importlib.util.spec_from_file_location("train_app", ROOT / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def original_note(pitch: str, quarters: float) -> dict:
    """A note as the original's ``get_notes_list_from_stream`` wrote it, from a music21 Note."""
    n = note.Note(pitch, quarterLength=quarters)
    return {
        "nameWithOctave": n.nameWithOctave,
        "fullName": n.fullName,
        "word": f"{n.pitch.name}_{n.pitch.octave}_{n.duration.type}".lower(),
        "pitch": {"name": n.pitch.name, "microtone": str(n.pitch.microtone), "octave": str(n.pitch.octave),
                  "step": str(n.pitch.step)},
        "duration": {"type": str(n.duration.type)},
    }


def original_rest(quarters: float) -> dict:
    """A music21 Rest in the same fields (the original's writer dropped rests: its notes just
    follow one another)."""
    r = note.Rest(quarterLength=quarters)
    return {"name": r.name, "fullName": r.fullName, "duration": {"type": r.duration.type}}


def original_chord(pitches: list[str], quarters: float) -> dict:
    """A music21 Chord in the same fields: its pitches are in its fullName."""
    c = chord.Chord(pitches, quarterLength=quarters)
    return {"fullName": c.fullName, "duration": {"type": c.duration.type}}


def track_file(folder: Path, key: str, name: str, program: int, notes: list[dict], tag: str, **extra) -> Path:
    """``folder/KEY/KEY-TAG.json`` as encode_midi_words.py wrote it (tempo only in its last version)."""
    path = folder / key / f"{key}-{tag}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"notes": notes, "name": name, "key": key, "i_key": key, "program": program,
                                "channel": 1, **extra}))
    return path


# C#4 dotted quarter, an eighth rest, an E-flat triplet, a C major chord (half), a B-double-flat
# tied half+eighth (music21: 'complex', its length in fullName), an F-double-sharp 16th
FLUTE = [original_note("C#4", 1.5), original_rest(0.5), *[original_note("E-4", 1 / 3)] * 3,
         original_chord(["C4", "E4", "G4"], 2), original_note("B--3", 2.5), original_note("F##5", 0.25)]
FLUTE_ONSETS = [0.0, 2.0, 2 + 1 / 3, 2 + 2 / 3, 3.0, 3.0, 3.0, 5.0, 7.5]
FLUTE_DURATIONS = [1.5, 1 / 3, 1 / 3, 1 / 3, 2.0, 2.0, 2.0, 2.5, 0.25]
FLUTE_PITCHES = [61, 63, 63, 63, 60, 64, 67, 57, 79]


@pytest.fixture
def original_dir(tmp_path) -> Path:
    d = tmp_path / "beethoven_words"
    track_file(d, "flute", "Flute", 73, FLUTE, "3de53d", tempo=96.0)
    # 'electric_piano' is the original's key of Electric Piano 1 and 2: its program tells them apart
    track_file(d, "electric_piano", "Electric Piano 2", 5,
               [original_note(p, 1.0) for p in ("A3", "C4", "E4")], "a1b2c3")
    # an earlier version: no tempo, word or channel
    early = [{k: v for k, v in original_note(p, 0.5).items() if k != "word"} for p in ("G2", "D3")]
    (d / "acoustic_grand_piano").mkdir()
    (d / "acoustic_grand_piano" / "acoustic_grand_piano-5327f0.json").write_text(json.dumps({"notes": early, "program": 0}))
    track_file(d, "my_theremin", "Theremin", 81, [original_note("A4", 4.0)], "000001")
    track_file(d, "cache", "Cache", 0, [original_note("C5", 1.0)], "000002")  # a reserved key
    unknown = dict(original_note("D4", 1.0), fullName="D in octave 4 Complex Note", duration={"type": "complex"})
    track_file(d, "flute", "Flute", 73, [original_note("C4", 1.0), unknown, original_note("E4", 1.0)], "c0ffee")
    hostile = d / "flute"
    (hostile / "empty.json").write_bytes(b"")
    (hostile / "truncated.json").write_text('{"notes": [{"nameWithOctave": "C4", ')
    (hostile / "a_list.json").write_text("[1, 2, 3]")
    (hostile / "wrong_types.json").write_text(json.dumps({"notes": "C4 D4"}))
    (hostile / "bad_notes.json").write_text(json.dumps({"notes": [1, "x", {"duration": 5}, {"pitch": []}]}))
    (hostile / "deep.json").write_text("[" * 10_000)
    (hostile / "binary.json").write_bytes(bytes(range(256)) * 40)
    (hostile / "huge.json").write_text(json.dumps({"notes": [original_note("C4", 1.0)] * 200}))
    (d / "manifest.json").write_text("{}")  # not in an instrument folder, and not a note file
    return d


def test_original_note_files_keep_pitches_durations_rests_and_chords(original_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(original_notes, "MAX_FILE_BYTES", 20_000)  # so huge.json is huge (workers=1: inline)
    m = encode_session(original_dir=str(original_dir), session="orig", sessions_dir=str(tmp_path / "s"), workers=1)
    assert m["source"] == {"original_dir": str(original_dir)} and m["instrument_key"] == "program"
    assert set(m["instruments"]) == {"flute", "electric_piano_2", "acoustic_grand_piano", "my_theremin", "cache_track"}
    assert m["instruments"]["electric_piano_2"]["program"] == 5 and m["instruments"]["my_theremin"]["program"] == 81
    assert m["totals"]["encoded_files"] == 6 and m["totals"]["notes"] == 9 + 3 + 2 + 1 + 1 + 2

    reasons = {s["file"]: s["reason"] for s in m["skipped"]}
    assert reasons == {
        "flute/empty.json": "empty file",
        "flute/truncated.json": reasons["flute/truncated.json"],
        "flute/a_list.json": "not a note file of the original (a JSON object whose 'notes' is a list)",
        "flute/wrong_types.json": "not a note file of the original (a JSON object whose 'notes' is a list)",
        "flute/bad_notes.json": "no note read from 4 entries (2 unreadable, 2 unknown duration)",
        "flute/deep.json": reasons["flute/deep.json"],
        "flute/binary.json": reasons["flute/binary.json"],
        "flute/huge.json": "over 20,000 bytes, more than a note file of the original holds",
        "manifest.json": "not a note file of the original (a JSON object whose 'notes' is a list)",
    }
    assert all(reasons[f].startswith("not JSON") for f in ("flute/truncated.json", "flute/deep.json", "flute/binary.json"))
    assert m["quantization"]["notes_skipped_unknown_duration"] == 1  # the 'complex' note without its length

    session = tmp_path / "s" / "orig"
    (flute,) = (session / "flute").glob("flute_3de53d-*.json")
    rec = load_note_file(flute)
    assert rec["source"] == "flute/flute-3de53d.json" and rec["program"] == 73 and rec["tempos"] == [[0.0, 96.0]]
    np.testing.assert_allclose(rec["notes"]["onset"], FLUTE_ONSETS)  # the rest took its time, the chord sounds at 3
    np.testing.assert_allclose(rec["notes"]["duration"], FLUTE_DURATIONS)
    assert rec["notes"]["pitch"] == FLUTE_PITCHES
    vocab = Vocabulary(EncodingConfig.from_dict(m["encoding"]))
    grid, _ = decode_words(rec["words"], vocab)
    assert grid == quantize(rec["notes"], vocab.config)  # the triplets are on the 12-step grid: nothing moved
    (skipped_one,) = (session / "flute").glob("flute_c0ffee-*.json")
    assert load_note_file(skipped_one)["notes"]["onset"] == [0.0, 1.0]  # the note of unknown length took no time
    assert not any(p.name.startswith(".") for p in original_dir.rglob("*"))  # nothing written into the input


def test_durations_and_instruments_read_as_the_format_holds_them():
    assert quarters_of(original_note("C4", 1.75)) == 1.75  # double dotted
    assert quarters_of(original_note("C4", 0.2)) == pytest.approx(0.2)  # quintuplet, from its '(1/5 QL)'
    assert quarters_of({"duration": {"type": "breve"}}) == 8
    assert quarters_of({"duration": {"type": "zero"}}) == 0
    assert quarters_of({"duration": {"type": "complex"}}) is None
    assert quarters_of({"duration": {"type": "eleventh"}}) is None
    assert instrument_of("electric_piano", 4) == ("electric_piano_1", 4)
    assert instrument_of("electric_piano", 99) == ("electric_piano_1", 4)  # a program that is not one of its
    assert instrument_of("synth_choir", 54) == ("synth_voice", 54)  # pretty_midi's name of program 54
    assert instrument_of("lead_chiff", None) == ("lead_4_chiff", 83)
    assert instrument_of("drums", "x") == ("drums_track", 0)  # the format marks no drums


def test_an_original_dir_is_one_of_the_inputs_and_its_session_stays_outside_it(original_dir, tmp_path):
    with pytest.raises(UserError, match="exactly one of midi_dir=DIR, dataset=NAME or original_dir=DIR"):
        encode_session(original_dir=str(original_dir), midi_dir=str(original_dir), sessions_dir=str(tmp_path))
    with pytest.raises(UserError, match="is inside original_dir"):
        encode_session(original_dir=str(original_dir), sessions_dir=str(original_dir / "flute"))
    with pytest.raises(UserError, match="leave instrument_key out"):
        encode_session(original_dir=str(original_dir), sessions_dir=str(tmp_path), instrument_key="name")
    mine = tmp_path / "s" / "mine"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("someone's")
    with pytest.raises(UserError, match="not a DeepOrb session"):
        encode_session(original_dir=str(original_dir), session="mine", sessions_dir=str(tmp_path / "s"))
    assert (mine / "notes.txt").read_text() == "someone's"
    empty = tmp_path / "empty_original"
    (empty / "flute").mkdir(parents=True)
    with pytest.raises(UserError, match="no .json note files under"):
        encode_session(original_dir=str(empty), sessions_dir=str(tmp_path / "s"))


def corpus(folder: Path, pieces: int = 12) -> Path:
    """Small two-part pieces in the original's format: a flute line with rests, a piano's chords."""
    rng = np.random.default_rng(0)
    names = ["C4", "D4", "E4", "F4", "G4", "A4", "B4", "C5"]
    for i in range(pieces):
        line = []
        for _ in range(16):
            line.append(original_rest(0.5) if rng.random() < 0.2 else original_note(names[rng.integers(8)], 0.5))
        track_file(folder, "flute", "Flute", 73, line, f"{i:06x}", tempo=100.0)
        roots = rng.integers(8, size=4)
        chords = [original_chord([names[k], names[(k + 2) % 8], names[(k + 4) % 8]], 2.0) for k in roots]
        track_file(folder, "acoustic_grand_piano", "Acoustic Grand Piano", 0, chords, f"{i + 100:06x}", tempo=100.0)
    return folder


def test_encode_py_reads_an_original_folder_and_train_py_trains_on_it(tmp_path):
    folder = corpus(tmp_path / "sample_a")
    sessions = tmp_path / "sessions"
    cli = subprocess.run([sys.executable, str(ROOT / "encode.py"), f"original_dir={folder}", "session=orig",
                          f"sessions_dir={sessions}", "progress=false", "workers=1"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    m = load_manifest(sessions / "orig")
    assert m["totals"]["encoded_files"] == 24 and set(m["instruments"]) == {"flute", "acoustic_grand_piano"}
    piano = load_note_file(next((sessions / "orig" / "acoustic_grand_piano").glob("*.json")))
    assert piano["notes"]["onset"][:3] == [0.0, 0.0, 0.0] and len(piano["notes"]["pitch"]) == 12  # 4 chords of 3
    both = subprocess.run([sys.executable, str(ROOT / "encode.py"), f"original_dir={folder}", f"midi_dir={folder}",
                           f"sessions_dir={sessions}"], capture_output=True, text=True, cwd=tmp_path)
    assert both.returncode == 2 and both.stderr.strip().splitlines() == [
        "error: give exactly one of midi_dir=DIR, dataset=NAME or original_dir=DIR "
        "(a session folder of the original DeepOrb's note files)"]

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.output_dir={tmp_path / 'run'}", f"paths.sessions_dir={sessions}",
                                          "data.session=orig", "logger=csv", "data.val_fraction=0.25",
                                          "data.test_fraction=0.25", "debug=fast_dev_run", *TINY])
    train_app().main(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["global_step"] == 1 and metrics["val"]["val/bits_per_note"] > 0
