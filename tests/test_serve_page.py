"""The page of serve.py in a real headless browser (Debian's chromium, tests/browser.py):
compose a piece from the controls, see its piano roll and hear its audio load."""

from __future__ import annotations

import pytest
from browser import MEDIA_SETTLED, media_report, open_page
from test_serve import checkpoint, model, running  # noqa: F401 (fixtures)

LOADED = "() => document.querySelectorAll('#instruments input').length > 0"


@pytest.fixture(scope="module")
def page_server(model, tmp_path_factory):  # noqa: F811 (the fixture imported above)
    with running(model, tmp_path_factory.mktemp("page_pieces")) as (url, app):
        yield url, app


def test_a_piece_composed_on_the_page_shows_its_roll_plays_and_downloads(page_server, tmp_path):
    url, app = page_server
    with open_page(url + "/", wait=LOADED, timeout_s=30) as page:
        assert page.eval_on_selector_all("#instruments input", "xs => xs.map(x => x.value)") == [
            "acoustic_bass", "acoustic_grand_piano", "drums"]
        assert page.input_value("#bars") == "16" and page.input_value("#top_p") == "0.95"  # sample.py's defaults
        page.check("#instruments input[value=drums]")
        page.check("#instruments input[value=acoustic_grand_piano]")
        page.fill("#bars", "2")
        page.fill("#seed", "5")
        page.click("#generate")
        page.wait_for_function("() => document.querySelector('#status').textContent === 'piece 1 ready'")
        page.wait_for_function(MEDIA_SETTLED)
        media = {m["tag"]: m for m in media_report(page)}
        assert media["img"]["loaded"] and media["img"]["width"] > 400, media
        assert media["audio"]["loaded"] and media["audio"]["duration"] > 4.0, media  # 2 bars at 100 bpm + tail
        href = page.get_attribute("#download", "href")
        assert href.endswith(".mid") and (app.state.store.folder / href.split("/")[-1]).is_file()
        assert page.text_content("#pieces li") == "1. acoustic_grand_piano, drums · 2 bars · seed 5"

        # a bad primer: the server's one line is shown, and the list keeps only real pieces
        page.set_input_files("#primer", files=[{"name": "bad.mid", "mimeType": "audio/midi", "buffer": b"not midi"}])
        page.click("#generate")
        page.wait_for_function("() => document.querySelector('#status').className === 'error'")
        assert page.text_content("#status") == "primer 'bad.mid': not a MIDI file (no MThd header)"
        assert page.locator("#pieces li").count() == 1
        page.screenshot(path=tmp_path / "page.png")
        assert [e for e in page.errors if "400" not in e] == []  # only the refused request failed


def test_a_model_that_cannot_fill_shows_no_selection_controls(page_server):
    """The tracks-view model cannot fill: the page offers no Regenerate selection."""
    url, _ = page_server
    with open_page(url + "/", wait=LOADED, timeout_s=30) as page:
        page.fill("#bars", "1")
        page.click("#generate")
        page.wait_for_function("() => document.querySelector('#status').textContent.startsWith('piece ')")
        assert not page.is_hidden("#result") and page.is_hidden("#fill") and page.is_hidden("#refill")
