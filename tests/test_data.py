"""deeporb/data/ on real sessions: the split by piece, the token cache, windows, transposition.

Most tests here read the tracks view (a row per note file); tests/test_score_data.py holds
the score view and what both views share."""

import functools
import json
import os
import shutil
from collections import Counter

import numpy as np
import pytest
import torch
from midi_factory import make_midi

from deeporb.data.cache import build_cache
from deeporb.data.datamodule import SessionDataModule
from deeporb.data.split import SPLITS, parts_top_down, split_of, split_pieces
from deeporb.data.windows import WindowDataset, shift_pitches, tile_starts, training_starts
from deeporb.encoding.words import BOS, EOS, PAD, Vocabulary
from deeporb.errors import UserError
from deeporb.session_store import scan_note_files
from deeporb.stages.encode import encode_session


def chorales(sessions_dir, view="tracks", **kw) -> SessionDataModule:
    dm = SessionDataModule("chorales", str(sessions_dir), view=view, **kw)
    dm.prepare_data()
    return dm


@pytest.fixture(scope="module")
def drum_sessions_dir(tmp_path_factory):
    """Ten pieces of piano + drums (made with mido); one piano part reaches pitch 125."""
    rng = np.random.default_rng(0)
    midi = tmp_path_factory.mktemp("drum_midi")
    for k in range(10):
        pitches = rng.integers(48, 84, 40).tolist()
        if k == 0:
            pitches[5] = 125
        piano = [(i * 240, (i + 1) * 240, int(p), 90) for i, p in enumerate(pitches)]
        drums = [(i * 240, i * 240 + 120, int(p), 100) for i, p in enumerate(rng.choice([36, 38, 42], 40))]
        make_midi(midi / f"groove{k:02d}.mid", [
            {"name": "Piano", "program": 0, "notes": piano},
            {"name": "Kit", "program": 0, "is_drum": True, "notes": drums},
        ])
    sessions = tmp_path_factory.mktemp("drum_sessions")
    encode_session(midi_dir=str(midi), session="grooves", sessions_dir=str(sessions), workers=1)
    return sessions


# -- the split ----------------------------------------------------------------------------


def test_split_of_is_a_pure_function_of_the_piece_id_with_the_asked_fractions():
    ids = [f"folder/piece_{i}.mid" for i in range(4000)]
    first = [split_of(p, 0.1, 0.2) for p in ids]
    assert first == [split_of(p, 0.1, 0.2) for p in ids]
    counts = Counter(first)
    assert abs(counts["val"] / 4000 - 0.1) < 0.02
    assert abs(counts["test"] / 4000 - 0.2) < 0.02
    # the test split is carved first: changing the validation fraction never moves a test piece
    tests = {p for p, s in zip(ids, first, strict=True) if s == "test"}
    assert tests == {p for p in ids if split_of(p, 0.3, 0.2) == "test"}
    assert {split_of(p, 0.0, 0.0) for p in ids} == {"train"}
    with pytest.raises(UserError, match="sum to less than 1"):
        SessionDataModule("x", val_fraction=0.6, test_fraction=0.5)


def test_no_piece_is_in_two_splits_and_every_track_follows_its_piece(chorale_sessions_dir):
    dm = chorales(chorale_sessions_dir)
    pieces = {s: {t["piece"] for t in dm.rows if t["split"] == s} for s in SPLITS}
    assert all(pieces[s] for s in SPLITS)
    assert not pieces["train"] & pieces["val"]
    assert not pieces["train"] & pieces["test"]
    assert not pieces["val"] & pieces["test"]
    manifest = json.loads((chorale_sessions_dir / "chorales" / "manifest.json").read_text())
    assert set().union(*pieces.values()) == {p["source"] for p in manifest["pieces"]}
    for t in dm.rows:
        assert t["split"] == split_of(t["piece"], 0.1, 0.1)
    # the public helpers agree with the DataModule and partition the note files
    session_dir = chorale_sessions_dir / "chorales"
    files = {s: [p for piece in split_pieces(session_dir, s).values() for p in piece] for s in SPLITS}
    assert sorted(sum(files.values(), [])) == scan_note_files(session_dir)
    assert set(split_pieces(session_dir, "test")) == pieces["test"]
    for s in SPLITS:
        assert {f"{p.parent.name}/{p.name}" for p in files[s]} == {t["file"] for t in dm.rows if t["split"] == s}
    assert dm.pieces_per_split() == {"train": 4, "val": 1, "test": 1}


def test_too_few_pieces_for_a_split_is_a_clear_error(chorale_midi_dir, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(sorted(chorale_midi_dir.glob("*.mid"))[0], one)
    encode_session(midi_dir=str(one), session="solo", sessions_dir=str(tmp_path / "s"), instrument_key="name", workers=1)
    with pytest.raises(UserError, match=r"too few pieces to split: 1 piece\(s\) in solo"):
        SessionDataModule("solo", str(tmp_path / "s")).prepare_data()


def test_unknown_session_and_instrument_name_what_exists(chorale_sessions_dir):
    with pytest.raises(UserError) as e:
        SessionDataModule("chorals", str(chorale_sessions_dir)).prepare_data()
    assert "unknown session 'chorals'" in str(e.value) and "existing: chorales" in str(e.value)
    assert "python encode.py" in str(e.value)
    with pytest.raises(UserError) as e:
        chorales(chorale_sessions_dir, instruments=["violin", "alto"])
    assert "unknown instrument(s) violin" in str(e.value)
    assert "available: alto, bass, soprano, tenor" in str(e.value)


def test_a_missing_session_is_encoded_on_first_use_under_its_own_name_only(chorale_midi_dir, tmp_path):
    """data.encode is the encode stage injected as a partial (data may not import stages): it
    builds the session its input names when missing, and never another name."""
    folder = tmp_path / "My Chorales"
    shutil.copytree(chorale_midi_dir, folder)
    encode = functools.partial(encode_session, midi_dir=str(folder), instrument_key="name", workers=1)
    sessions = tmp_path / "sessions"
    with pytest.raises(UserError, match="unknown session 'other'"):
        SessionDataModule("other", str(sessions), encode=encode).prepare_data()
    assert not sessions.exists()
    dm = SessionDataModule("my_chorales", str(sessions), encode=encode)
    dm.prepare_data()
    assert dm.vocab.instruments == ("soprano", "alto", "tenor", "bass")  # top-down
    assert dm.pieces_per_split() == {"train": 4, "val": 1, "test": 1}
    with pytest.raises(UserError, match="_partial_: true"):
        SessionDataModule("x", encode={"dataset": "bach_chorales"})


# -- windows ------------------------------------------------------------------------------


def test_window_starts_tile_for_evaluation_and_move_back_to_bars_for_training():
    row, off = tile_starts([11, 3, 8], [4, 4, 4])  # evaluation: tiles, the last one padded
    assert list(zip(row.tolist(), off.tolist(), strict=True)) == [(0, 0), (0, 4), (0, 8), (1, 0), (2, 0), (2, 4)]
    # one row of 20 words, bars at 0, 5, 9, 16 and an onset at 11; windows of 8 every 4 (slack 4):
    # targets 0, 4, 8, 12, 16 move back to bars 0, 0 (once), 5, 9, 16; the last reaches the end
    tokens = np.zeros(20, dtype=np.int64)
    tokens[[0, 5, 9, 16]], tokens[11] = 1, 2
    row, off = training_starts(tokens, [0], [20], [8], 4, bar_id=1, onset_ids=(2, 3))
    assert row.tolist() == [0, 0, 0, 0] and off.tolist() == [0, 5, 9, 16]
    # windows of 6 (slack 2): a bar further back than that gives the onset at or before the
    # target (12 -> 11), else the target itself; consecutive windows still touch
    row, off = training_starts(tokens, [0], [20], [6], 4, bar_id=1, onset_ids=(2, 3))
    assert off.tolist() == [0, 4, 8, 11, 16]
    # windows stop at the first that reaches the end; several rows, read a chunk at a time
    tokens = np.concatenate([tokens, tokens])
    row, off = training_starts(tokens, [0, 20], [20, 20], [8, 30], 4, 1, (2, 3), chunk_words=7)
    assert row.tolist() == [0, 0, 0, 0, 1] and off.tolist() == [0, 5, 9, 16, 0]


def test_windows_start_bos_instrument_and_cover_every_word(chorale_sessions_dir):
    dm = chorales(chorale_sessions_dir, seq_len=48, stride=20, instruments=["alto", "bass"])
    vocab = dm.vocab
    assert vocab.instruments == ("alto", "bass")
    tokens = np.load(dm.tokens_paths[0], mmap_mode="r")
    for split in SPLITS:
        ds = dm.dataset(split)
        rows = [t for t in dm.rows if t["split"] == split]
        seen = {i: np.zeros(r["length"] - 2, dtype=bool) for i, r in enumerate(rows)}
        for i in range(len(ds)):
            x = ds[i]["tokens"].numpy()
            assert x.shape == (49,)
            t = int(ds.window_row[i])
            row = rows[t]
            assert x[0] == vocab.index[BOS]
            assert x[1] == vocab.inst_id(row["instrument"])
            body = tokens[row["start"] + 2 : row["start"] + row["length"]]
            off = int(ds.window_offset[i])
            n = int((x[2:] != vocab.index[PAD]).sum())
            if split != "train":  # augmentation off: the words are the track's own
                assert np.array_equal(x[2 : 2 + n], body[off : off + n])
            seen[t][off : off + n] = True
        assert all(s.all() for s in seen.values()), f"{split}: a word is in no window"
        if split != "train":  # evaluation windows do not overlap: each word scored once
            assert sum(int((ds[i]["tokens"] != 0).sum()) - 2 for i in range(len(ds))) == sum(
                r["length"] - 2 for r in rows
            )
    last = tokens[rows[0]["start"] + rows[0]["length"] - 1]
    assert last == vocab.index[EOS]


def test_tracks_rows_keep_a_two_word_header_and_windows_are_header_plus_body_slices(chorale_sessions_dir):
    """For tracks the header is ``<bos> inst_KEY``; evaluation windows are the tiles of
    ``seq_len - 1`` body words they always were; training windows are the header and a body
    slice starting at a bar line, full unless they reach the row's end."""
    dm = chorales(chorale_sessions_dir, seq_len=40, stride=15)
    assert {t["header"] for t in dm.rows} == {2}
    tokens = np.load(dm.tokens_paths[0]).astype(np.int64)
    bar = dm.vocab.index["bar"]
    for split in SPLITS:
        ds = dm.dataset(split)
        rows = [t for t in dm.rows if t["split"] == split]
        if split != "train":
            expected = []
            for row in rows:
                track = tokens[row["start"] : row["start"] + row["length"]]
                body = track[2:]
                for off in range(0, len(body), 39):
                    w = np.zeros(41, dtype=np.int64)
                    w[:2], chunk = track[:2], body[off : off + 39]
                    w[2 : 2 + len(chunk)] = chunk
                    expected.append(w)
            assert len(ds) == len(expected)
            assert all(np.array_equal(ds.window(i), w) for i, w in enumerate(expected)), split
            continue
        for i in range(len(ds)):
            row, off, w = rows[int(ds.window_row[i])], int(ds.window_offset[i]), ds.window(i)
            body = tokens[row["start"] + 2 : row["start"] + row["length"]]
            assert np.array_equal(w[:2], tokens[row["start"] : row["start"] + 2]) and w[2] == bar
            n = min(39, len(body) - off)
            assert np.array_equal(w[2 : 2 + n], body[off : off + n]) and not w[2 + n :].any()
    stats = dm.statistics()
    assert sum(stats[s]["words"] for s in SPLITS) == sum(t["length"] - 3 for t in dm.rows)


def test_a_row_with_a_longer_header_repeats_it_in_every_window(tmp_path):
    """A row that is a whole piece names its ensemble in a longer header: the cache keeps each
    row's header length, and each window starts with its own row's header, then body words."""
    vocab = Vocabulary(instruments=("alto", "bass", "soprano"))
    bos, eos = vocab.index[BOS], vocab.index[EOS]
    body = vocab.ids(" ".join(["bar", "pos_0", "C4", "dur_12", "pos_12", "E4", "dur_12"] * 2))
    headers = [[bos, vocab.inst_id("alto")], [bos, *(vocab.inst_id(k) for k in ("alto", "bass", "soprano"))]]
    rows = [(np.concatenate([h, body, [eos]]), {"header": len(h)}) for h in headers]
    build_cache(tmp_path, rows, vocab, "k")
    index = json.loads((tmp_path / "cache" / "index-k.json").read_text())["rows"]
    assert [(r["header"], r["start"], r["length"]) for r in index] == [(2, 0, 17), (4, 17, 19)]
    seq_len = 7
    body_len = np.array([r["length"] - r["header"] for r in index])
    width = seq_len + 1 - np.array([r["header"] for r in index])
    window_row, window_offset = training_starts(
        np.load(tmp_path / "cache" / "tokens-k.npy"), np.array([r["start"] + r["header"] for r in index]),
        body_len, width, 3, vocab.index["bar"], vocab.blocks["pos"],
    )
    ds = WindowDataset(
        tmp_path / "cache" / "tokens-k.npy",
        *(np.array([r[k] for r in index]) for k in ("start", "length", "header")),
        window_row, window_offset, seq_len, vocab.pitch0, vocab.blocks["inst"], np.zeros(0),
    )
    full = [np.concatenate([body, [eos]]) for _ in headers]
    seen = [np.zeros(len(f), dtype=bool) for f in full]
    for i in range(len(ds)):
        w, t, off = ds.window(i), int(ds.window_row[i]), int(ds.window_offset[i])
        h = len(headers[t])
        assert w.tolist()[:h] == headers[t] and len(w) == seq_len + 1
        chunk = full[t][off : off + seq_len + 1 - h]
        assert np.array_equal(w[h : h + len(chunk)], chunk) and not w[h + len(chunk) :].any()
        seen[t][off : off + len(chunk)] = True
    assert all(s.all() for s in seen)


def test_a_batch_is_long_ids_padded_with_zero(chorale_sessions_dir):
    dm = chorales(chorale_sessions_dir, seq_len=300, batch_size=4)
    batch = next(iter(dm.val_dataloader()))
    assert batch["tokens"].dtype == torch.long and batch["tokens"].shape == (4, 301)
    assert dm.vocab.index[PAD] == 0 and (batch["tokens"] == 0).any()  # chorale parts are shorter


# -- the cache ----------------------------------------------------------------------------


def test_cache_is_memory_mapped_and_reused(chorale_sessions_dir):
    dm = chorales(chorale_sessions_dir, seq_len=32)
    ds = dm.dataset("train")
    assert isinstance(ds.tokens, np.memmap)
    assert ds.tokens.dtype == np.uint16
    stamp = dm.tokens_paths[0].stat().st_mtime_ns
    again = chorales(chorale_sessions_dir, seq_len=64, transpose=2)  # windows do not key the cache
    assert again.tokens_paths == dm.tokens_paths
    assert again.tokens_paths[0].stat().st_mtime_ns == stamp
    # a pickled dataset (what DataLoader workers get) carries the path, not the array
    import pickle

    copy = pickle.loads(pickle.dumps(ds))
    assert copy._tokens is None
    assert np.array_equal(copy.window(3), ds.window(3)) and isinstance(copy.tokens, np.memmap)


def test_cache_is_rebuilt_when_a_note_file_changes(chorale_sessions_dir, tmp_path):
    shutil.copytree(chorale_sessions_dir, tmp_path / "s")
    session_dir = tmp_path / "s" / "chorales"
    before = chorales(tmp_path / "s", repeat_bars=0, final_bar=False)  # rows are then the note files' words
    soprano = sorted((session_dir / "soprano").glob("*.json"))[0]
    row = next(t for t in before.rows if t["file"] == f"soprano/{soprano.name}")
    tokens = np.load(before.tokens_paths[0])
    record = json.loads(soprano.read_text())
    words = record["words"].split()
    record["words"] = " ".join(words[:-2])  # drop the last note (pitch + duration)
    soprano.write_text(json.dumps(record))
    os.utime(soprano, ns=(soprano.stat().st_atime_ns, soprano.stat().st_mtime_ns + 10**9))

    after = chorales(tmp_path / "s", repeat_bars=0, final_bar=False)
    assert after.tokens_paths != before.tokens_paths
    new_row = next(t for t in after.rows if t["file"] == row["file"])
    assert new_row["length"] == row["length"] - 2
    assert new_row["notes"] == row["notes"] - 1
    new_tokens = np.load(after.tokens_paths[0])
    vocab = after.vocab
    got = vocab.decode_ids(new_tokens[new_row["start"] + 2 : new_row["start"] + new_row["length"] - 1])
    assert got == words[:-2]
    # the other tracks are unchanged
    other = next(t for t in before.rows if t["file"] != row["file"])
    same = next(t for t in after.rows if t["file"] == other["file"])
    assert np.array_equal(
        tokens[other["start"] : other["start"] + other["length"]],
        new_tokens[same["start"] : same["start"] + same["length"]],
    )
    # deleting a note file by hand also rebuilds, and the track is gone
    soprano.unlink()
    gone = chorales(tmp_path / "s")
    assert all(t["file"] != row["file"] for t in gone.rows)
    assert len(gone.rows) == len(before.rows) - 1


# -- transposition ------------------------------------------------------------------------


def test_shift_pitches_keeps_every_pitch_in_range():
    v = Vocabulary()
    ids = np.array([v.index["bar"], v.id("C4"), v.id("dur_12"), v.id("F9"), v.id("dur_6")])
    rng = np.random.default_rng(1)
    shifts = set()
    for _ in range(200):
        x = ids.copy()
        s = shift_pitches(x, v.pitch0, 6, rng)
        shifts.add(s)
        assert x[0] == ids[0] and x[2] == ids[2] and x[4] == ids[4]
        assert x[1] - ids[1] == s and x[3] - ids[3] == s
    assert shifts == set(range(-6, 3))  # F9 = 125: at most +2


def test_transposition_only_on_training_windows_and_never_on_drums(drum_sessions_dir):
    dm = SessionDataModule("grooves", str(drum_sessions_dir), view="tracks", seq_len=24, stride=12,
                           transpose=5, val_fraction=0.2, test_fraction=0.2)
    dm.prepare_data()
    assert dm.vocab.instruments == ("acoustic_grand_piano", "drums")
    drum_id = dm.vocab.inst_id("drums")
    pitch0 = dm.vocab.pitch0
    torch.manual_seed(0)
    for split in SPLITS:
        ds: WindowDataset = dm.dataset(split)
        shifted_piano = 0
        for _ in range(3):
            for i in range(len(ds)):
                raw, got = ds.window(i), ds[i]["tokens"].numpy()
                is_pitch = (raw >= pitch0) & (raw < pitch0 + 128)
                assert np.array_equal(raw[~is_pitch], got[~is_pitch])  # only pitch words move
                diff = set((got[is_pitch] - raw[is_pitch]).tolist())
                if split != "train" or raw[1] == drum_id:
                    assert diff <= {0}, f"{split} window {i} was transposed"
                else:
                    assert len(diff) <= 1 and all(-5 <= d <= 5 for d in diff)
                    assert ((got[is_pitch] - pitch0) <= 127).all()
                    shifted_piano += diff != {0}
        if split == "train":
            assert shifted_piano > 0


# -- several sessions, statistics, checkpoint facts ---------------------------------------


def test_parts_stand_top_down_by_the_mean_pitch_the_manifest_records(chorale_sessions_dir, tmp_path, capsys):
    """The score order: highest mean pitch first, drums last; a session encoded before the
    manifest kept mean pitches keeps key order, and says so."""
    session = tmp_path / "chorales"
    shutil.copytree(chorale_sessions_dir / "chorales", session)
    manifest = json.loads((session / "manifest.json").read_text())
    pitches = {}
    for path in scan_note_files(session):
        pitches.setdefault(path.parent.name, []).extend(json.loads(path.read_text())["notes"]["pitch"])
    for key, inst in manifest["instruments"].items():  # what encode.py recorded is the notes' mean
        assert inst["mean_pitch"] == pytest.approx(np.mean(pitches[key]), abs=0.01)
    assert parts_top_down(["bass", "kit", "alto"], [manifest, {"instruments": {"kit": {"is_drum": True, "notes": 9,
                                                                                     "mean_pitch": 90.0}}}]) == (
        ["alto", "bass", "kit"], [])
    assert parts_top_down(["tuba", "alto"], [manifest]) == (["alto", "tuba"], ["tuba"])  # no mean pitch: after the rest

    for inst in manifest["instruments"].values():
        del inst["mean_pitch"]
    (session / "manifest.json").write_text(json.dumps(manifest))
    dm = SessionDataModule("chorales", str(tmp_path), seq_len=32)
    dm.prepare_data()
    assert dm.vocab.instruments == ("alto", "bass", "soprano", "tenor")
    assert "re-encode to write the parts top-down" in capsys.readouterr().out


def test_a_checkpoint_trained_before_parts_stood_top_down_reads_its_data_in_its_own_order(chorale_sessions_dir):
    """A checkpoint's facts name its parts in its vocabulary's order: the data rebuilt for it
    (evaluate.py, compare=true, fill scores) keeps that order, so its ids mean what they meant."""
    from deeporb.data.facts import SessionFacts
    from deeporb.evaluation.likelihood import datamodule_for

    for order in (("alto", "bass", "soprano", "tenor"), ("soprano", "alto", "tenor", "bass")):
        facts = SessionFacts(names=("chorales",), sessions_dir=str(chorale_sessions_dir), val_fraction=0.2,
                             test_fraction=0.2, instrument_keys=order, repeat_bars=16)
        assert datamodule_for(facts, seq_len=32).vocab.instruments == order


def test_two_sessions_share_one_vocabulary_and_report_their_facts(chorale_sessions_dir, drum_sessions_dir, tmp_path):
    both = tmp_path / "both"
    shutil.copytree(chorale_sessions_dir / "chorales", both / "chorales")
    shutil.copytree(drum_sessions_dir / "grooves", both / "grooves")
    dm = SessionDataModule(["chorales", "grooves"], str(both), seq_len=32, val_fraction=0.2, test_fraction=0.2)
    dm.prepare_data()
    keys = dm.vocab.instruments  # one score order over both sessions: top-down by mean pitch, drums last
    assert sorted(keys) == ["acoustic_grand_piano", "alto", "bass", "drums", "soprano", "tenor"]
    assert keys[-1] == "drums" and [k for k in keys if k != "acoustic_grand_piano"][:4] == ["soprano", "alto", "tenor", "bass"]
    assert len(dm.dataset("train").datasets) == 2
    info = dm.session_info()
    assert info["names"] == ["chorales", "grooves"]
    assert info["instruments"]["drums"]["is_drum"] is True
    assert info["instruments"]["soprano"]["tracks"] == 6
    assert info["instruments"]["acoustic_grand_piano"]["notes"] == 400
    assert info["time_signatures"]["4/4"] >= 10 and info["qpm_median"] > 0
    assert info["sessions_dir"] == str(both.resolve())
    assert {k: info[k] for k in ("val_fraction", "test_fraction", "instruments_filter")} == {
        "val_fraction": 0.2, "test_fraction": 0.2, "instruments_filter": None}
    stats = dm.statistics()
    assert sum(stats[s]["pieces"] for s in SPLITS) == 16
    assert sum(stats[s]["instruments"].get("soprano", {}).get("pieces", 0) for s in SPLITS) == 6
    assert sum(stats[s]["instruments"]["drums"]["notes"] for s in SPLITS if "drums" in stats[s]["instruments"]) == 400
    assert stats["train"]["windows"] == len(dm.dataset("train"))


def test_sessions_differing_only_in_their_piece_limit_train_together_and_other_settings_do_not(
        chorale_midi_dir, tmp_path):
    """``max_piece_quarters`` is the encode stage's, not the vocabulary's (issue 18): it is not
    in the manifest's encoding, so it cannot keep two sessions apart; a grid setting still does."""
    from deeporb.stages.encode import encode_session

    for name, limit in (("long", 20_000), ("short", 5_000)):
        encode_session(midi_dir=str(chorale_midi_dir), session=name, sessions_dir=str(tmp_path), workers=1,
                       instrument_key="name", max_piece_quarters=limit, progress=False)
    manifest = json.loads((tmp_path / "short" / "manifest.json").read_text())
    assert "max_piece_quarters" not in manifest["encoding"]
    dm = SessionDataModule(["long", "short"], str(tmp_path), seq_len=32)
    dm.prepare_data()
    assert dm.vocab.instruments == ("soprano", "alto", "tenor", "bass")
    encode_session(midi_dir=str(chorale_midi_dir), session="coarse", sessions_dir=str(tmp_path), workers=1,
                   instrument_key="name", encoding={"resolution": 4}, progress=False)
    with pytest.raises(UserError, match="encoded with different settings"):
        SessionDataModule(["long", "coarse"], str(tmp_path), seq_len=32).prepare_data()
