"""Fills in the service and on its page: ``POST /api/generate`` with ``fill`` (JSON, by a served
piece's id, or a form beside a primer upload) rewrites bars and parts of the primer and keeps
every other note exactly; bad fill fields, a fill without a primer and a model that cannot
fill are one 4xx line; on the page a person drags across bars, ticks parts, regenerates the
selection and undoes it (headless chromium, tests/browser.py). Random-weight models: the
fill's bounds and what it keeps are the point, not the music."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from browser import MEDIA_SETTLED, open_page
from midi_factory import make_midi
from test_serve import KEYS, call, held, midi_of, multipart, piece_tracks, running, wait_for

from deeporb.encoding.words import EncodingConfig, Vocabulary
from deeporb.generation.compose import MAX_FILL_CANDIDATES, Fill
from deeporb.instruments import program_key
from deeporb.midi import read_midi
from deeporb.model import LSTMGenerator
from deeporb.serve.fields import Limits, RequestError, read_fields

SESSION = {"qpm_median": 100.0, "time_signatures": {"4/4": 4},
           "instruments": {k: {"program": {"acoustic_bass": 32}.get(k, 0), "is_drum": k == "drums"} for k in KEYS}}


def random_model(view: str = "score", fills: bool = True) -> LSTMGenerator:
    torch.manual_seed(0)
    vocab = Vocabulary(EncodingConfig(), KEYS, (), 16, fills)
    return LSTMGenerator(vocab.to_dict(), embed_dim=16, hidden_size=32, num_layers=1, dropout=0.0,
                         session={**SESSION, "view": view}).eval()


@pytest.fixture(scope="module")
def fill_model():
    return random_model()


@pytest.fixture(scope="module")
def server(fill_model, tmp_path_factory):
    with running(fill_model, tmp_path_factory.mktemp("fill_pieces"), max_bars=8, max_fill_primer_bars=16) as served:
        yield served


@pytest.fixture(scope="module")
def primer(tmp_path_factory) -> Path:
    """Piano and bass, 4 bars of 4/4 (no drums: a fill may add them)."""
    return make_midi(tmp_path_factory.mktemp("fill_primer") / "primer.mid", piece_tracks(9, bars=4)[:2])


def notes_of(path: Path) -> dict[str, list[tuple]]:
    """A MIDI file's notes by instrument key: (onset, duration, pitch, velocity), sorted."""
    out: dict[str, list[tuple]] = {}
    for t in read_midi(path).tracks:
        n = t.notes
        rows = zip(n["onset"].tolist(), n["duration"].tolist(), n["pitch"].tolist(), n["velocity"].tolist(), strict=True)
        out.setdefault(program_key(t.program, t.is_drum), []).extend(rows)
    return {k: sorted(v) for k, v in out.items() if v}


def bar_of(note: tuple) -> int:
    return int(np.floor(note[0] / 4)) + 1  # 4/4: four quarters a bar, bars from 1


def outside(notes: dict[str, list[tuple]], parts, first: int, last: int) -> dict[str, list[tuple]]:
    """The notes a fill of ``parts`` in bars ``first``-``last`` must keep."""
    kept = {k: [n for n in v if k not in parts or not first <= bar_of(n) <= last] for k, v in notes.items()}
    return {k: v for k, v in kept.items() if v}


def inside(notes: dict[str, list[tuple]], parts, first: int, last: int) -> dict[str, list[tuple]]:
    got = {k: [n for n in v if k in parts and first <= bar_of(n) <= last] for k, v in notes.items()}
    return {k: v for k, v in got.items() if v}


def saved(url: str, answer: dict, tmp_path: Path) -> Path:
    path = tmp_path / f"{answer['id']}.mid"
    path.write_bytes(midi_of(url, answer, tmp_path)[1])
    return path


# ---------------------------------------------------------------------------------------
# the API


def test_a_form_fill_rewrites_the_gap_adds_a_part_and_keeps_every_other_note(server, primer, tmp_path):
    url, _ = server
    form = {"fill.parts": ["acoustic_bass", "drums"], "fill.bars": "2-3", "seed": "4"}
    status, answer, _ = call(url, "/api/generate", *multipart(form, {"primer": ("p.mid", primer.read_bytes())}))
    assert status == 200, answer
    assert answer["settings"]["fill"] == {"parts": ["acoustic_bass", "drums"], "bars": [2, 3], "candidates": 1}
    assert answer["bars"] == 4
    assert "drums" in answer["played"]  # the added part plays
    given, made = notes_of(primer), notes_of(saved(url, answer, tmp_path))
    gap = ("acoustic_bass", "drums")
    assert outside(made, gap, 2, 3) == outside(given, gap, 2, 3)  # note for note, timing and velocity too
    assert made["drums"] and all(2 <= bar_of(n) <= 3 for n in made["drums"])
    assert set(made) == {"acoustic_bass", "acoustic_grand_piano", "drums"}


def test_a_json_fill_of_a_served_piece_by_its_id(server, primer, tmp_path):
    url, _ = server
    body, kind = multipart({"bars": "2", "seed": "1"}, {"primer": ("p.mid", primer.read_bytes())})
    status, first, _ = call(url, "/api/generate", body, kind)  # 4 primer bars + 2: the piece to fill
    assert status == 200 and first["bars"] == 6, first
    fill = {"primer": first["id"], "fill": {"parts": ["acoustic_grand_piano"], "bars": [5, 6]}, "seed": 2}
    status, answer, _ = call(url, "/api/generate", fill)
    assert status == 200, answer
    before, after = notes_of(saved(url, first, tmp_path)), notes_of(saved(url, answer, tmp_path))
    assert outside(after, ["acoustic_grand_piano"], 5, 6) == outside(before, ["acoustic_grand_piano"], 5, 6)
    assert answer["bars"] == 6
    assert answer["settings"]["fill"] == {"parts": ["acoustic_grand_piano"], "bars": [5, 6], "candidates": 1}
    assert call(url, "/api/generate", fill)[1]["notes"] == answer["notes"]  # the seed reproduces it


def test_fills_share_a_batch_and_each_gets_its_piece_alone(server, primer, tmp_path):
    url, app = server
    data = primer.read_bytes()
    forms = [{"fill.parts": "acoustic_grand_piano", "fill.bars": "1,2", "seed": "5"},
             {"fill.parts": "acoustic_bass,drums", "fill.bars": ["3", "4"], "seed": "6"}]
    alone = [midi_of(url, call(url, "/api/generate", *multipart(f, {"primer": ("p.mid", data)}))[1], tmp_path)[1]
             for f in forms]
    with ThreadPoolExecutor(3) as pool:
        with held(app) as entered:
            first = pool.submit(call, url, "/api/generate", {"bars": 1})
            entered.wait(10)
            futures = [pool.submit(call, url, "/api/generate", *multipart(f, {"primer": ("p.mid", data)})) for f in forms]
            wait_for(lambda: app.state.batcher.waiting == 2)
        answers = [f.result() for f in futures]
        assert first.result()[0] == 200
    assert [a[0] for a in answers] == [200, 200], answers
    assert app.state.batcher.batches[-1] == 2  # equal gap lengths, one primer: one batch
    assert [midi_of(url, a[1], tmp_path)[1] for a in answers] == alone


@pytest.mark.parametrize("fill, message", [
    ("drums", 'fill must be an object {"parts": [...], "bars": [first, last]}'),
    ({"parts": ["kazoo"]}, "unknown part 'kazoo' in fill.parts; this model knows: acoustic_bass, acoustic_grand_piano"),
    ({"parts": []}, "fill.parts is empty; name one or more of: acoustic_bass"),
    ({"parts": 5}, "fill.parts must be a list of instrument names (got 5)"),
    ({"bars": [3, 2]}, "fill.bars must be [first, last] with first <= last (got [3, 2])"),
    ({"bars": [0, 2]}, "fill.bars must be between 1 and 1024 (got 0)"),
    ({"bars": [1, 2, 3]}, "fill.bars must be [first, last], the primer's bars from 1, e.g. [5, 8]"),
    ({"bars": [1, 9]}, "fill.bars 1-9 is 9 bars, over this server's max_bars of 8; fill at most 8 bars at a time"),
    ({"bars": ["x", 2]}, "fill.bars must be a whole number (got 'x')"),
    ({"bars": [1, 10**400]}, "fill.bars must be between 1 and 1024"),
    ({"bars": {"first": 1}}, "fill.bars must be [first, last]"),
    ({"colour": 1}, "unknown field 'fill.colour'; fill has parts, bars and candidates"),
    ({"candidates": 0}, "fill.candidates must be between 1 and 16 (got 0)"),
    ({"candidates": 17}, "fill.candidates must be between 1 and 16 (got 17)"),
    ({"bars": [1, 2]}, "fill.parts / fill.bars rewrite part of a primer: upload the piece as primer"),
])
def test_bad_fill_fields_are_one_clear_line(server, fill, message):
    url, _ = server
    status, answer, _ = call(url, "/api/generate", {"fill": fill})
    assert status == 400 and list(answer) == ["error"] and "\n" not in answer["error"], answer
    assert answer["error"].startswith(message), answer


@pytest.mark.parametrize("form, status, message", [
    ({"fill.bars": "2-x"}, 400, "fill.bars must be a whole number (got '2-x')"),
    ({"fill.bars": ["1", "2", "3"]}, 400, "fill.bars must be [first, last]"),
    ({"fill.bars": "3,5"}, 400, "fill.bars=[3, 5] must lie in the primer's bars 1 to 4"),
    ({"fill.parts": "kazoo"}, 400, "unknown part 'kazoo' in fill.parts"),
    ({"fill": "drums"}, 400, "fill must be an object"),
    ({"fill": "x", "fill.bars": "1"}, 400, "send fill as one object or as fill.parts / fill.bars, not both"),
])
def test_bad_form_fills_are_one_clear_line(server, primer, form, status, message):
    url, _ = server
    got, answer, _ = call(url, "/api/generate", *multipart(form, {"primer": ("p.mid", primer.read_bytes())}))
    assert (got, list(answer)) == (status, ["error"]) and answer["error"].startswith(message), answer


def test_a_json_primer_must_be_a_kept_pieces_id(server):
    url, _ = server
    fill = {"bars": [1, 1]}
    assert call(url, "/api/generate", {"primer": 5, "fill": fill})[:2] == (400, {"error": (
        "primer in a JSON body is the id of a piece this server wrote (an answer's id); "
        "to upload a MIDI file, send multipart/form-data")})
    status, answer, _ = call(url, "/api/generate", {"primer": "../../etc/passwd", "fill": fill})
    assert status == 404 and answer["error"].startswith("no piece '../../etc/passwd' here to use as primer")


def test_the_original_routes_refuse_a_fill_they_have_no_primer_for(server):
    url, _ = server
    status, answer, _ = call(url, "/generate/midi?fill.bars=1,2")
    assert status == 400 and answer["error"].startswith("fill.parts / fill.bars rewrite part of a primer")


def test_a_fill_is_bounded_by_the_servers_bars(fill_model, tmp_path):
    """A fill reads its whole primer (at most max_fill_primer_bars) and writes at most max_bars."""
    long = make_midi(tmp_path / "long.mid", piece_tracks(3, bars=4)[:1])
    with running(fill_model, tmp_path / "pieces", max_bars=2, max_fill_primer_bars=3) as (url, _):
        info = call(url, "/api/model")[1]
        assert info["fills"] is True and info["limits"]["fill_primer_bars"] == 3 and info["limits"]["fill_bars"] == [1, 2]
        status, answer, _ = call(url, "/api/generate", *multipart({"fill.bars": "1"}, {"primer": ("long.mid", long.read_bytes())}))
        assert (status, answer) == (413, {"error": "primer 'long.mid' is over 3 bars, the longest piece a fill rewrites "
                                                   "here (max_fill_primer_bars); fill a shorter piece"})
        short = make_midi(tmp_path / "short.mid", piece_tracks(3, bars=3)[:1])
        status, answer, _ = call(url, "/api/generate", *multipart({"fill.parts": "drums"},
                                                                 {"primer": ("short.mid", short.read_bytes())}))
        assert status == 400 and answer["error"] == (
            "without fill.bars a fill rewrites all 3 bars of primer 'short.mid', over this server's max_bars of 2; "
            "send fill.bars [first, last] of at most 2 bars")


@pytest.mark.parametrize("view, fills", [("score", False), ("tracks", False)])
def test_a_model_that_cannot_fill_says_so(view, fills, primer, tmp_path):
    with running(random_model(view, fills), tmp_path / "pieces") as (url, _):
        assert call(url, "/api/model")[1]["fills"] is False
        line = ("this model cannot fill: it was trained without fill examples (a score-view checkpoint trained with "
                "data.fill_share above 0 can); leave fill out")
        assert call(url, "/api/generate", {"fill": {"bars": [1, 2]}})[:2] == (400, {"error": line})
        body = multipart({"fill.bars": "1,2"}, {"primer": ("p.mid", primer.read_bytes())})
        assert call(url, "/api/generate", *body)[:2] == (400, {"error": line})


@pytest.mark.parametrize("sent, fill", [
    ({"fill.bars": "5,8"}, Fill(None, [5, 8])),
    ({"fill.bars": " 5 - 8 "}, Fill(None, [5, 8])),
    ({"fill.bars": ["5", "8"]}, Fill(None, [5, 8])),
    ({"fill.bars": "5"}, Fill(None, [5, 5])),
    ({"fill": {"bars": 7}}, Fill(None, [7, 7])),
    ({"fill.parts": ["drums", "piano, drums"]}, Fill(["drums", "piano"], None)),
    ({"fill": {"parts": None, "bars": [2, 3]}}, Fill(None, [2, 3])),
    ({"fill": None}, Fill()),
    ({"fill.parts": "", "fill.bars": ""}, Fill()),
    ({"fill.parts": "piano", "fill.candidates": "8"}, Fill(["piano"], None, 8)),
    ({"fill": {"bars": [2, 3], "candidates": 4}}, Fill(None, [2, 3], 4)),
])
def test_fill_spellings_of_json_and_forms(sent, fill):
    vocab = type("V", (), {"instruments": ("drums", "piano"), "styles": ()})
    assert read_fields(sent, vocab, Limits(8, 5.0, 100, 1000, 1000)).fill == fill
    with pytest.raises(RequestError, match="fill.bars 1-9 is 9 bars"):
        read_fields({"fill.bars": "1-9"}, vocab, Limits(8, 5.0, 100, 1000, 1000))


# ---------------------------------------------------------------------------------------
# the page

LOADED = "() => document.querySelectorAll('#instruments input').length > 0"
STATUS = "s => document.querySelector('#status').textContent.startsWith(s)"


def drag(page, first: int, last: int) -> None:
    """Press on bar ``first`` of the ruler, move to bar ``last``, let go."""
    a = page.locator(f"#ruler span[data-bar='{first}']").bounding_box()
    b = page.locator(f"#ruler span[data-bar='{last}']").bounding_box()
    page.mouse.move(a["x"] + a["width"] / 2, a["y"] + a["height"] / 2)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=5)
    page.mouse.up()


def test_the_page_regenerates_a_selection_of_bars_and_parts_and_undoes_it(server, tmp_path):
    url, app = server
    folder = app.state.store.folder
    with open_page(url + "/", wait=LOADED, timeout_s=60) as page:
        page.check("#instruments input[value=acoustic_grand_piano]")
        page.check("#instruments input[value=acoustic_bass]")
        page.fill("#bars", "4")
        page.fill("#seed", "3")
        page.click("#generate")
        page.wait_for_function(STATUS, arg="piece 1 ready")
        page.wait_for_function(MEDIA_SETTLED)  # the roll and the audio, before they change
        old = page.get_attribute("#download", "href")
        assert not page.is_hidden("#fill") and page.locator("#ruler span").count() == 4
        assert page.is_disabled("#refill") and page.is_disabled("#undo")

        drag(page, 3, 2)  # right to left: bars 2-3
        page.check("#fill-parts input[value=acoustic_grand_piano]")
        page.check("#fill-parts input[value=drums]")  # a part the piece lacks is added
        assert page.text_content("#selection") == "bars 2–3 of acoustic_grand_piano, drums"
        assert page.eval_on_selector_all("#ruler span.on", "xs => xs.map(x => x.textContent)") == ["2", "3"]
        page.fill("#seed", "8")
        assert page.get_attribute("#candidates", "max") == str(MAX_FILL_CANDIDATES)  # the service's limit
        page.fill("#candidates", "3")  # the kept bass is heard: 3 fills, one drawn by how well it fits
        page.evaluate("""() => {  // the form's fields as the page appends them (a blob body is not readable later)
          window.sent = [];
          const append = FormData.prototype.append;
          FormData.prototype.append = function (k, v, ...rest) { window.sent.push([k, String(v)]); return append.call(this, k, v, ...rest); };
        }""")
        page.click("#refill")
        page.wait_for_function(STATUS, arg="piece 1: regenerated bars 2–3")
        assert ["fill.candidates", "3"] in page.evaluate("window.sent")
        page.wait_for_function(MEDIA_SETTLED)
        new = page.get_attribute("#download", "href")
        assert new != old and page.locator("#pieces li").count() == 1
        assert page.text_content("#pieces li").endswith("· version 2")
        assert not page.is_disabled("#undo")

        gap = ("acoustic_grand_piano", "drums")
        before, after = (notes_of(folder / href.split("/")[-1]) for href in (old, new))
        assert outside(after, gap, 2, 3) == outside(before, gap, 2, 3)  # unchanged outside the selection
        assert inside(after, gap, 2, 3) != inside(before, gap, 2, 3)  # and written anew inside it

        page.click("#undo")
        page.wait_for_function(STATUS, arg="piece 1: back to version 1")
        page.wait_for_function(MEDIA_SETTLED)
        assert page.get_attribute("#download", "href") == old and page.get_attribute("#roll", "src").startswith(old[:-4])
        assert page.is_disabled("#undo") and not page.text_content("#pieces li").endswith("version 2")
        page.screenshot(path=tmp_path / "fill.png")
        assert page.errors == []
