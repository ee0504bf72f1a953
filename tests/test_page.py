"""The page of a sample folder (deeporb/render/page.py): written by sample(), opened from disk
in a real headless chromium (tests/browser.py), every image and player resolving to its file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from browser import MEDIA_SETTLED, media_report, open_page

from deeporb.encoding.words import EncodingConfig, Vocabulary
from deeporb.evaluation.cross_part import CROSS_PART_FEATURES
from deeporb.evaluation.music_stats import SCALAR_FEATURES
from deeporb.midi import Track
from deeporb.model import LSTMGenerator
from deeporb.render.audio import TAIL_SECONDS
from deeporb.render.page import sample_statistics, write_index, write_page
from deeporb.stages.sample import RenderConfig, SampleConfig, sample

KEYS = ("acoustic_bass", "drums", "flute")
PROGRAMS = {"acoustic_bass": 32, "flute": 73}


def random_model() -> LSTMGenerator:
    """An untrained network over three instruments (bass, drums, flute): random music."""
    torch.manual_seed(0)
    session = {"names": ["page"], "qpm_median": 120.0, "time_signatures": {"4/4": 1},
               "instruments": {k: {"program": PROGRAMS.get(k, 0), "is_drum": k == "drums", "tracks": 1, "notes": 10}
                               for k in KEYS}}
    return LSTMGenerator(Vocabulary(EncodingConfig(), KEYS).to_dict(), embed_dim=16, hidden_size=32,
                         num_layers=1, dropout=0.0, session=session)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two rendered samples (MIDI, PNG, WAV) and their page, in a folder whose name needs quoting."""
    out = tmp_path_factory.mktemp("pages") / "run #1 (ü)"
    sample(SampleConfig(out_dir=str(out), num_samples=2, bars=2, seed=3, instruments=list(KEYS),
                        render=RenderConfig(audio=True)), model=random_model())
    return out


def test_sample_writes_a_page_linking_every_file_relatively(folder):
    text = (folder / "index.html").read_text()
    for i in range(2):
        for suffix in ("png", "wav", "mid"):
            assert f'"sample_{i:03d}.{suffix}"' in text  # relative: the folder can move
    assert "file://" not in text and str(folder) not in text and "<script" not in text
    assert text.count("<audio controls") == 2 and text.count("<img ") == 2
    # the statistics table: the per-piece scalars and, with two pitched parts, the cross-part ones
    for name in ("pitch_class_entropy", "cross_part_consonance", "key_consistency"):
        assert f"<th>{name.replace('_', ' ')}</th>" in text
    assert "acoustic_bass (" in text and "seed" in text
    # the form table, and the same figures in samples.json: per sample and for the set
    assert text.count("<caption>form</caption>") == 2 and "<th>repeat rate part</th>" in text
    summary = json.loads((folder / "samples.json").read_text())
    assert {"repeat_rate", "repeat_distances", "key_consistency_sections", "tonic_ending"} <= set(
        summary["samples"][0]["form"])
    assert summary["form"]["form/pieces"] == 2 and "form/repeat_distance_part_4" in summary["form"]


def test_the_page_renders_in_headless_chromium_from_disk(folder, tmp_path):
    moved = shutil.copytree(folder, tmp_path / "copied elsewhere")  # relative links survive a move
    with open_page(moved / "index.html", wait=MEDIA_SETTLED) as page:
        media = media_report(page)
        assert page.title().startswith("DeepOrb samples")
        assert [m["tag"] for m in media] == ["img", "audio", "img", "audio"]
        for m in media:
            assert m["loaded"] and not m["failed"], m
            assert m["src"].startswith((moved / "sample_").as_uri()[: len(moved.as_uri())])
        widths = [m["width"] for m in media if m["tag"] == "img"]
        assert all(w >= 800 for w in widths)  # the piano rolls' real pixels
        # an audio element knows its file's duration: the piece's (its last note's end, notes
        # may outlast the bars asked for) plus the release tail
        durations = [m["duration"] for m in media if m["tag"] == "audio"]
        seconds = [s["seconds"] for s in json.loads((moved / "samples.json").read_text())["samples"]]
        assert durations == pytest.approx([s + TAIL_SECONDS for s in seconds], abs=0.05)
        hrefs = page.eval_on_selector_all("a[download]", "els => els.map(e => e.href)")
        assert [h.rsplit("/", 1)[1] for h in hrefs] == ["sample_000.mid", "sample_001.mid"]
        assert page.errors == []
        page.screenshot(path=tmp_path / "page.png", full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 10_000


def test_a_missing_file_shows_as_a_failed_element(folder, tmp_path):
    broken = shutil.copytree(folder, tmp_path / "broken")
    (broken / "sample_001.wav").unlink()
    with open_page(broken / "index.html", wait=MEDIA_SETTLED) as page:
        failed = [m["src"].rsplit("/", 1)[1] for m in media_report(page) if m["failed"]]
        assert failed == ["sample_001.wav"]
        assert any("sample_001.wav" in e for e in page.errors)


def part(pitches, onsets, is_drum=False) -> Track:
    n = len(pitches)
    return Track("p", 0, is_drum, {"onset": np.asarray(onsets, float), "duration": np.ones(n),
                                   "pitch": np.asarray(pitches), "velocity": np.full(n, 80)})


def test_statistics_leave_drums_out_and_need_two_parts_for_the_cross_part_ones():
    melody = part([60, 62, 64, 65], [0, 1, 2, 3])
    drums = part([36, 36, 36, 36], [0, 1, 2, 3], is_drum=True)
    alone = sample_statistics([melody, drums])
    assert set(alone) == set(SCALAR_FEATURES) | set(CROSS_PART_FEATURES)
    assert alone["pitch_range"] == 5 and np.isnan(alone["cross_part_consonance"])  # drums are no part
    duet = sample_statistics([melody, part([48, 55, 52, 53], [0, 1, 2, 3]), drums])
    assert duet["pitch_range"] == 17 and 0.0 <= duet["cross_part_consonance"] <= 1.0


def test_page_escapes_names_and_marks_what_was_not_rendered(tmp_path):
    class Result:  # what write_page reads of a SampleResult
        midi, png, wav = tmp_path / "<b>a&b.mid", None, None
        tracks = [part([60], [0])]
        notes, bars, time_signature, qpm, seconds = 1, 1, "4/4", 120.0, 2.0

    Result.midi.write_bytes(b"MThd")
    text = write_page(tmp_path, [Result], {"seed": 7, "primer": None}).read_text()
    assert "<b>a&b" not in text and "&lt;b&gt;a&amp;b.mid" in text
    assert 'href="%3Cb%3Ea%26b.mid"' in text
    assert "no piano roll" in text and "no audio" in text
    assert re.search(r"<b>seed</b>: 7", text) and "primer" not in text


def test_an_index_links_each_sample_page_by_its_title_and_keeps_others_files(tmp_path):
    """``make demo``'s page of both sets: each labelled by the model that made it."""
    for name, title in (("samples", "Trained just now"), ("pretrained", "The bundled model")):
        sample(SampleConfig(out_dir=str(tmp_path / "demo" / name), num_samples=1, bars=1, seed=1, title=title,
                            instruments=["flute"], render=RenderConfig(piano_roll=False)), model=random_model())
    done = subprocess.run([sys.executable, "-m", "deeporb.render.page", str(tmp_path / "demo")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "demo" / "index.html").read_text()
    assert re.findall(r'<a href="([^"]+)">([^<]+)</a>', text) == [
        ("pretrained/index.html", "The bundled model"), ("samples/index.html", "Trained just now")]
    write_index(tmp_path / "demo")  # its own index it may write again; someone else's, never
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "index.html").write_text("<html>my page</html>")
    done = subprocess.run([sys.executable, "-m", "deeporb.render.page", str(tmp_path / "mine")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "not an index DeepOrb wrote" in done.stderr
    assert (tmp_path / "mine" / "index.html").read_text() == "<html>my page</html>"
