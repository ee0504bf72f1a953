"""Tests for deeporb/render.py: piano-roll PNGs and WAVs through FluidSynth (when installed)."""

from __future__ import annotations

import shutil
import sys
import wave
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from deeporb import render
from deeporb.errors import UserError
from deeporb.midi import Track, write_midi


def track(name, pitches, onsets, duration=1.0, is_drum=False, program=0) -> Track:
    n = len(pitches)
    return Track(name, program, is_drum, {
        "onset": np.asarray(onsets, dtype=np.float64),
        "duration": np.full(n, duration, dtype=np.float64),
        "pitch": np.asarray(pitches, dtype=np.int64),
        "velocity": np.full(n, 90, dtype=np.int64),
    })


def test_piano_roll_draws_every_track_and_grows_with_the_piece(tmp_path):
    tracks = [
        track("piano", [60, 64, 67, 72], [0, 1, 2, 3]),
        track("drums", [36, 38], [0, 1], 0.25, is_drum=True),
        track("silent", [], []),
    ]
    short = render.piano_roll(tracks, tmp_path / "short.png", title="short", bar_lines=[0, 4])
    assert short.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(short)
    assert img.shape[0] == 450 and img.shape[1] >= 800  # 4.5 in x 100 dpi; at least 8 in wide
    # the notes are drawn: some pixels carry the first track colour (tab10 blue)
    blue = np.array([0.12, 0.47, 0.71])
    assert (np.abs(img[..., :3] - blue).sum(-1) < 0.05).sum() > 100
    long = render.piano_roll([track("piano", [60] * 64, np.arange(64) * 2.0)], tmp_path / "long.png")
    assert mpimg.imread(long).shape[1] > img.shape[1]
    empty = render.piano_roll([], tmp_path / "empty.png")
    assert mpimg.imread(empty).shape[0] == 450


def test_missing_fluidsynth_binary_is_one_clear_line():
    with pytest.raises(UserError, match=r"'/nonexistent/fluidsynth' program, which is not installed.*render.audio=false"):
        render.find_audio_tools(None, "/nonexistent/fluidsynth")


def test_missing_soundfont_is_one_clear_line(tmp_path, monkeypatch):
    fake_binary = sys.executable  # any executable will do: the soundfont is checked next
    with pytest.raises(UserError, match=r"soundfont '.*nope.sf2' not found.*render.soundfont"):
        render.find_audio_tools(str(tmp_path / "nope.sf2"), fake_binary)
    monkeypatch.setattr(render, "DEFAULT_SOUNDFONTS", (str(tmp_path / "a.sf2"), str(tmp_path / "b.sf2")))
    with pytest.raises(UserError, match=r"no General MIDI soundfont found.*a.sf2.*render.soundfont=PATH"):
        render.find_audio_tools(None, fake_binary)
    sf = tmp_path / "b.sf2"
    sf.write_bytes(b"RIFF")
    assert render.find_audio_tools(None, fake_binary) == (shutil.which(fake_binary), sf)


def test_a_failing_synthesizer_is_reported(tmp_path):
    false = tmp_path / "fake-fluidsynth"
    false.write_text("#!/bin/sh\necho 'fluidsynth: error: cannot load soundfont' >&2\nexit 1\n")
    false.chmod(0o755)
    sf = tmp_path / "x.sf2"
    sf.write_bytes(b"RIFF")
    midi = write_midi(tmp_path / "x.mid", [track("piano", [60], [0])])
    with pytest.raises(UserError, match="fluidsynth could not render .*x.mid: fluidsynth: error: cannot load"):
        render.render_wav(midi, tmp_path / "x.wav", str(sf), str(false))


def _soundfont() -> str | None:
    return next((p for p in render.DEFAULT_SOUNDFONTS if Path(p).is_file()), None)


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="fluidsynth is not installed")
@pytest.mark.skipif(_soundfont() is None, reason="no General MIDI soundfont installed")
def test_render_wav_with_fluidsynth(tmp_path):
    tracks = [track("piano", [60, 64, 67], [0, 1, 2]), track("drums", [36, 38], [0, 1], 0.5, is_drum=True)]
    midi = write_midi(tmp_path / "x.mid", tracks, tempos=[(0.0, 120.0)])
    wav = render.render_wav(midi, tmp_path / "x.wav", sample_rate=22050)
    with wave.open(str(wav)) as w:
        assert w.getframerate() == 22050 and w.getnchannels() == 2 and w.getsampwidth() == 2
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
        assert w.getnframes() >= 1.5 * 22050  # three quarters at 120 qpm, plus release
    assert np.abs(frames).max() > 100  # not silence
