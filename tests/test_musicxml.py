"""Tests for deeporb/render/musicxml.py and ``render.musicxml``: a piece written as MusicXML is
read back by music21 with the same notes (pitch, onset and duration on the grid), part names,
meters and a key signature; sample.py writes the score beside each MIDI and links it on its
page; the service offers it."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from midi_factory import make_midi
from music21 import converter, key, meter, stream, tempo
from omegaconf import OmegaConf
from test_sampling import ROOT, ckpt, corpus, model, run_dir  # noqa: F401 (fixtures)
from test_serve import call, running

from deeporb.midi import Track, read_midi
from deeporb.render.musicxml import note_values, split_length, write_musicxml
from deeporb.stages.sample import SampleConfig, sample

GRID = 12
Q = 480  # ticks a quarter in the pieces below


def on_grid(x, grid: int = GRID) -> int:
    """A time in quarters as grid steps, asserting it is exactly on the grid."""
    steps = Fraction(x) * grid if isinstance(x, Fraction) else Fraction(x).limit_denominator(10**6) * grid
    assert steps.denominator == 1, f"{x} quarters is off the grid of {grid}"
    return int(steps)


def expected(track: Track, grid: int = GRID) -> list[tuple[int, int, int]]:
    """(onset, duration, pitch) in grid steps, as the score must hold them (all but notes below C0)."""
    n = track.notes
    start = np.rint(n["onset"] * grid).astype(int)
    end = np.maximum(np.rint((n["onset"] + n["duration"]) * grid).astype(int), start + 1)
    notes = zip(start.tolist(), (end - start).tolist(), n["pitch"].tolist(), strict=True)
    return sorted(note for note in notes if note[2] >= 12)


def sounding(part: stream.Part, grid: int = GRID) -> list[tuple[int, int, int]]:
    """What a part plays, read back: every note of every chord and voice, ties joined (a tie
    goes on to the next note of its pitch that starts where it ends), as (onset, duration, pitch)."""
    heard: list[list[int]] = []
    held: dict[int, int] = {}  # pitch -> its note in `heard` that a tie carries on
    for n in sorted(part.recurse().notes, key=lambda n: n.getOffsetInHierarchy(part)):
        start, length = on_grid(n.getOffsetInHierarchy(part), grid), on_grid(n.quarterLength, grid)
        for single in getattr(n, "notes", None) or [n]:
            pitch, tie = single.pitch.midi, (single.tie or n.tie)
            kind = tie.type if tie is not None else None
            i = held.pop(pitch, None)
            if kind in ("stop", "continue") and i is not None and sum(heard[i][:2]) == start:
                heard[i][1] += length
            else:
                assert kind not in ("stop", "continue"), f"a tie into {single} at {start} from nothing"
                heard.append([start, length, pitch])
                i = len(heard) - 1
            if kind in ("start", "continue"):
                held[pitch] = i
    assert not held, f"ties left open: {held}"
    return sorted(tuple(h) for h in heard)


def meters(part: stream.Part) -> list[tuple[float, str]]:
    return [(float(ts.getOffsetInHierarchy(part)), ts.ratioString) for ts in part.recurse().getElementsByClass(meter.TimeSignature)]


def test_note_values_split_any_length_into_written_values_that_add_up():
    plain, tupled = note_values(GRID)
    assert 36 in plain and 18 in plain and 4 in tupled and 1 in tupled  # dotted half, dotted eighth, triplet eighth
    assert split_length(36, GRID) == (36,) and split_length(4, GRID) == (4,) and split_length(48, GRID) == (48,)
    assert split_length(15, GRID) == (12, 3)  # a quarter tied to a sixteenth: no tuplet where none is needed
    for steps in range(1, 97):
        assert sum(split_length(steps, GRID)) == steps


def test_a_bach_chorale_comes_back_note_for_note(chorale_midi_dir, tmp_path):
    source = sorted(chorale_midi_dir.glob("*.mid"))[0]
    piece = read_midi(source)
    path = write_musicxml(tmp_path / "chorale.musicxml", piece.tracks, piece.tempos, piece.time_signatures, GRID)
    score = converter.parse(path)
    assert [p.partName for p in score.parts] == [t.name for t in piece.tracks] == ["soprano", "alto", "tenor", "bass"]
    for part, track in zip(score.parts, piece.tracks, strict=True):
        assert sounding(part) == expected(track)
        joined = part.stripTies().flatten().notes  # one voice a part: music21's own tie join agrees
        assert [float(n.offset) for n in joined] == sorted(track.notes["onset"].tolist())
        assert meters(part)[0] == (0.0, "{}/{}".format(*piece.time_signatures[0][1:]))
        assert len(part.recurse().getElementsByClass(key.KeySignature)) == 1
        assert part.getInstrument().midiProgram == track.program
    assert score.analyze("key").sharps == score.parts[0].recurse().getElementsByClass(key.KeySignature).first().sharps


def lines(*notes):
    """(start, end, pitch) in quarters -> midi_factory notes."""
    return [(int(round(s * Q)), int(round(e * Q)), p, 80) for s, e, p in notes]


@pytest.mark.parametrize("meter_, flute, cello", [
    # 3/4: four quarters from beat two tied over the bar line, a rest, an eighth-note triplet, a chord tied over a bar
    ((3, 4), [(0, 1, 72), (1, 5, 74), (6, 6 + 1 / 3, 76), (6 + 1 / 3, 6 + 2 / 3, 77), (6 + 2 / 3, 7, 79), (8, 9, 81)],
     [(0, 4, 48), (0, 4, 55), (4, 6, 50), (2, 3, 60), (6, 9, 43)]),
    # 6/8: dotted quarters, a note over three bars, a sixteenth, notes of one track overlapping (two voices)
    ((6, 8), [(0, 1.5, 67), (1.5, 2, 69), (2, 2.25, 71), (2.25, 3, 72), (3, 10.5, 74), (10.5, 12, 70)],
     [(0, 3, 36), (0, 3, 43), (0.5, 1, 48), (1, 2.5, 52), (3, 4.5, 45), (4.5, 6, 41), (6, 9, 38)]),
])
def test_meters_ties_chords_rests_and_voices_round_trip(tmp_path, meter_, flute, cello):
    drums = [(t * Q, t * Q + 60, 36, 100) for t in range(6)]
    midi = make_midi(tmp_path / "piece.mid", [
        {"name": "flute", "program": 73, "notes": lines(*flute)},
        {"name": "cello", "program": 42, "notes": lines(*cello)},
        {"name": "kit", "program": 0, "is_drum": True, "notes": drums},
    ], tempos=[(0, 90.0), (6 * Q, 72.5)], time_signatures=[(0, *meter_)])
    piece = read_midi(midi)
    path = write_musicxml(tmp_path / "piece.musicxml", piece.tracks, piece.tempos, piece.time_signatures, GRID, end=12)
    score = converter.parse(path)
    assert [p.partName for p in score.parts] == ["flute", "cello"]  # the drums are not notated, and say so
    assert any("not notated: kit (6 notes)" in t.content for t in score.recurse().getElementsByClass("TextExpression"))
    for part, track in zip(score.parts, piece.tracks, strict=False):
        assert sounding(part) == expected(track)
        assert meters(part) == [(0.0, "{}/{}".format(*meter_))]
        bar = 4 * meter_[0] / meter_[1]
        assert [float(m.offset) for m in part.getElementsByClass(stream.Measure)] == [i * bar for i in range(int(12 / bar))]
        assert part.recurse().getElementsByClass(key.KeySignature).first() is not None
    marks = score.parts[0].recurse().getElementsByClass(tempo.MetronomeMark)
    assert [(float(m.getOffsetInHierarchy(score.parts[0])), m.number) for m in marks] == [(0.0, 90.0), (6.0, 72.5)]


def test_a_meter_change_and_a_cut_bar_keep_every_onset(tmp_path):
    notes = {"onset": np.array([0.0, 3.0, 4.0, 5.5, 1.0]), "duration": np.array([4.0, 2.0, 2.5, 1.0, 1.0]),
             "pitch": np.array([60, 64, 67, 70, 5]), "velocity": np.full(5, 80)}  # 5: below C0
    track = Track("violin", 40, False, notes)
    # 4/4, a 3/8 change in the middle of the second bar (which is cut short there)
    path = write_musicxml(tmp_path / "m.musicxml", [track], [(0.0, 120.0)], [(0.0, 4, 4), (5.0, 3, 8)], GRID)
    [part] = converter.parse(path).parts
    assert sounding(part) == expected(track) and len(expected(track)) == 4
    assert meters(part) == [(0.0, "4/4"), (5.0, "3/8")]
    [line] = part.recurse().getElementsByClass("TextExpression")
    assert line.content == "not notated: 1 notes below C0, which MusicXML cannot write: see the MIDI file"


def test_sample_writes_a_score_beside_each_midi_and_links_it(model, tmp_path):  # noqa: F811 (fixture)
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("sample", overrides=[f"out_dir={tmp_path}", "num_samples=2", "bars=3", "seed=2",
                                           "render.musicxml=true", "render.piano_roll=false"])
    cfg = OmegaConf.to_object(cfg)
    assert isinstance(cfg, SampleConfig) and cfg.render.musicxml
    results = sample(cfg, model=model)
    page = (tmp_path / "index.html").read_text()
    for r in results:
        assert r.musicxml == r.midi.with_suffix(".musicxml") and r.musicxml.is_file()
        assert f'href="{r.musicxml.name}"' in page
        score = converter.parse(r.musicxml)
        pitched = [t for t in r.tracks if not t.is_drum]
        assert [p.partName for p in score.parts] == [t.name for t in pitched] or not pitched
        for part, track in zip(score.parts, pitched, strict=False):
            assert sounding(part) == expected(track)
            assert meters(part)[0] == (0.0, r.time_signature)
        assert len(score.parts[0].getElementsByClass(stream.Measure)) >= r.bars  # more where notes ring on


def test_the_service_offers_each_piece_as_musicxml(model, tmp_path):  # noqa: F811 (fixture)
    with running(model, tmp_path / "pieces") as (url, _):
        status, answer, _ = call(url, "/api/generate", {"bars": 2, "seed": 3, "instruments": ["acoustic_grand_piano"]})
        assert status == 200 and answer["musicxml_url"] == f"/api/pieces/{answer['id']}.musicxml"
        status, data, headers = call(url, answer["musicxml_url"])
        assert status == 200 and headers["content-type"].startswith("application/vnd.recordare.musicxml+xml")
        assert "attachment" in headers.get("content-disposition", "")
        status, midi, _ = call(url, answer["midi_url"])
        assert "musicxml_url" in call(url, "/")[1].decode()
    (tmp_path / "p.mid").write_bytes(midi)
    (tmp_path / "p.musicxml").write_bytes(data)
    [track] = read_midi(tmp_path / "p.mid").tracks
    [part] = converter.parse(tmp_path / "p.musicxml").parts
    assert part.partName == "acoustic_grand_piano" and sounding(part) == expected(track)
