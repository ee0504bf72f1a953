"""The built-in corpora on the real music21 corpus: exported MIDI read back with symusic, no mocks
of music21."""

import ast
import dataclasses
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest
import symusic

from deeporb.builtin_corpora import export, specs
from deeporb.builtin_corpora.export import export_dataset
from deeporb.builtin_corpora.specs import DATASETS, Piece, list_pieces

ROOT = Path(__file__).resolve().parents[1]
SATB = ["soprano", "alto", "tenor", "bass"]


def tracks(path: Path) -> list[tuple[str, int, int]]:
    score = symusic.Score(str(path))
    return [(t.name, t.program, len(t.notes)) for t in score.tracks]


def mean_pitch(track) -> float:
    return sum(n.pitch for n in track.notes) / len(track.notes)


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def bach3(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return cache, export_dataset("bach_chorales", cache, limit=3)


def test_bach_chorales_have_four_named_voices(bach3):
    cache, report = bach3
    folder = cache / "bach_chorales"
    assert report.folder == folder
    assert [p.stem for p in list_pieces("bach_chorales")[:3]] == ["bwv1.6", "bwv2.6", "bwv3.6"]
    assert report.exported == ["bwv1.6", "bwv2.6", "bwv3.6"]
    assert sorted(p.name for p in folder.iterdir()) == [
        ".export.json",  # manifest: exporter/music21 versions and skips
        "bwv1.6.mid",
        "bwv2.6.mid",
        "bwv3.6.mid",
    ]
    for path in folder.glob("*.mid"):
        score = symusic.Score(str(path))
        assert [t.name for t in score.tracks] == SATB, path.name
        assert [t.program for t in score.tracks] == [52, 52, 52, 52]
        assert all(len(t.notes) >= 20 for t in score.tracks), path.name
        means = [mean_pitch(t) for t in score.tracks]
        assert means == sorted(means, reverse=True), (path.name, means)  # S above A above T above B
        assert means[0] - means[3] > 12


def test_bwv1_6_horn_part_is_dropped(bach3):
    """bwv1.6.mxl has a fifth part (Horn 2) doubling the choir; only the four voices are kept."""
    from music21 import converter

    source = converter.parse(specs.corpus_root() / "bach" / "bwv1.6.mxl")
    assert [p.partName for p in source.parts] == ["Horn 2", "Soprano", "Alto", "Tenor", "Bass"]
    assert [name for name, _, _ in tracks(bach3[0] / "bach_chorales" / "bwv1.6.mid")] == SATB


def test_second_export_is_a_cache_hit(bach3):
    cache, _ = bach3
    folder = cache / "bach_chorales"
    before = snapshot(folder)
    start = time.perf_counter()
    report = export_dataset("bach_chorales", cache, limit=3)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0
    assert report.exported == [] and report.cached == ["bwv1.6", "bwv2.6", "bwv3.6"]
    assert snapshot(folder) == before  # same names, bytes and mtimes; no temp files left
    assert report.folder == folder


def test_limit_takes_the_first_pieces_and_extends_the_cache(tmp_path):
    folder = export_dataset("bach_chorales", tmp_path, limit=1).folder
    assert sorted(p.name for p in folder.glob("*.mid")) == ["bwv1.6.mid"]
    report = export_dataset("bach_chorales", tmp_path, limit=2)
    assert report.cached == ["bwv1.6"] and report.exported == ["bwv2.6"]
    assert sorted(p.name for p in folder.glob("*.mid")) == ["bwv1.6.mid", "bwv2.6.mid"]
    assert export_dataset("bach_chorales", tmp_path / "zero", limit=0).files == []
    with pytest.raises(ValueError, match="limit"):
        export_dataset("bach_chorales", tmp_path, limit=-1)


def test_unknown_dataset_lists_the_available_ones(tmp_path):
    with pytest.raises(ValueError) as err:
        export_dataset("nope", tmp_path)
    for name in ("bach_chorales", "nottingham", "beethoven_quartets"):
        assert name in str(err.value)
    assert not (tmp_path / "nope").exists()


def test_bad_pieces_are_skipped_reported_recorded_and_not_retried(tmp_path, monkeypatch, caplog):
    pieces = [
        Piece("bach/bwv227.3.mxl", "bwv227.3"),  # two soprano parts: not S/A/T/B
        Piece("bach/no-such-file.mxl", "missing"),  # music21 cannot parse it
        Piece("bach/bwv1.6.mxl", "bwv1.6"),
        Piece("bach/bwv2.6.mxl", "bwv2.6"),
    ]
    spec = dataclasses.replace(DATASETS["bach_chorales"], list_pieces=lambda root: pieces)
    monkeypatch.setitem(DATASETS, "bach_chorales", spec)
    with caplog.at_level(logging.WARNING, logger="deeporb.builtin_corpora.export"):
        report = export_dataset("bach_chorales", tmp_path, limit=1)
    # The skipped pieces do not count towards the limit: we still get one chorale.
    assert report.exported == ["bwv1.6"]
    assert set(report.skipped) == {"bwv227.3", "missing"}
    assert "Soprano 1" in report.skipped["bwv227.3"]
    assert "skipped 2 piece(s)" in caplog.text
    recorded = json.loads((tmp_path / "bach_chorales" / ".export.json").read_text())["skipped"]
    assert set(recorded) == {"bwv227.3", "missing"}
    assert sorted(p.name for p in (tmp_path / "bach_chorales").glob("*.mid")) == ["bwv1.6.mid"]

    def must_not_convert(*args):
        raise AssertionError("a recorded skip was parsed again")

    monkeypatch.setattr(export, "convert_piece", must_not_convert)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="deeporb.builtin_corpora.export"):
        again = export_dataset("bach_chorales", tmp_path, limit=1)
    assert again.exported == [] and again.cached == ["bwv1.6"]
    assert set(again.skipped) == {"bwv227.3", "missing"}
    assert "skipped 2 piece(s)" in caplog.text  # never silent, even from the cache


def test_disk_errors_abort_instead_of_being_recorded_as_skips(tmp_path, monkeypatch):
    def disk_full(path, data):
        raise OSError("disk full")

    monkeypatch.setattr(export, "atomic_write_bytes", disk_full)  # the .mid files' writer
    with pytest.raises(OSError, match="disk full"):
        export_dataset("bach_chorales", tmp_path, limit=1)
    folder = tmp_path / "bach_chorales"
    assert [p.name for p in folder.iterdir()] == [".export.json"]  # no .mid
    assert json.loads((folder / ".export.json").read_text())["skipped"] == {}  # piece not blamed


def test_cache_from_another_exporter_version_is_rebuilt(tmp_path, monkeypatch):
    folder = export_dataset("bach_chorales", tmp_path, limit=1).folder
    (folder / "bwv1.6.mid").write_bytes(b"MThd stale bytes from an old exporter")
    (folder / "bwv2.6.mid").write_bytes(b"MThd stale, beyond the limit")
    monkeypatch.setattr(export, "EXPORT_VERSION", export.EXPORT_VERSION + 1)
    report = export_dataset("bach_chorales", tmp_path, limit=1)
    assert report.exported == ["bwv1.6"] and report.cached == []
    assert sorted(p.name for p in folder.glob("*.mid")) == ["bwv1.6.mid"]
    assert [t.name for t in symusic.Score(str(folder / "bwv1.6.mid")).tracks] == SATB
    manifest = json.loads((folder / ".export.json").read_text())
    assert manifest["signature"]["export_version"] == export.EXPORT_VERSION


def test_process_pool_writes_the_same_bytes(bach3, tmp_path):
    report = export_dataset("bach_chorales", tmp_path, limit=3, workers=2)
    assert report.exported == ["bwv1.6", "bwv2.6", "bwv3.6"]
    for stem in report.exported:
        pooled = (tmp_path / "bach_chorales" / f"{stem}.mid").read_bytes()
        assert pooled == (bach3[0] / "bach_chorales" / f"{stem}.mid").read_bytes()


def test_nottingham_folk_melodies(tmp_path):
    spec = DATASETS["nottingham"]
    assert spec.instrument_key == "program"
    assert "Ryan's Mammoth" in spec.description and "2" in spec.description
    report = export_dataset("nottingham", tmp_path, limit=3)
    assert report.exported == [
        "nottingham-dataset_reelsa-c_80",
        "nottingham-dataset_reelsa-c_81",
        "ryansMammoth_7thRegimentReel",
    ]
    assert report.no_repeats == [] and report.skipped == {}
    for stem in report.exported:
        score = symusic.Score(str(tmp_path / "nottingham" / f"{stem}.mid"))
        assert [(t.name, t.program) for t in score.tracks] == [("melody", 73)]
        onsets = [n.time for n in score.tracks[0].notes]
        assert len(onsets) > 50
        assert len(set(onsets)) == len(onsets), "chord symbols leaked in: the melody is monophonic"
        assert max(n.duration for n in score.tracks[0].notes) <= 4 * score.tpq
    # Cuckoo's Nest (X:80) is A:| B:| with 8 bars of 4/4 each: AABB = 32 bars = 128 quarters.
    # music21 alone repeats from the top (AA AB AB = 192 quarters); _fix_repeat_marks fixes it.
    cuckoo = symusic.Score(str(tmp_path / "nottingham" / "nottingham-dataset_reelsa-c_80.mid"))
    assert cuckoo.end() / cuckoo.tpq == 128


def test_beethoven_quartet_tracks_and_programs(tmp_path):
    assert DATASETS["beethoven_quartets"].instrument_key == "program"
    assert [p.stem for p in list_pieces("beethoven_quartets")][:2] == [
        "opus18no1_movement1",
        "opus18no1_movement2",
    ]
    folder = export_dataset("beethoven_quartets", tmp_path, limit=1).folder
    assert [p.name for p in folder.glob("*.mid")] == ["opus18no1_movement1.mid"]
    score = symusic.Score(str(folder / "opus18no1_movement1.mid"))
    assert [(t.name, t.program) for t in score.tracks] == [
        ("violin 1", 40),
        ("violin 2", 40),
        ("viola", 41),
        ("cello", 42),
    ]
    assert all(len(t.notes) > 500 for t in score.tracks)
    # Violin 1 opens bar 19 with four grace notes; written as zero-length notes they used to
    # swallow later note-offs and last for bars. No note here is longer than a tied 2 bars of 3/4.
    longest = max(n.duration for t in score.tracks for n in t.notes) / score.tpq
    assert longest <= 6, longest
    assert mean_pitch(score.tracks[0]) > mean_pitch(score.tracks[2]) > mean_pitch(score.tracks[3])


def test_datasets_are_listed_without_parsing():
    counts = {name: len(list_pieces(name)) for name in DATASETS}
    assert counts["bach_chorales"] >= 400
    assert counts["nottingham"] == 2 + 1059
    assert counts["beethoven_quartets"] >= 20
    for name in DATASETS:
        stems = [p.stem for p in list_pieces(name)]
        assert len(set(stems)) == len(stems)  # one file per piece
        assert all(specs._safe_stem(s) == s for s in stems)


def test_modules_never_import_torch_and_import_music21_lazily():
    for path in sorted((ROOT / "deeporb" / "builtin_corpora").glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert "torch" not in imported, path.name
        top_level = {
            alias.name.split(".")[0]
            for node in tree.body
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            node.module.split(".")[0]
            for node in tree.body
            if isinstance(node, ast.ImportFrom) and node.module
        }
        assert "music21" not in top_level and "symusic" not in top_level, path.name
    code = "import sys, deeporb.builtin_corpora.export; print(sorted({'torch', 'music21', 'symusic'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # nothing they import pulls them in either


def test_chorale_fixture_gives_six_satb_files(chorale_midi_dir):
    files = sorted(chorale_midi_dir.glob("*.mid"))
    assert len(files) == 6
    assert [p.stem for p in files] == sorted(p.stem for p in list_pieces("bach_chorales")[:6])
    for path in files:
        assert [(name, program) for name, program, _ in tracks(path)] == [(v, 52) for v in SATB]
        assert all(n > 0 for _, _, n in tracks(path))
