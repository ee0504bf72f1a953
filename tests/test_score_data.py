"""deeporb/data/ in the score view, and what both views share: the split, the notes, the
style words, training windows at bar lines, transposition by part, pieces that start at
their first sounding bar (issue 14)."""

import json
import shutil
from collections import Counter

import numpy as np
import pytest
import torch
from midi_factory import make_midi

from deeporb.data.datamodule import SessionDataModule
from deeporb.data.split import SPLITS
from deeporb.encoding.score import decode_score
from deeporb.encoding.words import BOS, EOS, GridNotes, decode_words, quantize
from deeporb.errors import UserError
from deeporb.session_store import load_note_file
from deeporb.stages.encode import encode_session

BAR = 1920  # ticks of a 4/4 bar at 480 per quarter


def load(sessions_dir, session="chorales", view="score", **kw) -> SessionDataModule:
    dm = SessionDataModule(session, str(sessions_dir), view=view, **kw)
    dm.prepare_data()
    return dm


def row_ids(dm, row) -> np.ndarray:
    return np.load(dm.tokens_paths[row["array"]], mmap_mode="r")[row["start"] : row["start"] + row["length"]].astype(np.int64)


def expected_parts(dm, row) -> dict[str, GridNotes]:
    """The row's note files quantized and merged per instrument, as they are on disk (before
    any leading bars are dropped)."""
    grids: dict[str, list[GridNotes]] = {}
    for t in row.get("tracks", [row]):
        record = load_note_file(dm.sessions_dir / row["session"] / t["file"])
        grids.setdefault(t["instrument"], []).append(quantize(record["notes"], dm.vocab.config))
    return {k: GridNotes.concat(v) for k, v in grids.items()}


def shifted(parts: dict[str, GridNotes], steps: int) -> dict[str, GridNotes]:
    return {k: GridNotes(g.onset - steps, g.duration, g.pitch, g.velocity_bin) for k, g in parts.items()}


@pytest.fixture(scope="module")
def band_sessions_dir(tmp_path_factory):
    """Ten pieces of piano (two tracks in piece 0: merged into one part), bass and drums."""
    rng = np.random.default_rng(3)
    midi = tmp_path_factory.mktemp("band_midi")
    for k in range(10):
        piano = [(i * 240, (i + 1) * 240, int(p), 90) for i, p in enumerate(rng.integers(60, 84, 32))]
        bass = [(i * 480, (i + 1) * 480, int(p), 80) for i, p in enumerate(rng.integers(36, 52, 16))]
        drums = [(i * 240, i * 240 + 120, int(p), 100) for i, p in enumerate(rng.choice([36, 38, 42], 32))]
        tracks = [
            {"name": "Piano", "program": 0, "notes": piano},
            {"name": "Bass", "program": 33, "notes": bass},
            {"name": "Kit", "program": 0, "is_drum": True, "notes": drums},
        ]
        if k == 0:
            tracks.append({"name": "Piano 2", "program": 0, "notes": [(0, 960, 48, 70), (960, 1920, 50, 70)]})
        make_midi(midi / f"band{k:02d}.mid", tracks)
    sessions = tmp_path_factory.mktemp("band_sessions")
    encode_session(midi_dir=str(midi), session="band", sessions_dir=str(sessions), workers=1)
    return sessions


# -- rows -----------------------------------------------------------------------------------


def test_score_rows_decode_to_every_note_in_its_part(chorale_sessions_dir, band_sessions_dir):
    for sessions, session in ((chorale_sessions_dir, "chorales"), (band_sessions_dir, "band")):
        dm = load(sessions, session, val_fraction=0.2, test_fraction=0.2)
        for row in dm.rows:
            ids = row_ids(dm, row)
            words = dm.vocab.decode_ids(ids)
            parts, _ = decode_score(words, dm.vocab)
            want = expected_parts(dm, row)
            assert row["bars_dropped"] == 0  # these pieces open with sound
            assert parts == want, row["piece"]
            in_score_order = [k for k in dm.vocab.instruments if k in want]
            assert row["instruments"] == sorted(want) and words[: row["header"]] == [BOS] + [f"inst_{k}" for k in in_score_order]
            assert words[-1] == EOS and row["notes"] == sum(len(g) for g in want.values())
        # the score stands top-down: the highest part first, drums last
        assert dm.vocab.instruments == (("soprano", "alto", "tenor", "bass") if session == "chorales"
                                        else ("acoustic_grand_piano", "electric_bass_finger", "drums"))
    merged = next(r for r in dm.rows if r["piece"] == "band00.mid")
    assert len(merged["tracks"]) == 4 and merged["instruments"] == ["acoustic_grand_piano", "drums", "electric_bass_finger"]


def test_tracks_rows_are_the_note_files_words_when_a_piece_opens_with_sound(chorale_sessions_dir):
    dm = load(chorale_sessions_dir, view="tracks", repeat_bars=0, final_bar=False)  # repeated bars folded: see test_repeats
    for row in dm.rows:
        record = load_note_file(dm.sessions_dir / "chorales" / row["file"])
        ids = row_ids(dm, row)
        assert np.array_equal(ids[2:-1], dm.vocab.ids(record["words"]))
        assert ids[1] == dm.vocab.inst_id(row["instrument"])


def test_the_split_and_the_notes_are_the_same_in_both_views(chorale_sessions_dir, band_sessions_dir):
    """bits_per_note divides by pitch words: the same notes in either view, split by piece alike."""
    for sessions, session in ((chorale_sessions_dir, "chorales"), (band_sessions_dir, "band")):
        views = {v: load(sessions, session, v, val_fraction=0.2, test_fraction=0.2) for v in ("score", "tracks")}
        split = {v: {r["piece"]: r["split"] for r in dm.rows} for v, dm in views.items()}
        assert split["score"] == split["tracks"]
        stats = {v: dm.statistics() for v, dm in views.items()}
        for s in SPLITS:
            assert stats["score"][s]["notes"] == stats["tracks"][s]["notes"] > 0
            assert stats["score"][s]["pieces"] == stats["tracks"][s]["pieces"] == stats["score"][s]["rows"]
            assert stats["score"][s]["tracks"] == stats["tracks"][s]["tracks"] == stats["tracks"][s]["rows"]
            assert stats["score"][s]["instruments"] == stats["tracks"][s]["instruments"]
        facts = {v: dm.session_info() for v, dm in views.items()}
        assert facts["score"]["view"] == "score" and facts["tracks"]["view"] == "tracks"
        assert facts["score"]["instruments"] == facts["tracks"]["instruments"]
        assert facts["score"]["time_signatures"] == facts["tracks"]["time_signatures"]


def test_the_cache_is_rebuilt_when_the_view_changes_and_reused_when_it_comes_back(chorale_sessions_dir, tmp_path):
    shutil.copytree(chorale_sessions_dir, tmp_path / "s")
    score = load(tmp_path / "s")
    tracks = load(tmp_path / "s", view="tracks")
    assert score.tokens_paths != tracks.tokens_paths
    assert all(p.is_file() for p in score.tokens_paths + tracks.tokens_paths)
    stamp = score.tokens_paths[0].stat().st_mtime_ns
    again = load(tmp_path / "s")
    assert again.tokens_paths == score.tokens_paths and again.tokens_paths[0].stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match="data.view='bars' is not a view; use one of: tracks, score"):
        SessionDataModule("chorales", str(tmp_path / "s"), view="bars")


# -- styles ---------------------------------------------------------------------------------


def test_several_sessions_each_put_their_style_after_bos_and_one_session_none(
    chorale_sessions_dir, band_sessions_dir, tmp_path
):
    both = tmp_path / "both"
    shutil.copytree(chorale_sessions_dir / "chorales", both / "chorales")
    shutil.copytree(band_sessions_dir / "band", both / "band")
    manifest = json.loads((both / "chorales" / "manifest.json").read_text())
    manifest["style"] = "Bach Chorales!"  # what encode.py style=... records; made a safe key
    (both / "chorales" / "manifest.json").write_text(json.dumps(manifest))
    style_of = {"chorales": "bach_chorales", "band": "band"}
    for view in ("score", "tracks"):
        dm = load(both, ["chorales", "band"], view, val_fraction=0.2, test_fraction=0.2)
        assert dm.styles == style_of and dm.vocab.styles == ("bach_chorales", "band")
        for row in dm.rows:
            ids = row_ids(dm, row)
            assert ids[0] == dm.vocab.index[BOS] and ids[1] == dm.vocab.style_id(style_of[row["session"]])
            assert row["header"] == 2 + len(row.get("instruments", [row.get("instrument")]))
        info = dm.session_info()
        assert info["styles"] == ["bach_chorales", "band"] and info["view"] == view
        per_style = info["style_time_signatures"]  # each style's meters, from its own pieces only
        assert sorted(per_style) == ["bach_chorales", "band"]
        for style, session in (("bach_chorales", "chorales"), ("band", "band")):
            pieces = {r["piece"] for r in dm.rows if r["session"] == session}
            assert sum(per_style[style].values()) >= len(pieces)
        chorales_windows = dm.dataset("train").datasets[0]  # the sessions' order: chorales first
        assert chorales_windows.window(0)[1] == dm.vocab.style_id("bach_chorales")
    score = load(both, ["chorales", "band"], val_fraction=0.2, test_fraction=0.2)
    row = next(r for r in score.rows if r["session"] == "chorales")
    parts, _ = decode_score(score.vocab.decode_ids(row_ids(score, row)), score.vocab)
    assert parts == expected_parts(score, row)
    alone = load(both, "chorales")
    assert alone.styles == {} and alone.vocab.styles == () and alone.session_info()["styles"] == []
    assert all(row_ids(alone, r)[1] == alone.vocab.inst_id("soprano") for r in alone.rows)


# -- windows and transposition ----------------------------------------------------------------


def test_training_windows_start_with_the_header_at_a_bar_and_cover_every_word(chorale_sessions_dir):
    """A training window is the row's header and a body slice from a bar line; a start moves
    back to the bar only up to the windows' overlap, so a start after a longer stretch of one
    bar falls on an onset instead. Evaluation windows tile: every word scored once."""
    for seq_len in (96, 256):
        dm = load(chorale_sessions_dir, seq_len=seq_len)
        vocab, bar = dm.vocab, dm.vocab.index["bar"]
        rows = [r for r in dm.rows if r["split"] == "train"]
        ds = dm.dataset("train")
        seen = [np.zeros(r["length"] - r["header"], dtype=bool) for r in rows]
        starts = Counter()
        for i in range(len(ds)):
            row, off, w = rows[int(ds.window_row[i])], int(ds.window_offset[i]), ds.window(i)
            ids = row_ids(dm, row)
            h = row["header"]
            assert np.array_equal(w[:h], ids[:h]) and h == 5
            n = min(seq_len + 1 - h, len(ids) - h - off)
            assert np.array_equal(w[h : h + n], ids[h + off : h + off + n])
            seen[int(ds.window_row[i])][off : off + n] = True
            if w[h] == bar:
                starts["bar"] += 1
                continue
            # an onset: some start laid every stride words moved back to it, because the bar
            # before that start was further back than the windows' overlap (the slack)
            assert vocab.words[w[h]].startswith("pos_")
            bars = np.flatnonzero(ids[h:] == bar)
            before, after = bars[bars <= off][-1], bars[bars > off]
            slack = seq_len + 1 - h - dm.stride
            targets = range(-(-off // dm.stride) * dm.stride, off + slack + 1, dm.stride)
            assert any(t - before > slack and (not len(after) or t < after[0]) for t in targets)
            starts["onset"] += 1
        assert all(s.all() for s in seen), "a word is in no training window"
        if seq_len == 256:  # overlaps longer than any chorale bar: every window at a bar
            assert starts == {"bar": len(ds)}
        else:  # overlaps of 44 words, bars of about 60: most still start at a bar
            assert starts["bar"] > 2 * starts["onset"] > 0
        for split in ("val", "test"):
            ev, ev_rows = dm.dataset(split), [r for r in dm.rows if r["split"] == split]
            assert sum(int((ev.window(i) != 0).sum()) - ev_rows[int(ev.window_row[i])]["header"] for i in range(len(ev))) == sum(
                r["length"] - r["header"] for r in ev_rows
            )


def part_of_each_word(vocab, ids: np.ndarray, header: int) -> list[str | None]:
    """The instrument each word is played by: the last inst_ word before it in the body."""
    part, out = None, []
    for i, x in enumerate(ids.tolist()):
        word = vocab.words[x]
        if i >= header and word.startswith("inst_"):
            part = word[5:]
        out.append(part if i >= header else None)
    return out


def test_transposition_moves_all_pitched_parts_of_a_window_together_and_never_drums(band_sessions_dir):
    dm = load(band_sessions_dir, "band", seq_len=40, stride=16, transpose=5, val_fraction=0.2, test_fraction=0.2)
    assert dm.drum_keys == ["drums"]
    vocab, pitch0 = dm.vocab, dm.vocab.pitch0
    torch.manual_seed(0)
    moved = drums_seen = 0
    for split in SPLITS:
        ds = dm.dataset(split)
        for _ in range(2):
            for i in range(len(ds)):
                raw, got = ds.window(i), ds[i]["tokens"].numpy()
                header = int(ds.row_header[ds.window_row[i]])
                is_pitch = (raw >= pitch0) & (raw < pitch0 + 128)
                assert np.array_equal(raw[~is_pitch], got[~is_pitch])
                parts = np.array(part_of_each_word(vocab, raw, header), dtype=object)
                if split == "train":  # starting at a bar or an onset, every pitch has its part
                    assert all(p is not None for p in parts[is_pitch])
                drum = is_pitch & (parts == "drums")
                assert np.array_equal(raw[drum], got[drum])
                drums_seen += int(drum.any())
                diff = set((got[is_pitch & ~drum] - raw[is_pitch & ~drum]).tolist())
                assert len(diff) <= 1 and all(-5 <= d <= 5 for d in diff)
                if split != "train":
                    assert diff <= {0}
                moved += diff - {0} != set()
    assert moved > 0 and drums_seen > 0


# -- issue 14: pieces start at their first sounding bar ---------------------------------------


@pytest.fixture(scope="module")
def intro_sessions_dir(tmp_path_factory):
    """Twelve pieces shaped like a pop corpus: melody, bridge and piano by name. Kind 0 opens
    with two bars in which no part plays; kind 1 with a piano intro (the melody enters at bar
    4: music, kept); kind 2 with one silent bar and a first note on beat 3 of the next; kind 3
    with two silent bars of 3/4, then 4/4 from bar 2, the first note at bar 3."""
    midi = tmp_path_factory.mktemp("intro_midi")
    for k in range(12):
        kind = k % 4
        first = {0: 2 * BAR, 1: 0, 2: BAR + 960, 3: 2 * 1440 + BAR}[kind]
        melody_at = first + (4 * BAR if kind == 1 else 0)
        ts = [(0, 3, 4), (2 * 1440, 4, 4)] if kind == 3 else [(0, 4, 4)]
        tracks = [
            {"name": "melody", "program": 73, "notes": [(melody_at + i * 480, melody_at + (i + 1) * 480, 72 + i % 5, 90) for i in range(12)]},
            {"name": "bridge", "program": 48, "notes": [(first + 2 * BAR + i * 960, first + 2 * BAR + (i + 1) * 960, 64 + k % 3, 70) for i in range(6)]},
            {"name": "piano", "program": 0, "notes": [(first + i * 960, first + (i + 1) * 960, 48 + (i * 7) % 12, 80) for i in range(16)]},
        ]
        make_midi(midi / f"song{k:02d}.mid", tracks, time_signatures=ts)
    sessions = tmp_path_factory.mktemp("intro_sessions")
    encode_session(midi_dir=str(midi), session="songs", sessions_dir=str(sessions), instrument_key="name", workers=1)
    return sessions


def test_pieces_start_at_their_first_sounding_bar_in_both_views(intro_sessions_dir):
    """Leading bars where no part plays are dropped (every part moved back by the same whole
    bars, the meter in force kept); an intro where some parts play stays."""
    dropped_steps = {0: 2 * 48, 1: 0, 2: 48, 3: 2 * 36 + 48}  # grid steps (12 per quarter)
    dropped_bars = {0: 2, 1: 0, 2: 1, 3: 3}
    first_pos = {0: 0, 1: 0, 2: 24, 3: 0}
    for view in ("score", "tracks"):
        dm = load(intro_sessions_dir, "songs", view, val_fraction=0.2, test_fraction=0.2)
        by_piece: dict[str, list[dict]] = {}
        for row in dm.rows:
            by_piece.setdefault(row["piece"], []).append(row)
        assert len(by_piece) == 12
        for piece, rows in by_piece.items():
            kind = int(piece[4:6]) % 4
            assert {r["bars_dropped"] for r in rows} == {dropped_bars[kind]}
            assert {tuple(r["meter"]) for r in rows} == {("4/4",)}  # kind 3: the 3/4 bars are gone
            got: dict[str, GridNotes] = {}
            for row in rows:
                words = dm.vocab.decode_ids(row_ids(dm, row))
                assert words[row["header"] : row["header"] + 2] == ["bar", "ts_4/4"]
                if view == "score":
                    parts, meter = decode_score(words, dm.vocab)
                else:
                    grid, meter = decode_words(words, dm.vocab)
                    parts = {row["instrument"]: grid}
                assert meter.signatures == [(4, 4)]
                got.update(parts)
            want = shifted(expected_parts(dm, {"session": "songs", "tracks": [t for r in rows for t in r.get("tracks", [r])]}),
                           dropped_steps[kind])
            assert got == want, piece
            assert min(int(g.onset.min()) for g in got.values()) == first_pos[kind]  # sound in the first bar
            if kind == 1:  # the melody's silent intro stays
                assert got["melody"].onset.min() == 4 * 48


def test_tracks_ids_are_unchanged_for_pieces_that_open_with_sound_among_shifted_ones(intro_sessions_dir):
    dm = load(intro_sessions_dir, "songs", "tracks", val_fraction=0.2, test_fraction=0.2, repeat_bars=0, final_bar=False)
    for row in dm.rows:
        record = load_note_file(dm.sessions_dir / "songs" / row["file"])
        same = np.array_equal(row_ids(dm, row)[2:-1], dm.vocab.ids(record["words"]))
        assert same == (row["bars_dropped"] == 0), row["file"]
