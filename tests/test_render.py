"""Tests for deeporb/render: piano-roll PNGs, and WAVs through the builtin synthesizer (pip
packages only: these run on a fresh machine) or FluidSynth (only where it is installed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from deeporb.errors import UserError
from deeporb.midi import Track, write_midi
from deeporb.render import audio
from deeporb.render.roll import piano_roll


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
    short = piano_roll(tracks, tmp_path / "short.png", title="short", bar_lines=[0, 4])
    assert short.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = mpimg.imread(short)
    assert img.shape[0] == 450 and img.shape[1] >= 800  # 4.5 in x 100 dpi; at least 8 in wide
    # the notes are drawn: some pixels carry the first track colour (tab10 blue)
    blue = np.array([0.12, 0.47, 0.71])
    assert (np.abs(img[..., :3] - blue).sum(-1) < 0.05).sum() > 100
    long = piano_roll([track("piano", [60] * 64, np.arange(64) * 2.0)], tmp_path / "long.png")
    assert mpimg.imread(long).shape[1] > img.shape[1]
    empty = piano_roll([], tmp_path / "empty.png")
    assert mpimg.imread(empty).shape[0] == 450




def test_missing_fluidsynth_binary_is_one_clear_line():
    with pytest.raises(UserError, match=r"'/nonexistent/fluidsynth' program, which is not installed.*render.synth=builtin"):
        audio.check_audio("fluidsynth", None, "/nonexistent/fluidsynth")
    with pytest.raises(UserError, match=r"unknown render.synth='timidity'; use one of: builtin, fluidsynth"):
        audio.check_audio("timidity")


def test_soundfont_choice_and_a_missing_soundfont(tmp_path, monkeypatch):
    with pytest.raises(UserError, match=r"soundfont '.*nope.sf2' not found.*render.soundfont"):
        audio.find_soundfont(str(tmp_path / "nope.sf2"))
    builtin = audio.find_soundfont()
    assert builtin.name == "TimGM6mb.sf2" and builtin.stat().st_size > 5_000_000
    monkeypatch.setattr(audio, "DEFAULT_SOUNDFONTS", (str(tmp_path / "a.sf2"), str(tmp_path / "b.sf2")))
    assert audio.find_soundfont(None, "fluidsynth") == builtin  # no system soundfont: TimGM6mb
    (tmp_path / "b.sf2").write_bytes(b"RIFF")
    assert audio.find_soundfont(None, "fluidsynth") == tmp_path / "b.sf2"
    assert audio.find_soundfont(None, "builtin") == builtin  # the builtin default never depends on the system


def test_a_failing_synthesizer_is_reported(tmp_path):
    false = tmp_path / "fake-fluidsynth"
    false.write_text("#!/bin/sh\necho 'fluidsynth: error: cannot load soundfont' >&2\nexit 1\n")
    false.chmod(0o755)
    sf = tmp_path / "x.sf2"
    sf.write_bytes(b"RIFF")
    midi = write_midi(tmp_path / "x.mid", [track("piano", [60], [0])])
    with pytest.raises(UserError, match="fluidsynth could not render .*x.mid: fluidsynth: error: cannot load"):
        audio.render_wav(midi, tmp_path / "x.wav", "fluidsynth", str(sf), str(false))
    with pytest.raises(UserError, match=r"could not render .*x.mid with x.sf2"):
        audio.render_wav(midi, tmp_path / "x.wav", "builtin", str(sf))
    with pytest.raises(UserError, match="sample_rate must be 8000 to 192000"):
        audio.render_wav(midi, tmp_path / "x.wav", sample_rate=100)


def spectrum(samples: np.ndarray, low: float = 100, high: float = 8000) -> np.ndarray:
    """A timbre fingerprint: the centred, unit-norm log energy of a mono signal in 60
    log-spaced bands from ``low`` to ``high`` Hz."""
    mag = np.abs(np.fft.rfft(samples))
    freqs = np.fft.rfftfreq(len(samples), 1 / audio.BUILTIN_RATE)
    edges = np.geomspace(low, high, 61)
    bands = np.array([mag[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in zip(edges[:-1], edges[1:], strict=True)])
    v = np.log10(bands + 1e-9)
    v -= v.mean()
    return v / np.linalg.norm(v)


def rendered(tmp_path: Path, name: str, *tracks: Track, **kwargs) -> tuple[np.ndarray, int]:
    midi = write_midi(tmp_path / f"{name}.mid", list(tracks), tempos=[(0.0, 120.0)])
    return audio.read_wav(audio.render_wav(midi, tmp_path / f"{name}.wav", **kwargs))


def test_builtin_wav_is_the_midi_plus_its_release_and_not_silent(tmp_path):
    # four quarters at 120 qpm: the MIDI lasts 2 s; the WAV adds the 1 s release tail
    wav, rate = rendered(tmp_path, "piano", track("piano", [60, 64, 67, 72], [0, 1, 2, 3]))
    assert rate == audio.BUILTIN_RATE and wav.shape[0] == 2
    assert abs(wav.shape[1] / rate - (2.0 + audio.TAIL_SECONDS)) < 0.01
    loud = np.sqrt((wav[:, : 2 * rate] ** 2).mean())
    assert loud > 0.01 and np.abs(wav).max() < 1.0  # audible, not clipped
    ringing = np.sqrt((wav[:, 2 * rate : int(2.2 * rate)] ** 2).mean())
    assert 0 < ringing < loud  # the last chord rings out, quieter, into the tail
    wav, rate = rendered(tmp_path, "low", track("piano", [60], [0]), sample_rate=22050)
    assert rate == 22050 and abs(wav.shape[1] / rate - (0.5 + audio.TAIL_SECONDS)) < 0.01


def test_programs_sound_as_themselves_and_drums_play_the_kit(tmp_path):
    notes = ([60, 64, 67, 72], [0, 1, 2, 3])
    mono = {name: rendered(tmp_path, name, track(name, *notes, program=program))[0].mean(0)
            for name, program in (("flute", 73), ("bass", 33), ("piano", 0), ("violin", 40), ("flute_again", 73))}
    spectra = {k: spectrum(v) for k, v in mono.items()}
    assert spectra["flute"] @ spectra["flute_again"] > 0.999  # the same program renders the same
    names = ("flute", "bass", "piano", "violin")
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert spectra[a] @ spectra[b] < 0.95, (a, b)  # same notes, other program: other timbre
    # channel 10 plays the drum kit (bank 128): a crash cymbal, a hi-hat and a snare put their
    # energy far above what program 0 plays on the same keys (fundamentals 65 to 139 Hz)
    kit = ([36, 38, 42, 49], [0, 1, 2, 3])
    drums = rendered(tmp_path, "kit", track("kit", *kit, 0.25, is_drum=True))[0].mean(0)
    tuned = rendered(tmp_path, "tuned", track("tuned", *kit, 0.25))[0].mean(0)

    def high_share(x):
        power = np.abs(np.fft.rfft(x)) ** 2
        return power[np.fft.rfftfreq(len(x), 1 / audio.BUILTIN_RATE) > 2000].sum() / power.sum()

    assert high_share(drums) > 0.1 and high_share(tuned) < 0.02, (high_share(drums), high_share(tuned))


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="fluidsynth is not installed")
def test_render_wav_with_fluidsynth(tmp_path):
    tracks = [track("piano", [60, 64, 67], [0, 1, 2]), track("drums", [36, 38], [0, 1], 0.5, is_drum=True)]
    wav, rate = rendered(tmp_path, "x", *tracks, synth="fluidsynth", sample_rate=22050)
    assert rate == 22050 and wav.shape[0] == 2 and wav.shape[1] >= 1.5 * 22050
    assert np.abs(wav).max() > 0.003  # not silence


def test_midi_seconds_follow_the_tempo_map_as_pretty_midi_does(tmp_path):
    import pretty_midi

    tempos = [(0.0, 120.0), (2.0, 60.0), (3.0, 4.0), (3.5, 60_000_000.0)]
    midi = write_midi(tmp_path / "map.mid", [track("piano", [60, 62, 64, 65, 67], [0, 1, 2, 3, 4])], tempos=tempos)
    assert audio.midi_seconds(midi) == pytest.approx(pretty_midi.PrettyMIDI(str(midi)).get_end_time(), rel=1e-6)
    assert audio.midi_seconds(midi) == pytest.approx(1.0 + 1.0 + 7.5, rel=1e-6)  # the last 1.5 quarters: 1.5 us


def test_a_piece_over_the_render_limit_is_refused_before_synthesis(tmp_path):
    """A tempo MIDI holds (3.58 qpm) once made a 1.78 GB WAV: render_wav now reads the length
    first, so no caller can forget the limit (issue 17)."""
    midi = write_midi(tmp_path / "slow.mid", [track("piano", [60, 64, 67, 72], [0, 1, 2, 3])],
                      tempos=[(0.0, 60e6 / 0xFFFFFF)])  # 4 quarters of 16.8 s
    with pytest.raises(UserError, match=r"^the piece lasts 67 s, over render.max_seconds=60; lower bars"):
        audio.render_wav(midi, tmp_path / "slow.wav", max_seconds=60)
    assert not (tmp_path / "slow.wav").exists()
    with pytest.raises(UserError, match="render.max_seconds must be above 0"):
        audio.check_render_length(1.0, 0)
    wav, rate = audio.read_wav(audio.render_wav(midi, tmp_path / "slow.wav", sample_rate=8000))
    assert wav.shape[1] / rate == pytest.approx(4 * 0xFFFFFF / 1e6 + audio.TAIL_SECONDS, rel=0.005)  # under 600 s


def test_a_piece_at_one_microsecond_a_quarter_renders_its_release_tail(tmp_path):
    """The tail used to be written at the piece's tempo: a billion ticks after the last note,
    more than a MIDI delta time holds, and the synthesizer refused the file."""
    wav, rate = audio.read_wav(audio.render_wav(
        write_midi(tmp_path / "fast.mid", [track("piano", [60, 64, 67], [0, 1, 2])], tempos=[(0.0, 60e6)]),
        tmp_path / "fast.wav"))
    assert rate == audio.BUILTIN_RATE and wav.shape[0] == 2
    assert abs(wav.shape[1] / rate - audio.TAIL_SECONDS) < 0.01
