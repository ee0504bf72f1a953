"""The service keeps answering under abuse (issue 17): a WAV at MIDI's slowest tempo, idle and
slow connections, too many connections, an earlier run's pieces, malformed bodies, a wrong Host.
Real servers on loopback ports (tests/test_serve.py's ``running``), raw sockets where a client
misbehaves below HTTP."""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path

import pytest
import torch
from test_serve import KEYS, ROOT, call, multipart, running

from deeporb.encoding.words import EncodingConfig, Vocabulary
from deeporb.errors import UserError
from deeporb.fileio import claim_folder
from deeporb.generation.draw import GREEDY_BELOW
from deeporb.model import LSTMGenerator
from deeporb.serve.app import ServeConfig, no_authentication_warning
from deeporb.serve.guard import BAD_HTTP, host_names
from deeporb.serve.pieces import PieceStore
from deeporb.stages.sample import RenderConfig

SLOWEST = 0xFFFFFF  # µs a quarter: MIDI's slowest tempo, 3.58 quarters a minute


@pytest.fixture(scope="module")
def model():
    """An untrained tiny tracks-view LSTM: the abuse is in the requests, not the music."""
    torch.manual_seed(0)
    session = {"names": ["tiny"], "qpm_median": 100.0, "time_signatures": {"4/4": 4},
               "instruments": {k: {"program": {"acoustic_bass": 32}.get(k, 0), "is_drum": k == "drums"} for k in KEYS}}
    return LSTMGenerator(Vocabulary(EncodingConfig(), KEYS).to_dict(), embed_dim=16, hidden_size=32, num_layers=1,
                         dropout=0.0, session=session).eval()


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    with running(model, tmp_path_factory.mktemp("pieces"), max_bars=16) as (url, app):
        yield url, app


def primer(tempo_us: int = SLOWEST, bars: int = 4, numerator: int = 8) -> bytes:
    """A piano primer in numerator/4 at ``tempo_us`` µs a quarter (tempo meta FF 51 03), a note a quarter."""
    def var(n: int) -> bytes:  # MIDI's variable-length number
        out = [n & 0x7F]
        while n > 0x7F:
            n >>= 7
            out.append(0x80 | (n & 0x7F))
        return bytes(reversed(out))

    events = b"\x00\xff\x58\x04" + bytes([numerator, 2, 24, 8]) + b"\x00\xff\x51\x03" + tempo_us.to_bytes(3, "big")
    events += b"\x00\xc0\x00"  # program 0: acoustic grand piano
    for i in range(bars * numerator):
        events += b"\x00" + bytes([0x90, 60 + i % 12, 80]) + var(480) + bytes([0x80, 60 + i % 12, 0])
    events += b"\x00\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, 480) + b"MTrk" + struct.pack(">I", len(events)) + events


def generate_with(url: str, data: bytes, bars: int = 1) -> dict:
    body, kind = multipart({"bars": str(bars), "seed": "1"}, {"primer": ("slow.mid", data)})
    status, answer, _ = call(url, "/api/generate", body, kind)
    assert status == 200, answer
    return answer


def one_line(answer) -> str:
    assert isinstance(answer, dict) and list(answer) == ["error"], answer
    line = answer["error"]
    assert "\n" not in line and len(line) < 300, line
    return line


# ---------------------------------------------------------------------------------------
# a WAV at the slowest tempo


def test_the_slowest_tempo_in_8_4_makes_a_wav_refused_before_drawing(server):
    """The attack: 4 bars of 8/4 at 0xFFFFFF µs a quarter, one bar more: 671 s of audio."""
    url, _ = server
    answer = generate_with(url, primer())
    assert answer["time_signature"] == "8/4" and answer["seconds"] > 600, answer
    t0 = time.monotonic()
    status, refusal, _ = call(url, answer["wav_url"])
    assert status == 422 and time.monotonic() - t0 < 5
    assert one_line(refusal).startswith(f"the piece lasts {answer['seconds']:,.0f} s, over render.max_seconds=600: "
                                        "this server draws no WAV that long")
    assert call(url, answer["midi_url"])[0] == call(url, answer["png_url"])[0] == 200  # the piece itself is fine


def test_a_long_wav_is_drawn_in_a_child_process_while_the_server_answers(model, tmp_path):
    with running(model, tmp_path / "pieces", render=RenderConfig(max_seconds=100_000)) as (url, _):
        answer = generate_with(url, primer(bars=2))
        assert answer["seconds"] > 250
        waits = []
        with ThreadPoolExecutor(1) as pool:
            wav = pool.submit(call, url, answer["wav_url"])
            while not wav.done():
                t0 = time.monotonic()
                assert call(url, "/api/model")[0] == 200
                waits.append(time.monotonic() - t0)
                time.sleep(0.05)
            status, data, _ = wav.result()
    assert status == 200 and data[:4] == b"RIFF" and len(data) > 250 * 48_000 * 4
    assert len(waits) >= 3 and max(waits) < 5, waits  # answered all along, not after the drawing


def test_a_wav_past_its_time_limit_is_stopped_and_answered_503(model, tmp_path):
    folder = tmp_path / "pieces"
    with running(model, folder, render=RenderConfig(max_seconds=100_000), render_timeout_s=0.3) as (url, _):
        answer = generate_with(url, primer(bars=4))
        t0 = time.monotonic()
        status, refusal, _ = call(url, answer["wav_url"])
        assert status == 503 and time.monotonic() - t0 < 5
        assert one_line(refusal) == ("the WAV took over 0.3 s to draw (render_timeout_s), so the server stopped it; "
                                     "retry later or ask for a shorter piece")
        midi = str(folder / f"{answer['id']}.mid")
        drawing = [pid for pid in os.listdir("/proc") if pid.isdigit() and midi.encode() in _cmdline(pid)]
        assert drawing == []  # the child was killed, not left running
        assert {p.name for p in folder.iterdir()} == {".deeporb", f"{answer['id']}.mid"}  # no draft left
        assert call(url, "/api/model")[0] == 200


def _cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_a_primer_at_the_fastest_tempo_gives_a_wav(server):
    """1 µs a quarter: the WAV was a 500 (the ring-out tail overflowed MIDI's delta time)."""
    url, _ = server
    answer = generate_with(url, primer(tempo_us=1, bars=1, numerator=4))
    status, data, _ = call(url, answer["wav_url"])
    assert status == 200 and data[:4] == b"RIFF", data


# ---------------------------------------------------------------------------------------
# connections


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=30)


def until_closed(sock: socket.socket, drip: bytes = b"", every: float = 0.25, limit: float = 60) -> tuple[float, bytes]:
    """Send ``drip`` a byte every ``every`` s until the server closes -> (seconds, what it sent)."""
    t0, received, left = time.monotonic(), b"", iter(drip)
    with sock:
        while time.monotonic() - t0 < limit:
            if select.select([sock], [], [], every)[0]:
                try:
                    got = sock.recv(65536)
                except ConnectionResetError:
                    got = b""
                if not got:
                    return time.monotonic() - t0, received
                received += got
            elif (byte := next(left, None)) is not None:
                try:
                    sock.send(bytes([byte]))
                except (BrokenPipeError, ConnectionResetError):
                    return time.monotonic() - t0, received
    raise AssertionError(f"the connection was still open after {limit} s")


def test_the_default_timeouts_close_idle_and_slow_connections_within_bounds():
    cfg = ServeConfig()
    assert cfg.idle_timeout_s <= 15 and cfg.header_timeout_s <= 30 and cfg.body_timeout_s <= 60
    assert cfg.max_connections <= 1000 and cfg.max_connections * cfg.max_body_bytes <= 1_000_000_000


@pytest.fixture(scope="module")
def impatient(model, tmp_path_factory):
    with running(model, tmp_path_factory.mktemp("pieces"), idle_timeout_s=1, header_timeout_s=2,
                 body_timeout_s=2) as (url, _):
        yield url


def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(impatient):
    seconds, said = until_closed(connect(impatient))
    assert said == b"" and 0.8 < seconds < 10


def test_headers_sent_a_byte_at_a_time_are_cut_at_the_header_timeout(impatient):
    request = b"GET /api/model HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\n\r\n"  # 15 s at this pace
    seconds, said = until_closed(connect(impatient), request)
    assert said == b"" and 1.8 < seconds < 10


def test_a_body_sent_a_byte_at_a_time_is_answered_408_at_the_body_timeout(impatient):
    sock = connect(impatient)
    sock.sendall(b"POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 200\r\n\r\n")
    seconds, said = until_closed(sock, b'{"bars": 1' + b" " * 189 + b"}")
    head, _, body = said.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and b"connection: close" in head.lower() and 1.8 < seconds < 10
    assert one_line(json.loads(body)).startswith("the request body took over 2 s to arrive (")


def test_a_connection_past_max_connections_is_answered_503_and_the_server_goes_on(model, tmp_path):
    with running(model, tmp_path / "pieces", max_connections=2) as (url, _):
        held = [connect(url) for _ in range(2)]
        extra = connect(url)
        extra.sendall(b"GET /api/model HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        _, said = until_closed(extra)
        head, _, body = said.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 ")
        assert json.loads(body) == {"error": "the server has its 2 connections open (max_connections); retry in a moment"}
        for sock in held:
            sock.close()
        deadline = time.monotonic() + 5
        while call(url, "/api/model")[0] != 200:  # once the server has seen them close
            assert time.monotonic() < deadline
            time.sleep(0.05)


@pytest.mark.parametrize("request_bytes", [
    b"GET /api/model HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"x" * 20_000,  # 20 kB of headers, not yet ended
    b"GET /api/model HTTP/1.1\r\n\r\n",  # HTTP/1.1 without Host
    b"HELLO\r\n\r\n",
])
def test_bytes_that_are_not_http_are_a_400_with_one_line(server, request_bytes):
    sock = connect(server[0])
    sock.sendall(request_bytes)
    head, _, body = until_closed(sock)[1].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and one_line(json.loads(body)) == BAD_HTTP


# ---------------------------------------------------------------------------------------
# the folder of pieces


def test_a_restarted_server_prunes_the_earlier_run_by_count_and_bytes_and_nothing_else(model, tmp_path):
    folder = claim_folder(tmp_path / "pieces", "pieces")  # an earlier run's folder
    ids = [f"{'abcdefgh'[i]}" * 22 for i in range(6)]  # oldest first
    for i, piece in enumerate(ids):
        (folder / f"{piece}.mid").write_bytes(b"M" * 1000)
        if i in (1, 4):
            (folder / f"{piece}.wav").write_bytes(b"W" * 5000)
        for kind in ("mid", "wav"):
            if (folder / f"{piece}.{kind}").exists():
                os.utime(folder / f"{piece}.{kind}", (1e9 + i, 1e9 + i))
    half_written = [f".draft-{ids[5]}.wav", f".{ids[5]}.mid.ab12cd_e.tmp", f"..draft-{ids[4]}.png.x1y2z3w4.tmp"]
    foreign = ["notes.txt", f"{ids[0]}.json", "short.mid", f".{ids[0]}.mid", "mine"]
    for name in half_written + foreign[:-1]:
        (folder / name).write_text("not DeepOrb's to delete" if name in foreign else "")
    (folder / "mine").mkdir()
    (folder / "mine" / f"{ids[0]}.mid").write_text("nor this")
    # keep 4: the two oldest go; then 1000 + 1000 + 6000 + 1000 bytes > 8500: the third oldest too
    with running(model, folder, keep_pieces=4, max_pieces_bytes=8500) as (url, app):
        kept = {f"{ids[3]}.mid", f"{ids[4]}.mid", f"{ids[4]}.wav", f"{ids[5]}.mid"}
        assert {p.name for p in folder.iterdir()} == kept | set(foreign) | {".deeporb"}
        assert (folder / "mine" / f"{ids[0]}.mid").read_text() == "nor this"
        assert (len(app.state.store), app.state.store.bytes) == (3, 8000)
        assert call(url, f"/api/pieces/{ids[5]}.mid")[:2] == (200, b"M" * 1000)  # an earlier piece is still served
        assert call(url, f"/api/pieces/{ids[2]}.mid")[0] == 404
        new = call(url, "/api/generate", {"bars": 1, "seed": 1})[1]
        assert call(url, new["wav_url"])[0] == 200  # its WAV alone is over the bytes: the older pieces go, not it
        assert {p.name for p in folder.iterdir()} - set(foreign) == {".deeporb", f"{new['id']}.mid", f"{new['id']}.wav"}
        assert app.state.store.bytes == sum((folder / f"{new['id']}.{k}").stat().st_size for k in ("mid", "wav"))


def test_one_folder_serves_one_server_at_a_time(tmp_path):
    first = PieceStore(tmp_path / "pieces", 10, 10**6)
    with pytest.raises(UserError, match=r"^out_dir='.*pieces' is in use by another running server; pass out_dir="):
        PieceStore(tmp_path / "pieces", 10, 10**6)
    first.close()
    PieceStore(tmp_path / "pieces", 10, 10**6).close()


def test_the_hydra_app_refuses_a_folder_of_someone_elses_files_with_one_line(model, tmp_path):
    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, ckpt)
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    proc = subprocess.run([sys.executable, str(ROOT / "serve.py"), f"ckpt_path={ckpt}", "port=0", f"out_dir={mine}"],
                          capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: out_dir={str(mine)!r} already holds files DeepOrb did not write")
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]  # nothing written there, not even by Hydra
    assert (mine / "thesis.tex").read_text() == "years of work"


# ---------------------------------------------------------------------------------------
# malformed bodies: 4xx, one line


HUGE = 10**400


@pytest.mark.parametrize("body, content_type, message", [
    (json.dumps({"bars": HUGE}).encode(), "application/json",
     "bars must be between 1 and 16 (got 10000000000000000000...00000000 (401 characters)): this server's max_bars"),
    (json.dumps({"seed": HUGE}).encode(), "application/json", "seed must be between 0 and 2147483647 (got 1000"),
    (json.dumps({"top_k": HUGE}).encode(), "application/json", "top_k must be between 0 and "),
    (json.dumps({"temperature": HUGE}).encode(), "application/json", "temperature must be in [0.0, 5.0] (got 1000"),
    (json.dumps({"top_p": -HUGE}).encode(), "application/json", "top_p must be in (0.0, 1.0] (got -1000"),
    (b'{"bars": 1e400}', "application/json", "bars must be a whole number (got inf)"),
    (b'{"temperature": -1e400}', "application/json", "temperature must be a finite number (got -inf)"),
    (b'{"seed": ' + b"9" * 5000 + b"}", "application/json", "the body is not valid JSON: Exceeds the limit"),
    (b"[" * 100_000 + b"]" * 100_000, "application/json", "the body nests arrays or objects too deeply"),
    (b'{"instruments": ' + b"[" * 100_000, "application/json", "the body nests arrays or objects too deeply"),
    (b'{"a": ' * 100_000, "application/json", "the body nests arrays or objects too deeply"),
    (json.dumps({"instruments": ["x" * 10_000]}).encode(), "application/json", "unknown instrument 'xxxxxxxxxxxxxxxxxxx"),
    ({"bars": "1e400"}, None, "bars must be a whole number (got '1e400')"),
    ({"seed": "1e400"}, None, "seed must be a whole number (got '1e400')"),
    ({"top_k": "1e400"}, None, "top_k must be a whole number (got '1e400')"),
    ({"temperature": "1e400"}, None, "temperature must be a finite number (got '1e400')"),
    ({"bars": "1" + "0" * 400}, None, "bars must be between 1 and 16 (got 1000"),
    ({"seed": "9" * 5000}, None, "seed must be a whole number (got '9999999999999999999...9999999' (5002 characters))"),
])
def test_malformed_bodies_are_a_4xx_with_one_line(server, body, content_type, message):
    url, _ = server
    if isinstance(body, dict):  # a form
        body, content_type = multipart(body, {})
    status, answer, _ = call(url, "/api/generate", body, content_type)
    assert status == 400 and one_line(answer).startswith(message), answer


def test_a_temperature_below_greedy_below_is_greedy(server):
    """1e-300 once failed every request batched with it; now it draws as temperature 0 does."""
    url, _ = server
    assert call(url, "/api/model")[1]["limits"]["greedy_below"] == GREEDY_BELOW
    pieces = []
    for temperature, seed in [(1e-300, 1), (GREEDY_BELOW / 2, 2), (0, 3)]:
        status, answer, _ = call(url, "/api/generate", {"bars": 2, "seed": seed, "temperature": temperature})
        assert status == 200, answer
        pieces.append(call(url, answer["midi_url"])[1])
    assert pieces[0] == pieces[1] == pieces[2]  # whatever the seed: greedy


# ---------------------------------------------------------------------------------------
# Host


def get_with_host(url: str, host: str) -> tuple[int, dict]:
    name, port = url.removeprefix("http://").rsplit(":", 1)
    conn = HTTPConnection(name, int(port), timeout=30)
    try:
        conn.putrequest("GET", "/api/model", skip_host=True)
        conn.putheader("Host", host)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_a_wrong_host_is_refused_so_dns_rebinding_cannot_reach_the_server(server):
    url, _ = server
    port = url.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST"):
        assert get_with_host(url, host)[0] == 200, host
    status, answer = get_with_host(url, f"evil.example:{port}")
    assert status == 400 and one_line(answer) == (
        f"Host 'evil.example:{port}' is not a name of this server; it answers to localhost, 127.0.0.1, [::1] "
        "(allowed_hosts)")
    sock = connect(url)
    sock.sendall(b"GET /api/model HTTP/1.0\r\n\r\n")  # HTTP/1.0 may leave Host out
    head, _, body = until_closed(sock)[1].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and one_line(json.loads(body)).startswith("a request without a Host header")


def test_allowed_hosts_names_exactly_what_is_answered(model, tmp_path):
    with running(model, tmp_path / "pieces", allowed_hosts=["music.example"]) as (url, _):
        assert get_with_host(url, "music.example")[0] == 200
        assert get_with_host(url, "localhost")[0] == 400


def test_bound_beyond_loopback_it_answers_its_own_names_and_warns_of_no_authentication():
    everywhere = host_names("0.0.0.0", None)
    assert {"localhost", "127.0.0.1", "[::1]", socket.gethostname().lower()} <= set(everywhere)
    assert "10.1.2.3" in host_names("10.1.2.3", None) and "[fd00::5]" in host_names("fd00::5", None)
    assert host_names("0.0.0.0", ["*"]) == ["*"]
    warning = no_authentication_warning(ServeConfig(host="0.0.0.0"))
    assert warning.startswith("warning: host=0.0.0.0 serves other machines, with no authentication") and "\n" not in warning
    assert no_authentication_warning(ServeConfig()) is None
