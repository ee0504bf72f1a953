"""Hostile and huge input on the encode/decode path: crafted files cost little, fail alone,
leave nothing behind, and odd names survive. The files are built here byte by byte."""

import fcntl
import json
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from midi_factory import make_midi, scale

from deeporb.decode import decode_path
from deeporb.encoding.words import EncodingConfig, Vocabulary, decode_words
from deeporb.errors import UserError
from deeporb.fileio import MARKER, STAGING, atomic_write_bytes, remove_stale_staging, staged_folder
from deeporb.instruments import RESERVED_KEYS
from deeporb.midi import read_midi
from deeporb.session_store import CACHE_DIR, load_manifest, load_note_file, scan_note_files
from deeporb.stages.encode import encode_session
from deeporb.workers import WorkerPool

ROOT = Path(__file__).resolve().parents[1]
MAX_DELTA = 0x0FFFFFFF  # the largest variable-length quantity MIDI allows


def vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def smf(tracks: list[bytes], tpq: int = 480, claimed: int | None = None) -> bytes:
    """A format-1 MIDI file of raw track bodies; ``claimed`` lies about the track length."""
    head = b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks), tpq)
    return head + b"".join(b"MTrk" + struct.pack(">I", claimed or len(t)) + t for t in tracks)


def note(delta: int, pitch: int = 60, length: int = 1) -> bytes:
    return vlq(delta) + bytes([0x90, pitch, 90]) + vlq(length) + bytes([0x80, pitch, 0])


END = b"\x00\xff\x2f\x00"
HOSTILE = {
    # 37 bytes: one note after the largest delta time at 1 tick per quarter
    "huge_delta.mid": smf([note(MAX_DELTA) + END], tpq=1),
    # eight maximal delta times in a row (empty text events), then a note
    "delta_chain.mid": smf([b"".join(vlq(MAX_DELTA) + b"\xff\x01\x00" for _ in range(8)) + note(0) + END], tpq=1),
    "bad_status.mid": smf([b"\x00\x40\x40" + note(0) + END]),
    "undefined_status.mid": smf([b"\x00\xf4\x01" + note(0) + END]),
    "truncated.mid": smf([note(0) + END], claimed=1000),
    # a real note, then a time signature change at an absurd time: no bar lines up to it
    "late_meter.mid": smf([note(0, length=480) + vlq(MAX_DELTA) + b"\xff\x58\x04\x03\x02\x18\x08" + END], tpq=1),
}
NAMES = ["B♭ Clarinet", "ヴァイオリン", "\u202eevil", "cache", "Drums", "Kit"]


@pytest.fixture
def hostile_dir(tmp_path) -> Path:
    d = tmp_path / "hostile"
    d.mkdir()
    for name, data in HOSTILE.items():
        (d / name).write_bytes(data)
    make_midi(d / "good.mid", [{"name": "Flute", "program": 73, "notes": scale()}])
    make_midi(
        d / "names.mid",
        [
            {"name": n.encode().decode("latin-1"), "program": 40 + i, "is_drum": n == "Kit", "notes": scale()}
            for i, n in enumerate(NAMES)
        ],
    )
    return d


def test_crafted_files_are_skipped_with_reasons_and_good_files_beside_them_encoded(hostile_dir, tmp_path):
    m = encode_session(midi_dir=str(hostile_dir), session="h", sessions_dir=str(tmp_path / "s"), workers=1,
                       progress=False)
    reasons = {s["file"]: s["reason"] for s in m["skipped"]}
    assert set(reasons) == {"huge_delta.mid", "delta_chain.mid", "bad_status.mid", "undefined_status.mid",
                            "truncated.mid"}
    assert "over max_piece_quarters=20000" in reasons["huge_delta.mid"]
    assert "over max_piece_quarters=20000" in reasons["delta_chain.mid"]
    assert reasons["bad_status.mid"].startswith("corrupt MIDI") and "running status" in reasons["bad_status.mid"]
    assert reasons["truncated.mid"].startswith("corrupt MIDI") and "chunk length" in reasons["truncated.mid"]
    assert m["totals"]["encoded_files"] == 3 and m["totals"]["notes"] == 5 + 6 * 5 + 1
    late = load_note_file(next((tmp_path / "s" / "h" / "acoustic_grand_piano").glob("late_meter-*.json")))
    assert late["words"].split()[:3] == ["bar", "ts_4/4", "pos_0"] and late["words"].count("bar") == 1


def test_a_smaller_piece_limit_skips_long_pieces(tmp_path):
    make_midi(tmp_path / "m" / "long.mid", [{"name": "a", "notes": scale(step=480 * 100)}])  # 500 quarters
    make_midi(tmp_path / "m" / "short.mid", [{"name": "a", "notes": scale()}])
    m = encode_session(midi_dir=str(tmp_path / "m"), sessions_dir=str(tmp_path / "s"), workers=1, progress=False,
                       max_piece_quarters=400)
    assert [s["file"] for s in m["skipped"]] == ["long.mid"]
    # the last note starts at 400 and its 100 quarters count as the words clip them, 16
    assert "piece lasts 416 quarters, over max_piece_quarters=400" in m["skipped"][0]["reason"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_crafted_files_cost_little_memory_and_time(hostile_dir, tmp_path):
    code = textwrap.dedent(f"""
        import re, time
        from pathlib import Path
        from deeporb.stages.encode import encode_session
        start = time.perf_counter()
        encode_session(midi_dir={str(hostile_dir)!r}, session="h", sessions_dir={str(tmp_path / "s")!r},
                       workers=1, progress=False)
        # this process's own peak (getrusage would also count pytest's, from before exec)
        peak = re.search(r"VmHWM:\\s+(\\d+)", Path("/proc/self/status").read_text())[1]
        print(peak, time.perf_counter() - start)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak_kib, seconds = out.stdout.split()
    assert int(peak_kib) < 200 * 1024, f"peak RSS {int(peak_kib) / 1024:.0f} MiB"  # was 4.25 GB for one file
    assert float(seconds) < 30
    assert sum(f.stat().st_size for f in (tmp_path / "s").rglob("*") if f.is_file()) < 100_000


def test_reserved_names_get_their_own_keys_and_unicode_names_round_trip(hostile_dir, tmp_path):
    m = encode_session(midi_dir=str(hostile_dir), session="n", sessions_dir=str(tmp_path / "s"), workers=1,
                       instrument_key="name", progress=False)
    inst = m["instruments"]
    assert {"cache_track", "drums_track", "drums", "b_clarinet", "evil"} <= set(inst)
    assert inst["drums"]["is_drum"] and not inst["drums_track"]["is_drum"]
    assert not (tmp_path / "s" / "n" / CACHE_DIR).exists()
    assert not set(inst) - {"drums"} & RESERVED_KEYS
    session = tmp_path / "s" / "n"
    names = {load_note_file(f)["name"] for f in scan_note_files(session) if "names-" in f.name}
    assert names == set(NAMES)
    written = decode_path(session, tmp_path / "decoded")
    decoded = {read_midi(p).tracks[0].name for p in written if p.name.startswith("names-")}
    assert decoded == set(NAMES)
    cli = subprocess.run([sys.executable, "-m", "deeporb.decode", str(session), str(tmp_path / "cli")],
                         capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr


def test_reruns_are_byte_identical_whatever_the_workers(hostile_dir, tmp_path):
    def files(d: Path) -> dict:
        return {p.relative_to(d): p.read_bytes() for p in d.rglob("*") if p.is_file()}

    encode_session(midi_dir=str(hostile_dir), session="r", sessions_dir=str(tmp_path / "a"), workers=1, progress=False)
    encode_session(midi_dir=str(hostile_dir), session="r", sessions_dir=str(tmp_path / "b"), workers=2, progress=False)
    first = files(tmp_path / "a")
    assert first == files(tmp_path / "b")
    encode_session(midi_dir=str(hostile_dir), session="r", sessions_dir=str(tmp_path / "a"), workers=2, progress=False)
    assert files(tmp_path / "a") == first
    manifest = load_manifest(tmp_path / "a" / "r")
    assert manifest["style"] == "r" and len(manifest["pieces"]) == 3
    assert json.loads((tmp_path / "a" / "r" / "manifest.json").read_text()) == manifest


def test_style_is_recorded(tmp_path):
    make_midi(tmp_path / "m" / "a.mid", [{"name": "a", "notes": scale()}])
    m = encode_session(midi_dir=str(tmp_path / "m"), sessions_dir=str(tmp_path / "s"), style="Bach Chorales",
                       workers=1, progress=False)
    assert m["session"] == "m" and m["style"] == "bach_chorales"
    assert load_manifest(tmp_path / "s" / "m")["style"] == "bach_chorales"


def test_stale_staging_of_dead_runs_is_removed_and_live_staging_kept(tmp_path):
    sessions = tmp_path / "s"
    dead_tmp = sessions / ".x.tmp-999999-abc"
    dead_old = sessions / ".x.old-999999"
    for d in (dead_tmp, dead_old):
        atomic_write_bytes(d / "violin" / "a.json", b"{}")
        (d / MARKER).write_text(STAGING + "\n")
    # someone's folders that merely look like staging: no marker, so never removed
    lookalikes = [sessions / ".photos.tmp-999999-2019", sessions / ".thesis.old-999999"]
    for d in lookalikes:
        atomic_write_bytes(d / "keep.txt", b"mine")
    live = sessions / ".y.tmp-1-live"
    live.mkdir()
    (live / MARKER).write_text(STAGING + "\n")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        make_midi(tmp_path / "m" / "a.mid", [{"name": "a", "notes": scale()}])
        encode_session(midi_dir=str(tmp_path / "m"), session="x", sessions_dir=str(sessions), workers=1,
                       progress=False)
        assert sorted(p.name for p in sessions.iterdir()) == [".photos.tmp-999999-2019", ".thesis.old-999999",
                                                              ".y.tmp-1-live", "x"]
        assert not (sessions / "x" / MARKER).exists()
    finally:
        os.close(fd)
    assert remove_stale_staging(sessions) == [live]
    assert all((d / "keep.txt").read_bytes() == b"mine" for d in lookalikes)


def test_a_removal_cut_short_is_finished_by_the_next_run(tmp_path):
    old = tmp_path / ".x.old-999999"  # a replaced session whose removal was killed half way
    (old / "violin").mkdir(parents=True)
    (old / MARKER).write_text(STAGING + "\n")
    assert remove_stale_staging(tmp_path) == [old] and not old.exists()


def test_a_failed_staging_leaves_the_old_folder_untouched(tmp_path):
    final = tmp_path / "f"

    def ours(folder: Path) -> bool:  # what this caller's folders look like
        return (folder / "a").is_file()

    with staged_folder(final, ours) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), staged_folder(final, ours) as tmp:
        (tmp / "a").write_text("2")
        raise RuntimeError
    assert (final / "a").read_text() == "1" and [p.name for p in tmp_path.iterdir()] == ["f"]
    assert sorted(p.name for p in final.iterdir()) == ["a"]


def test_staging_replaces_only_what_its_caller_vouches_for(tmp_path):
    final = tmp_path / "f"
    final.mkdir()
    (final / "thesis.tex").write_text("mine")
    with pytest.raises(UserError, match="is not DeepOrb's to replace"), staged_folder(final, lambda _: False):
        raise AssertionError("the block must not run")
    (tmp_path / "g").write_text("a file")
    with pytest.raises(UserError, match="is not DeepOrb's to replace"), staged_folder(tmp_path / "g", lambda _: False):
        raise AssertionError("the block must not run")
    # vouched for when the work began, but someone's by the time of the swap: still refused
    with pytest.raises(UserError), staged_folder(tmp_path / "h", lambda p: not (p / "late.txt").exists()) as tmp:
        (tmp / "new").write_text("new")
        (tmp_path / "h").mkdir()
        (tmp_path / "h" / "late.txt").write_text("mine")
    assert (final / "thesis.tex").read_text() == "mine" and (tmp_path / "g").read_text() == "a file"
    assert [p.name for p in (tmp_path / "h").iterdir()] == ["late.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "g", "h"]


def test_an_unwritable_output_ends_the_run_with_one_line(tmp_path):
    make_midi(tmp_path / "m" / "a.mid", [{"name": "a", "notes": scale()}])
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="cannot write session .*sessions_dir"):
        encode_session(midi_dir=str(tmp_path / "m"), sessions_dir=str(tmp_path / "file" / "s"), workers=1,
                       progress=False)
    run = [sys.executable, str(ROOT / "encode.py"), f"midi_dir={tmp_path / 'm'}", f"sessions_dir={tmp_path / 'file'}"]
    cli = subprocess.run(run, capture_output=True, text=True, cwd=tmp_path)
    assert cli.returncode == 2 and len(cli.stderr.strip().splitlines()) == 1
    assert cli.stderr.startswith("error: cannot write session")
    decode = subprocess.run([sys.executable, "-m", "deeporb.decode", str(tmp_path / "nope"), str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert decode.returncode == 2 and decode.stderr.startswith("error:") and "Traceback" not in decode.stderr


def test_decode_answers_bad_note_files_and_bad_outputs_with_one_line(tmp_path):
    make_midi(tmp_path / "m" / "a.mid", [{"name": "a", "notes": scale()}])
    encode_session(midi_dir=str(tmp_path / "m"), session="d", sessions_dir=str(tmp_path / "s"), workers=1,
                   progress=False)
    (note_file,) = scan_note_files(tmp_path / "s" / "d")
    (tmp_path / "file").write_text("")
    for args in ([note_file, tmp_path / "file" / "o.mid"], [tmp_path / "s" / "d", tmp_path / "file"]):
        out = subprocess.run([sys.executable, "-m", "deeporb.decode", *map(str, args)], capture_output=True, text=True)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert out.stderr.startswith("error: cannot write")
    note_file.write_bytes(b'{"words": ')
    out = subprocess.run([sys.executable, "-m", "deeporb.decode", str(note_file), str(tmp_path / "x.mid")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.startswith(f"error: cannot read note file {note_file}")


def descendants(pid: int) -> set[int]:
    """Live (non-zombie) descendants of ``pid``, from /proc."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            parent[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - found
        found |= frontier
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_pool_workers_die_with_their_parent_on_kill_9():
    code = textwrap.dedent("""
        import time
        from deeporb.workers import WorkerPool
        with WorkerPool(2) as pool:
            for _ in pool.imap(time.sleep, [0.0, 0.0, 60, 60]):
                print("started", flush=True)
    """)
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "started\n"
    workers = descendants(child.pid)
    assert len(workers) >= 2
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    deadline = time.monotonic() + 10
    while any(alive(p) for p in workers):
        assert time.monotonic() < deadline, "pool workers outlived their parent"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One random corruption of a real file: flipped bytes, a cut, inserted bytes, maximal deltas."""
    b = bytearray(data)
    kind = rng.randrange(4)
    at = rng.randrange(14, len(b))
    if kind == 0:
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(14, len(b))] = rng.randrange(256)
    elif kind == 1:
        del b[at:]
    elif kind == 2:
        b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    else:
        b[at:at] = b"\xff\xff\xff\x7f" * rng.randint(1, 4)
    return bytes(b)


def test_fuzzed_real_files_encode_or_skip_and_every_note_file_decodes(chorale_midi_dir, tmp_path):
    rng = random.Random(11)
    d = tmp_path / "fuzz"
    d.mkdir()
    originals = sorted(chorale_midi_dir.glob("*.mid"))[:3]
    for src in originals:
        data = src.read_bytes()
        (d / src.name).write_bytes(data)
        for i in range(40):
            (d / f"{src.stem}-{i:02d}.mid").write_bytes(mutate(data, rng))
    start = time.perf_counter()
    m = encode_session(midi_dir=str(d), session="f", sessions_dir=str(tmp_path / "s"), workers=1, progress=False)
    assert time.perf_counter() - start < 60
    assert m["totals"]["files"] == 3 * 41
    assert all(s["reason"] for s in m["skipped"])
    encoded = {p["source"] for p in load_manifest(tmp_path / "s" / "f")["pieces"]}
    assert {src.name for src in originals} <= encoded
    vocab = Vocabulary(EncodingConfig())
    for f in scan_note_files(tmp_path / "s" / "f"):
        decode_words(load_note_file(f)["words"], vocab)  # strict: raises if a file is not words


def test_the_pool_gives_results_in_order_or_as_completed_with_a_callback():
    seen = []
    with WorkerPool(2, chunksize=3, window=2) as pool:
        assert list(pool.imap(abs, range(-20, 0), on_result=seen.append)) == list(range(20, 0, -1))
        assert sorted(pool.imap(abs, range(-20, 0), ordered=False)) == list(range(1, 21))
    assert seen == list(range(20, 0, -1))
    with WorkerPool(1) as inline:
        assert list(inline.imap(abs, [-1, -2])) == [1, 2]
