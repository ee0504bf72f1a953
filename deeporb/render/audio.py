"""Listen to generated music: a MIDI file to a 16-bit stereo WAV, with nothing but pip packages.

Two synthesizers, chosen by ``render.synth``:

* ``builtin`` (the default): ``midirenderer`` from PyPI (MIT; a Rust SoundFont synthesizer,
  rustysynth, in a self-contained wheel with no system library) playing pretty_midi's
  General MIDI soundfont ``TimGM6mb.sf2`` (6 MB; GPL-2.0, as MuseScore and Debian ship it),
  which pip installs with pretty_midi. It renders at 48 kHz; another ``sample_rate`` is
  resampled (linear). Chosen by measurement over tinysoundfont (equally good, but it
  requires PyAudio, which does not build without the PortAudio headers of the system) and
  symusic's synthesizer (its render fails in symusic 0.6.0): ``benchmarks/synth_choice.py``.
* ``fluidsynth``: the FluidSynth program where the system has it, with any soundfont
  (``render.soundfont``, else a system General MIDI soundfont, else TimGM6mb).

Both hear drums on channel 10 as the drum kit, each track's program as itself, and render
the piece plus :data:`TAIL_SECONDS` so the last notes ring out instead of being cut.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import math
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from deeporb.errors import UserError
from deeporb.fileio import atomic_write_bytes

SYNTHS = ("builtin", "fluidsynth")
BUILTIN_RATE = 48_000  # what midirenderer renders at
TAIL_SECONDS = 1.0  # rendered after the last event: the release of the last notes
# longest piece rendered (s, tail aside): 600 s at 48 kHz is a 115 MB WAV and about a minute of
# synthesis; a primer at MIDI's slowest tempo once made a 1.78 GB one (issue 17)
MAX_SECONDS = 600.0
# where Debian/Ubuntu (fluid-soundfont-gm), Fedora and Arch put a General MIDI soundfont
DEFAULT_SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
)


def builtin_soundfont() -> Path:
    """pretty_midi's ``TimGM6mb.sf2``, found without importing pretty_midi."""
    spec = importlib.util.find_spec("pretty_midi")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "TimGM6mb.sf2"
        if path.is_file():
            return path
    raise UserError("no General MIDI soundfont: pip install pretty_midi (it carries TimGM6mb.sf2) "
                    "or pass render.soundfont=PATH to a .sf2 file")


def find_soundfont(soundfont: str | None = None, synth: str = "builtin") -> Path:
    """The soundfont to play: the one asked for, else (FluidSynth) a system one, else TimGM6mb."""
    if soundfont:
        path = Path(soundfont).expanduser()
        if not path.is_file():
            raise UserError(f"soundfont {str(path)!r} not found; pass render.soundfont=PATH to a .sf2 file")
        return path
    if synth == "fluidsynth":
        for candidate in DEFAULT_SOUNDFONTS:
            if Path(candidate).is_file():
                return Path(candidate)
    return builtin_soundfont()


def find_fluidsynth(fluidsynth: str = "fluidsynth") -> str:
    binary = shutil.which(fluidsynth)
    if binary is None:
        raise UserError(
            f"render.synth=fluidsynth needs the {fluidsynth!r} program, which is not installed "
            "(apt-get install fluidsynth), or use render.synth=builtin"
        )
    return binary


def check_audio(synth: str = "builtin", soundfont: str | None = None, fluidsynth: str = "fluidsynth") -> Path:
    """Fail before any generation when audio cannot be rendered; -> the soundfont."""
    if synth not in SYNTHS:
        raise UserError(f"unknown render.synth={synth!r}; use one of: {', '.join(SYNTHS)}")
    if synth == "fluidsynth":
        find_fluidsynth(fluidsynth)
    return find_soundfont(soundfont, synth)


@functools.lru_cache(maxsize=2)
def _soundfont_bytes(path: Path, mtime: float) -> bytes:
    return path.read_bytes()


def check_render_length(seconds: float, max_seconds: float = MAX_SECONDS) -> None:
    """One :class:`UserError` when a piece of ``seconds`` is over the render limit (or the limit
    is no positive number): callers check it before the work, :func:`render_wav` once more."""
    if not max_seconds > 0:
        raise UserError(f"render.max_seconds must be above 0 (got {max_seconds})")
    if seconds > max_seconds:
        raise UserError(f"the piece lasts {seconds:,.0f} s, over render.max_seconds={max_seconds:g}; "
                        "lower bars, raise the tempo or render.max_seconds, or set render.audio=false")


def midi_seconds(midi) -> float:
    """When a MIDI file's last event sounds, in seconds through its tempo map (a path or a
    ``miditoolkit.MidiFile``). Summed change by change, never a table per tick, so a file
    whose last event lies years out costs nothing."""
    import miditoolkit

    midi = midi if isinstance(midi, miditoolkit.MidiFile) else miditoolkit.MidiFile(str(midi))
    end, tpq = midi.max_tick, midi.ticks_per_beat
    total, tick, qpm = 0.0, 0, 120.0  # MIDI's tempo before any set_tempo
    for change in sorted(midi.tempo_changes, key=lambda t: t.time):
        if change.time >= end:
            break
        if change.tempo > 0 and math.isfinite(change.tempo):
            total += (change.time - tick) * 60.0 / (qpm * tpq)
            tick, qpm = change.time, change.tempo
    return total + (end - tick) * 60.0 / (qpm * tpq)


def with_tail(midi, seconds: float) -> bytes:
    """The MIDI file's bytes (a path or a ``miditoolkit.MidiFile``) with ``seconds`` of silence
    after its last event, so a synthesizer that stops at the last event lets the last notes
    ring out: a 60 qpm tempo there, then a marker. At the piece's own tempo the marker's
    delta overflowed MIDI's 4-byte delta time at 1 us a quarter (issue 17)."""
    import miditoolkit

    midi = midi if isinstance(midi, miditoolkit.MidiFile) else miditoolkit.MidiFile(str(midi))
    end = midi.max_tick
    midi.tempo_changes.append(miditoolkit.TempoChange(60.0, end))  # a quarter a second, nothing sounds after it
    midi.markers.append(miditoolkit.Marker("end", end + int(round(seconds * midi.ticks_per_beat))))
    data = io.BytesIO()
    midi.dump(file=data)
    return data.getvalue()


def read_wav(path: str | Path | bytes) -> tuple[np.ndarray, int]:
    """A 16-bit WAV (file or bytes) -> (float32 samples in [-1, 1], shape (channels, frames); rate)."""
    source = io.BytesIO(path) if isinstance(path, bytes) else str(path)
    with wave.open(source) as w:
        if w.getsampwidth() != 2:
            raise UserError(f"{path}: expected a 16-bit WAV, got {8 * w.getsampwidth()}-bit")
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        audio = frames.reshape(-1, w.getnchannels()).T.astype(np.float32) / 32768.0
        return audio, w.getframerate()


def wav_bytes(audio: np.ndarray, rate: int) -> bytes:
    """(channels, frames) float samples -> 16-bit WAV bytes."""
    frames = np.clip(np.round(audio.T * 32767.0), -32768, 32767).astype("<i2")
    data = io.BytesIO()
    with wave.open(data, "wb") as w:
        w.setnchannels(audio.shape[0])
        w.setsampwidth(2)
        w.setframerate(int(rate))
        w.writeframes(frames.tobytes())
    return data.getvalue()


def resample(audio: np.ndarray, rate: int, to: int) -> np.ndarray:
    """Linear resampling of (channels, frames): enough between 48 and 44.1 kHz for listening."""
    if rate == to:
        return audio
    n = int(round(audio.shape[1] * to / rate))
    t = np.arange(n) * (rate / to)
    return np.stack([np.interp(t, np.arange(audio.shape[1]), ch) for ch in audio]).astype(np.float32)


def render_wav(
    midi_path: str | Path,
    wav_path: str | Path,
    synth: str = "builtin",
    soundfont: str | None = None,
    fluidsynth: str = "fluidsynth",
    sample_rate: int = BUILTIN_RATE,
    tail: float = TAIL_SECONDS,
    max_seconds: float = MAX_SECONDS,
) -> Path:
    """Synthesize a MIDI file to a 16-bit stereo WAV (no audio device needed); return its path.

    A piece longer than ``max_seconds`` (read from the file's tempo map first) is refused
    with :func:`check_render_length`'s line, whoever calls."""
    if not 8000 <= int(sample_rate) <= 192_000:
        raise UserError(f"render.sample_rate must be 8000 to 192000 Hz (got {sample_rate})")
    sf = check_audio(synth, soundfont, fluidsynth)
    midi_path, wav_path = Path(midi_path), Path(wav_path)
    import miditoolkit

    try:
        midi = miditoolkit.MidiFile(str(midi_path))
    except (OSError, ValueError, EOFError) as e:
        raise UserError(f"could not render {midi_path}: not a readable MIDI file ({str(e)[:120]})") from None
    check_render_length(midi_seconds(midi), max_seconds)
    tailed = with_tail(midi, tail)
    if synth == "fluidsynth":
        return _fluidsynth(midi_path, wav_path, sf, find_fluidsynth(fluidsynth), int(sample_rate), tailed)
    import midirenderer

    try:
        data = midirenderer.render_wave_from(_soundfont_bytes(sf, sf.stat().st_mtime), tailed)
    except (ValueError, RuntimeError) as e:
        raise UserError(f"could not render {midi_path} with {sf.name}: {str(e)[:200]}") from None
    if int(sample_rate) != BUILTIN_RATE:
        audio, rate = read_wav(data)
        data = wav_bytes(resample(audio, rate, int(sample_rate)), int(sample_rate))
    atomic_write_bytes(wav_path, data)
    return wav_path


def _fluidsynth(midi_path: Path, wav_path: Path, sf: Path, binary: str, sample_rate: int, tailed: bytes) -> Path:
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / midi_path.name
        source.write_bytes(tailed)
        cmd = [binary, "-ni", "-q", "-T", "wav", "-r", str(sample_rate), "-F", str(wav_path), str(sf), str(source)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not wav_path.is_file() or wav_path.stat().st_size <= 44:
        lines = (proc.stderr or proc.stdout or "no output").strip().splitlines() or ["no output"]
        raise UserError(f"fluidsynth could not render {midi_path}: {lines[-1][:200]}")
    return wav_path
