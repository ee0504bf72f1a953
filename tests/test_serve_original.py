"""The original DeepOrb service's routes on serve.py: ``GET /generate/midi`` and ``GET /generate/wav``
answer a new piece's file, by the one generation path of ``POST /api/generate``, on a real
server on a loopback port (test_serve.py's tiny checkpoint and server)."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import pytest
from test_serve import KEYS, call, checkpoint, model, running  # noqa: F401 - fixtures used by name

from deeporb.midi import read_midi
from deeporb.stages.sample import RenderConfig


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):  # noqa: F811 - test_serve's model fixture
    with running(model, tmp_path_factory.mktemp("pieces")) as (url, app):
        yield url, app


def test_get_generate_midi_answers_a_midi_file_with_every_default(server, tmp_path):
    url, _ = server
    status, data, headers = call(url, "/generate/midi")
    assert status == 200 and headers["content-type"] == "audio/midi"
    piece_id = headers["x-deeporb-piece"]
    assert headers["content-disposition"] == f'attachment; filename="deeporb-{piece_id[:8]}.mid"'
    assert data[:4] == b"MThd"
    path = tmp_path / "default.mid"
    path.write_bytes(data)
    piece = read_midi(path)  # symusic parses it
    assert len(piece.tracks) == len(KEYS) and sum(len(t) for t in piece.tracks) > 0
    assert piece.tempos[0][1] == pytest.approx(100.0)  # the training median: the default tempo
    assert max(t.notes["onset"].max() for t in piece.tracks if len(t)) < 16 * 4  # default: 16 bars of 4/4
    # the same piece the JSON route makes for the same settings: one generation path
    seed = int(headers["x-deeporb-seed"])
    _, answer, _ = call(url, "/api/generate", {"seed": seed})
    assert call(url, answer["midi_url"])[1] == data


def test_get_generate_wav_answers_a_wav_file(server):
    url, _ = server
    status, data, headers = call(url, "/generate/wav?bars=2&seed=3")
    assert status == 200 and headers["content-type"] == "audio/wav"
    assert headers["content-disposition"].startswith('attachment; filename="deeporb-')
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and len(data) > 10_000
    with wave.open(io.BytesIO(data)) as w:
        assert w.getnframes() > 0 and w.getframerate() > 0
        seconds = w.getnframes() / w.getframerate()
    assert 2 * 4 * 60 / 100.0 <= seconds < 60  # two bars at 100 qpm, and notes ringing out


def test_the_query_takes_the_fields_of_post_api_generate(server, tmp_path):
    url, _ = server
    _, one, headers = call(url, "/generate/midi?bars=2&seed=11&instruments=acoustic_bass&instruments=drums&top_k=20")
    assert headers["x-deeporb-seed"] == "11"
    _, two, _ = call(url, "/generate/midi?seed=11&bars=2&top_k=20&instruments=acoustic_bass,drums")
    assert one == two  # the seed reproduces it; repeated or comma-separated instruments alike
    path = tmp_path / "two.mid"
    path.write_bytes(one)
    assert [(t.program, t.is_drum) for t in read_midi(path).tracks] == [(32, False), (0, True)]


@pytest.mark.parametrize("query, message", [
    ("bars=0", "bars must be between 1 and"),
    ("bars=many", "bars must be a whole number"),
    ("instruments=kazoo", "unknown instrument 'kazoo'"),
    ("colour=red", "unknown field 'colour'"),
    ("primer=x.mid", "primer is an upload: POST it to /api/generate"),
])
def test_a_bad_query_is_one_clear_line(server, query, message):
    url, _ = server
    for route in ("/generate/midi", "/generate/wav"):
        status, answer, _ = call(url, f"{route}?{query}")
        assert status == 400 and message in answer["error"] and "\n" not in answer["error"]


def test_the_routes_take_get_only(server):
    url, _ = server
    status, answer, _ = call(url, "/generate/midi", b"{}", "application/json", method="POST")
    assert status == 405 and answer["error"] == "POST is not allowed on /generate/midi"


def test_a_wav_too_long_for_the_server_is_refused_before_drawing(model, tmp_path):  # noqa: F811
    with running(model, tmp_path / "pieces", render=RenderConfig(max_seconds=5.0)) as (url, _):
        status, answer, _ = call(url, "/generate/wav?bars=8")
    assert status == 422 and "this server draws no WAV that long" in answer["error"]
    assert not list(Path(tmp_path / "pieces").glob("*.wav"))
