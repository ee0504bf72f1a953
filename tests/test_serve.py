"""Tests for serve.py (deeporb/serve/): a real server on a loopback port, every endpoint,
every error a client can cause, 32 requests at once in batches, files served only by id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
import uvicorn
from midi_factory import make_midi, scale

from deeporb.checkpoints import load_generator
from deeporb.encoding.words import BOS, EOS, PAD, EncodingConfig, Vocabulary, encode
from deeporb.generation.compose import Settings
from deeporb.instruments import program_key
from deeporb.midi import read_midi
from deeporb.model import LSTMGenerator
from deeporb.serve.app import ServeConfig, bind, create_app, server_config, url_of
from deeporb.serve.fields import Limits, RequestError, read_fields

ROOT = Path(__file__).resolve().parents[1]
KEYS = ("acoustic_bass", "acoustic_grand_piano", "drums")
BARS = 2  # short pieces keep every test quick


def piece_tracks(seed: int, bars: int = 4) -> list[dict]:
    """Piano chords, a bass line and a drum beat: a small real piece (midi_factory writes it)."""
    rng = torch.Generator().manual_seed(seed)
    piano, bass, drums = [], [], []
    for b in range(bars):
        root = 48 + [0, 5, 7, 9][int(torch.randint(4, (1,), generator=rng))]
        for beat in range(4):
            t = (b * 4 + beat) * 480
            piano += [(t, t + 480, root + iv, 80) for iv in (12, 16, 19)]
            bass.append((t, t + 240, root - 12, 90))
            drums.append((t, t + 120, 36 if beat % 2 == 0 else 38, 100))
    return [{"name": "piano", "program": 0, "notes": piano}, {"name": "bass", "program": 32, "notes": bass},
            {"name": "kit", "is_drum": True, "notes": drums}]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny LSTM trained 20 steps on four small pieces, saved by a real pl.Trainer."""
    folder = tmp_path_factory.mktemp("serve_ckpt")
    vocab = Vocabulary(EncodingConfig(), KEYS)
    seqs = []
    for i in range(4):
        piece = read_midi(make_midi(folder / f"p{i}.mid", piece_tracks(i)))
        for tr in piece.tracks:
            words, _ = encode(tr.notes, piece.time_signatures, vocab)
            seqs.append(vocab.ids([BOS, f"inst_{program_key(tr.program, tr.is_drum)}", *words.split(), EOS]))
    window = 64
    rows = [s[i : i + window] for s in seqs for i in range(0, max(1, len(s) - window // 2), window)]
    tokens = torch.full((len(rows), window), vocab.index[PAD], dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = torch.as_tensor(r)
    session = {"names": ["tiny"], "qpm_median": 100.0, "time_signatures": {"4/4": 4},
               "instruments": {k: {"program": {"acoustic_bass": 32}.get(k, 0), "is_drum": k == "drums"} for k in KEYS}}
    pl.seed_everything(0, verbose=False)
    model = LSTMGenerator(vocab.to_dict(), embed_dim=32, hidden_size=64, num_layers=2, dropout=0.0, session=session)
    trainer = pl.Trainer(max_steps=20, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    loader = torch.utils.data.DataLoader([{"tokens": t} for t in tokens], batch_size=8, shuffle=True)
    trainer.fit(model, loader)
    trainer.save_checkpoint(folder / "tiny.ckpt")
    return folder / "tiny.ckpt"


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_generator(checkpoint)


@contextmanager
def running(model, out_dir: Path, **settings):
    """A real uvicorn server for ``model`` on a free loopback port, in a background thread."""
    cfg = ServeConfig(out_dir=str(out_dir), port=0, **settings)
    app = create_app(cfg, model)
    sock = bind(cfg.host, 0)
    server = uvicorn.Server(server_config(cfg, app))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "the server did not start"
    try:
        yield url_of(sock).rstrip("/"), app
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    with running(model, tmp_path_factory.mktemp("pieces"), max_body_bytes=300_000, max_primer_bytes=100_000,
                 max_bars=16) as (url, app):
        yield url, app


def call(url: str, path: str, body: bytes | dict | list | None = None, content_type: str | None = None,
         method: str | None = None) -> tuple[int, dict | bytes, dict]:
    """-> (status, JSON body or bytes, headers). A dict/list body is sent as JSON."""
    if isinstance(body, (dict, list)):
        body, content_type = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(url + path, data=body, method=method)
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            status, data, headers = r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        status, data, headers = e.code, e.read(), dict(e.headers)
    if headers.get("content-type", "").startswith("application/json"):
        data = json.loads(data)
    return status, data, headers


def multipart(fields: dict, files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """Encode a multipart/form-data body by hand, as a browser would send it."""
    boundary = uuid.uuid4().hex
    out = b""
    for name, values in fields.items():
        for value in values if isinstance(values, list) else [values]:
            out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for name, (filename, data) in files.items():
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: audio/midi\r\n\r\n").encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def midi_of(url: str, answer: dict, tmp_path: Path):
    status, data, headers = call(url, answer["midi_url"])
    assert status == 200 and headers["content-type"] == "audio/midi"
    path = tmp_path / f"{answer['id']}.mid"
    path.write_bytes(data)
    return read_midi(path), data


# ---------------------------------------------------------------------------------------
# the endpoints


def test_model_endpoint_names_instruments_limits_and_defaults(server):
    url, _ = server
    status, info, _ = call(url, "/api/model")
    assert status == 200
    assert info["instruments"] == list(KEYS) and info["styles"] == [] and info["view"] == "tracks"
    assert info["checkpoint"] == "tiny.ckpt" and info["default_meter"] == "4/4" and info["qpm"] == 100.0
    assert info["limits"]["bars"] == [1, 16] and info["limits"]["primer_bytes"] == 100_000
    assert info["limits"]["top_k"][1] > 300 and info["limits"]["queue"] == 64
    assert info["defaults"] == asdict(Settings())  # sample.py's sampling settings, every one of them
    assert set(info["defaults"]) >= {"bars", "min_bars", "temperature", "top_k", "top_p", "seed", "instruments",
                                     "style", "primer_bars", "keep_primer", "tempo"}


def test_generate_answers_urls_that_serve_midi_png_and_wav(server, tmp_path):
    url, _ = server
    status, answer, _ = call(url, "/api/generate", {"instruments": ["acoustic_grand_piano", "drums"], "bars": BARS,
                                                    "seed": 7, "temperature": 0.9, "top_k": 20, "top_p": 0.9})
    assert status == 200, answer
    assert set(answer) >= {"id", "midi_url", "png_url", "wav_url", "seconds", "notes", "instruments", "seed"}
    assert answer["seed"] == 7 and answer["instruments"] == ["acoustic_grand_piano", "drums"]
    assert answer["bars"] == BARS and answer["seconds"] >= BARS * 4 * 60 / 100.0  # + notes ringing past the end
    piece, data = midi_of(url, answer, tmp_path)
    assert sum(len(t) for t in piece.tracks) == answer["notes"]
    assert [(t.program, t.is_drum) for t in piece.tracks] == [(0, False), (0, True)]
    status, png, headers = call(url, answer["png_url"])
    assert status == 200 and headers["content-type"] == "image/png" and png[:8] == b"\x89PNG\r\n\x1a\n"
    status, wav, headers = call(url, answer["wav_url"])
    assert status == 200 and headers["content-type"] == "audio/wav" and wav[:4] == b"RIFF" and len(wav) > 10_000
    again = call(url, "/api/generate", {"instruments": ["acoustic_grand_piano", "drums"], "bars": BARS, "seed": 7,
                                        "temperature": 0.9, "top_k": 20, "top_p": 0.9})[1]
    assert again["id"] != answer["id"] and midi_of(url, again, tmp_path)[1] == data  # the seed reproduces it


def test_an_empty_request_takes_every_default_and_a_fresh_seed(server):
    url, _ = server
    status, a, _ = call(url, "/api/generate", {"bars": 1})
    _, b, _ = call(url, "/api/generate", {"bars": 1})
    assert status == 200 and a["instruments"] == list(KEYS) and a["seed"] != b["seed"]


def test_multipart_with_a_primer_opens_the_piece_with_it(server, tmp_path):
    url, _ = server
    primer = make_midi(tmp_path / "primer.mid", piece_tracks(9, bars=2)[:2])  # piano + bass, 2 bars
    body, kind = multipart({"bars": str(BARS), "seed": "3", "top_k": "", "temperature": "1"},
                           {"primer": ("my primer.mid", primer.read_bytes())})
    status, answer, _ = call(url, "/api/generate", body, kind)
    assert status == 200, answer
    assert answer["instruments"] == ["acoustic_bass", "acoustic_grand_piano"] and answer["bars"] == 2 + BARS
    piece, _ = midi_of(url, answer, tmp_path)
    given = read_midi(primer)
    for out, src in zip(sorted(piece.tracks, key=lambda t: t.program), given.tracks, strict=True):
        early = out.notes["onset"] < 8  # the primer's two bars come back first
        assert sorted(out.notes["pitch"][early].tolist()) == sorted(src.notes["pitch"].tolist())


def test_form_instruments_may_repeat_or_be_comma_separated(server):
    url, _ = server
    for fields in ({"instruments": ["drums", "acoustic_bass"]}, {"instruments": "drums, acoustic_bass"}):
        body, kind = multipart({**fields, "bars": "1", "seed": "1"}, {})
        status, answer, _ = call(url, "/api/generate", body, kind)
        assert status == 200 and answer["instruments"] == ["drums", "acoustic_bass"], answer


def test_the_page_is_served_at_the_root(server):
    url, _ = server
    status, html, headers = call(url, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    for control in ('id="instruments"', 'id="style"', 'id="bars"', 'id="temperature"', 'id="top_k"', 'id="top_p"',
                    'id="seed"', 'id="primer"', 'id="roll"', "<audio", 'id="download"', 'id="pieces"'):
        assert control.encode() in html


# ---------------------------------------------------------------------------------------
# errors: one line, 4xx


@pytest.mark.parametrize("fields, status, message", [
    ({"instruments": ["kazoo", "drums"]}, 400,
     "unknown instrument 'kazoo'; this model knows: acoustic_bass, acoustic_grand_piano, drums"),
    ({"instruments": []}, 400, "instruments is empty; name one or more of: acoustic_bass"),
    ({"instruments": "drums"}, 200, None),
    ({"instruments": 5}, 400, "instruments must be a list of instrument names (got 5)"),
    ({"style": "jazz"}, 400, "unknown style 'jazz'; this model has no styles; leave style out"),
    ({"style": 3}, 400, "style must be a style name (got 3)"),
    ({"bars": 17}, 400, "bars must be between 1 and 16 (got 17): this server's max_bars"),
    ({"bars": 0}, 400, "bars must be between 1 and 16 (got 0)"),
    ({"bars": "eight"}, 400, "bars must be a whole number (got 'eight')"),
    ({"bars": 2.5}, 400, "bars must be a whole number (got 2.5)"),
    ({"bars": True}, 400, "bars must be a whole number (got True)"),
    ({"bars": [2]}, 400, "bars must be a whole number (got [2])"),
    ({"temperature": -0.1}, 400, "temperature must be in [0.0, 5.0] (got -0.1)"),
    ({"temperature": 50}, 400, "temperature must be in [0.0, 5.0] (got 50)"),
    ({"temperature": "hot"}, 400, "temperature must be a number (got 'hot')"),
    ({"top_k": -1}, 400, "top_k must be between 0 and"),
    ({"top_k": 10**6}, 400, "top_k must be between 0 and"),
    ({"top_p": 0}, 400, "top_p must be in (0.0, 1.0] (got 0)"),
    ({"top_p": 1.5}, 400, "top_p must be in (0.0, 1.0] (got 1.5)"),
    ({"seed": -1}, 400, "seed must be between 0 and 2147483647 (got -1)"),
    ({"seed": 2**40}, 400, "seed must be between 0 and 2147483647"),
    ({"colour": "blue"}, 400, "unknown field 'colour'; the fields are: bars, min_bars, temperature"),
])
def test_bad_fields_are_one_clear_line(server, fields, status, message):
    url, _ = server
    got, answer, _ = call(url, "/api/generate", {"bars": 1, **fields})
    assert got == status, answer
    if message:
        assert list(answer) == ["error"] and answer["error"].startswith(message) and "\n" not in answer["error"]


@pytest.mark.parametrize("body, content_type, status, message", [
    (b"[1, 2]", "application/json", 400, "the body must be a JSON object of fields, not list"),
    (b'{"bars": ', "application/json", 400, "the body is not valid JSON"),
    (b'{"temperature": NaN}', "application/json", 400, "NaN is not a number JSON allows"),
    (b"bars=2", "text/plain", 415, "send application/json or multipart/form-data (got 'text/plain')"),
    (b'{"bars": 1, "pad": "' + b"x" * 400_000 + b'"}', "application/json", 413,
     "request body is 400,0"),
])
def test_bad_bodies_are_one_clear_line(server, body, content_type, status, message):
    url, _ = server
    got, answer, _ = call(url, "/api/generate", body, content_type)
    assert (got, list(answer)) == (status, ["error"]) and answer["error"].startswith(message), answer


def test_a_body_without_length_is_cut_at_the_limit(server):
    """Chunked transfer (no Content-Length) is counted as it arrives."""
    url, _ = server
    request = urllib.request.Request(url + "/api/generate", data=iter([b"{" + b" " * 200_000] * 2), method="POST",
                                     headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=30)
    assert e.value.code == 413 and json.loads(e.value.read()) == {"error": "request body is over the limit of 300,000 bytes"}


@pytest.mark.parametrize("data, field, status, message", [
    (b"", "primer", 400, "primer 'p.mid' is empty; upload a MIDI file"),
    (b"hello, not midi", "primer", 400, "primer 'p.mid': not a MIDI file (no MThd header)"),
    (b"MThd\x00\x00\x00\x06\x00\x01\x00\x02\x01\xe0MTrk\xff\xff", "primer", 400, "primer 'p.mid': corrupt MIDI"),
    (b"MThd" + b"\x00" * 150_000, "primer", 413, "primer 'p.mid' is 150,004 bytes, over the limit of 100,000"),
    (b"MThd", "melody", 400, "unexpected file field 'melody'; the one file field is primer"),
])
def test_bad_primers_are_one_clear_line(server, data, field, status, message):
    url, _ = server
    body, kind = multipart({"bars": "1"}, {field: ("p.mid", data)})
    got, answer, _ = call(url, "/api/generate", body, kind)
    assert (got, list(answer)) == (status, ["error"]) and answer["error"].startswith(message), answer


def test_a_primer_without_known_instruments_or_notes_is_refused(server, tmp_path):
    url, _ = server
    violin = make_midi(tmp_path / "v.mid", [{"name": "violin", "program": 40, "notes": scale()}])
    silent = make_midi(tmp_path / "s.mid", [{"name": "piano", "program": 0, "notes": []}])
    for path, message in [(violin, "primer 'v.mid' has no instrument this model knows: the primer has violin; "
                                    "the model knows acoustic_bass, acoustic_grand_piano, drums"),
                          (silent, "primer 's.mid' has no notes")]:
        body, kind = multipart({"bars": "1"}, {"primer": (path.name, path.read_bytes())})
        assert call(url, "/api/generate", body, kind)[:2] == (400, {"error": message})
    body, kind = multipart({"bars": "1", "primer": "text"}, {})
    assert call(url, "/api/generate", body, kind)[:2] == (
        400, {"error": "primer must be a file upload (a MIDI file), not a text field"})


def test_files_are_served_only_by_a_known_id(server):
    url, app = server
    _, answer, _ = call(url, "/api/generate", {"bars": 1})
    piece = answer["id"]
    assert len(piece) == 22 and answer["midi_url"] == f"/api/pieces/{piece}.mid"
    assert (app.state.store.folder / f"{piece}.mid").is_file()
    other = ("A" if piece[0] != "A" else "B") + piece[1:]
    for path in (f"/api/pieces/{other}.mid", f"/api/pieces/{piece}.json", f"/api/pieces/{piece}",
                 "/api/pieces/..%2F..%2Fserve.py", "/api/pieces/%2Fetc%2Fpasswd.mid", "/nothing"):
        status, body, _ = call(url, path)
        assert status == 404 and list(body) == ["error"], (path, body)
    assert call(url, "/api/generate")[:2] == (405, {"error": "GET is not allowed on /api/generate"})


def test_old_pieces_are_pruned_past_the_configured_count(model, tmp_path):
    with running(model, tmp_path / "pieces", keep_pieces=2) as (url, _):
        ids = [call(url, "/api/generate", {"bars": 1, "instruments": ["drums"]})[1]["id"] for _ in range(3)]
        assert call(url, f"/api/pieces/{ids[0]}.mid")[0] == 404
        assert [call(url, f"/api/pieces/{i}.mid")[0] for i in ids[1:]] == [200, 200]
        assert sorted(p.stem for p in (tmp_path / "pieces").glob("*.mid")) == sorted(ids[1:])


# ---------------------------------------------------------------------------------------
# concurrency


@contextmanager
def held(app):
    """Hold the worker inside its next batch until the block ends (so requests queue up)."""
    batcher = app.state.batcher
    run, entered, release = batcher.run_batch, threading.Event(), threading.Event()

    def hold(jobs):
        entered.set()
        release.wait(30)
        run(jobs)

    batcher.run_batch = hold
    try:
        yield entered
    finally:
        batcher.run_batch = run
        release.set()


def wait_for(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_32_concurrent_requests_all_get_valid_midi_in_shared_batches(server, tmp_path):
    url, app = server
    batches_before = len(app.state.batcher.batches)
    bodies = [{"bars": BARS, "seed": i, "instruments": [KEYS[i % 3], KEYS[(i + 1) % 3]][: 1 + i % 2]}
              for i in range(32)]
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda b: call(url, "/api/generate", b), bodies))
    assert [a[0] for a in answers] == [200] * 32, [a[1] for a in answers if a[0] != 200]
    for body, (_, answer, _) in zip(bodies, answers, strict=True):
        piece, _ = midi_of(url, answer, tmp_path)
        assert answer["seed"] == body["seed"] and answer["instruments"] == body["instruments"]
        assert [t.name for t in piece.tracks] == answer["played"] and sum(len(t) for t in piece.tracks) == answer["notes"]
    batches = app.state.batcher.batches[batches_before:]
    assert sum(batches) == 32 and max(batches) >= 8, batches  # generated together, not one by one
    status, state, _ = call(url, "/api/status")  # alive afterwards, and says how it batched
    assert status == 200 and state["waiting"] == 0 and state["largest_batch"] >= max(batches)
    assert (state["batches"], state["requests"]) == (len(app.state.batcher.batches), sum(app.state.batcher.batches))


def test_a_request_gets_the_same_piece_alone_or_in_a_batch(server, tmp_path):
    url, app = server
    mine = {"bars": BARS, "seed": 11, "instruments": ["acoustic_grand_piano", "acoustic_bass"]}
    alone = midi_of(url, call(url, "/api/generate", mine)[1], tmp_path)[1]
    with ThreadPoolExecutor(4) as pool:
        with held(app) as entered:
            first = pool.submit(call, url, "/api/generate", {"bars": BARS, "seed": 1})
            entered.wait(10)
            futures = [pool.submit(call, url, "/api/generate", b)
                       for b in ({"bars": BARS, "seed": 2}, mine, {"bars": BARS, "seed": 3, "instruments": ["drums"]})]
            wait_for(lambda: app.state.batcher.waiting == 3)
        answers = [f.result()[1] for f in [first, *futures]]
    assert app.state.batcher.batches[-1] == 3  # the three waiting ones went together
    assert midi_of(url, answers[2], tmp_path)[1] == alone


def test_a_full_queue_answers_503_and_the_server_goes_on(model, tmp_path):
    with running(model, tmp_path / "pieces", max_queue=1) as (url, app), ThreadPoolExecutor(2) as pool:
        with held(app) as entered:
            first = pool.submit(call, url, "/api/generate", {"bars": 1})
            entered.wait(10)
            second = pool.submit(call, url, "/api/generate", {"bars": 1})
            wait_for(lambda: app.state.batcher.waiting == 1)
            status, answer, _ = call(url, "/api/generate", {"bars": 1})
            assert status == 503 and answer["error"].startswith("the server is busy (1 requests are waiting already)")
        assert first.result()[0] == second.result()[0] == 200
        assert call(url, "/api/generate", {"bars": 1})[0] == 200


def test_a_score_view_model_with_styles_composes_named_or_drawn_ensembles(tmp_path):
    """Score view (one row per piece) and styles, on a tiny untrained model."""
    torch.manual_seed(0)
    vocab = Vocabulary(EncodingConfig(), KEYS, styles=("bach", "pop"))
    score = LSTMGenerator(vocab.to_dict(), embed_dim=16, hidden_size=32, num_layers=1, dropout=0.0,
                          session={"view": "score", "qpm_median": 90.0, "styles": ["bach", "pop"]}).eval()
    with running(score, tmp_path / "pieces") as (url, _):
        info = call(url, "/api/model")[1]
        assert (info["view"], info["styles"]) == ("score", ["bach", "pop"])
        named = {"bars": 1, "seed": 4, "instruments": ["drums", "acoustic_bass"], "style": "pop", "temperature": 0.5}
        drawn = {"bars": 1, "seed": 5}
        with ThreadPoolExecutor(2) as pool:
            (s1, a, _), (s2, b, _) = pool.map(lambda body: call(url, "/api/generate", body), [named, drawn])
        assert (s1, a["instruments"], a["style"]) == (200, ["drums", "acoustic_bass"], "pop"), a
        assert s2 == 200 and b["style"] in ("bach", "pop") and set(b["instruments"]) <= set(KEYS), b
        for answer in (a, b):
            piece, _ = midi_of(url, answer, tmp_path)
            assert [t.name for t in piece.tracks] == answer["played"]  # a silent part has no notes to read back
            assert set(answer["played"]) <= set(answer["instruments"])
        assert call(url, "/api/generate", {**named, "style": "jazz"})[1] == {
            "error": "unknown style 'jazz'; this model knows: bach, pop"}


# ---------------------------------------------------------------------------------------
# fields without a server, and the Hydra app


def test_styles_are_listed_when_the_model_has_them():
    limits = Limits(8, 5.0, 100, 1000, 1000)
    vocab = SimpleNamespace(instruments=("piano",), styles=("bach", "pop"))
    base = {"temperature": 1, "top_k": 0, "top_p": 1, "bars": 4}
    assert read_fields({"style": "pop", **base}, vocab, limits).style == "pop"
    with pytest.raises(RequestError, match=r"^unknown style 'jazz'; this model knows: bach, pop$"):
        read_fields({"style": "jazz", **base}, vocab, limits)
    read = read_fields(base, vocab, limits)
    assert read.seed is not None and replace(read, seed=None) == Settings(bars=4, temperature=1.0, top_p=1.0)


def test_the_hydra_app_prints_its_url_and_serves(checkpoint, tmp_path):
    proc = subprocess.Popen([sys.executable, str(ROOT / "serve.py"), f"ckpt_path={checkpoint}", "port=0",
                             f"out_dir={tmp_path / 'run'}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"serving {checkpoint} at http://127.0.0.1:"), line + proc.stderr.read()
        url = line.split(" at ")[1].split()[0].rstrip("/")
        assert call(url, "/api/model")[1]["instruments"] == list(KEYS)
    finally:
        proc.terminate()
        proc.wait(20)


def test_the_hydra_app_without_a_checkpoint_or_a_bundled_model_is_one_error_line(tmp_path):
    env = dict(os.environ, DEEPORB_PRETRAINED_DIR=str(tmp_path / "none"))  # no bundled model to default to
    proc = subprocess.run([sys.executable, str(ROOT / "serve.py"), f"out_dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: no ckpt_path given, and the default bundled model 'bach_chorales' is not in ")
    assert line.endswith("(make pretrained makes it); pass ckpt_path=PATH to a .ckpt file or a training run folder")


# ---------------------------------------------------------------------------------------
# one generation path: the service writes what sample.py writes


def score_checkpoint(path: Path) -> Path:
    """A tiny untrained score-view model with two styles, each in its own meter, saved as a file."""
    torch.manual_seed(1)
    vocab = Vocabulary(EncodingConfig(), KEYS, styles=("bach", "pop"))
    model = LSTMGenerator(vocab.to_dict(), embed_dim=16, hidden_size=32, num_layers=1, dropout=0.0,
                          session={"view": "score", "qpm_median": 90.0, "styles": ["bach", "pop"],
                                   "time_signatures": {"3/4": 3, "4/4": 2},
                                   "style_time_signatures": {"bach": {"3/4": 3}, "pop": {"4/4": 2}}})
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}, path)
    return path


@pytest.mark.parametrize("view", ["tracks", "score"])
@pytest.mark.parametrize("with_primer", [False, True])
def test_a_served_piece_equals_sample_pys_for_the_same_checkpoint_settings_and_seed(
        view, with_primer, checkpoint, tmp_path):
    """Every setting away from its default, sent as form fields beside a primer or as JSON; the
    MIDI the service writes is byte for byte the one sample.py writes (issue 18)."""
    from deeporb.stages.sample import RenderConfig, SampleConfig, sample

    ckpt = checkpoint if view == "tracks" else score_checkpoint(tmp_path / "score.ckpt")
    settings = {"bars": 3, "temperature": 1.3, "top_k": 40, "top_p": 0.9, "seed": 11, "tempo": 96.5,
                "instruments": ["acoustic_bass", "drums"]}
    if view == "score":
        settings |= {"min_bars": 2, "instruments": None}  # the model draws the style, the ensemble and may end
    if with_primer:
        settings |= {"primer_bars": 1, "keep_primer": False}
        primer = make_midi(tmp_path / "primer.mid", piece_tracks(9, bars=2))
    with running(load_generator(ckpt), tmp_path / "pieces", max_bars=16) as (url, _):
        if with_primer:
            form = {k: (",".join(v) if isinstance(v, list) else str(v).lower() if isinstance(v, bool) else str(v))
                    for k, v in settings.items() if v is not None}
            status, answer, _ = call(url, "/api/generate", *multipart(form, {"primer": ("p.mid", primer.read_bytes())}))
        else:
            status, answer, _ = call(url, "/api/generate", settings)
        assert status == 200, answer
        status, served, _ = call(url, answer["midi_url"])
        assert status == 200
    assert {k: answer["settings"][k] for k in settings} == settings
    out = tmp_path / "sampled"
    [result] = sample(SampleConfig(ckpt_path=str(ckpt), num_samples=1, out_dir=str(out),
                                   primer=str(primer) if with_primer else None,
                                   render=RenderConfig(piano_roll=False, page=False), **settings))
    assert result.notes > 0 and result.style == answer["style"] and result.bars == answer["bars"]
    assert result.midi.read_bytes() == served
