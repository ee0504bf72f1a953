"""Look at and listen to generated music: a piano-roll PNG (matplotlib Agg) and a WAV (FluidSynth).

Both work on what :mod:`deeporb.midi` holds (tracks of note columns in quarters), so the
sampler can render what it writes without reading the MIDI back. FluidSynth is an optional
system program: :func:`find_audio_tools` turns its absence into one clear line before any
generation starts.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deeporb.errors import UserError
from deeporb.midi import Track

# where Debian/Ubuntu (fluid-soundfont-gm), Fedora and Arch put a General MIDI soundfont
DEFAULT_SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
)


def piano_roll(
    tracks: Sequence[Track],
    path: str | Path,
    title: str | None = None,
    bar_lines: Sequence[float] = (),
    dpi: int = 100,
) -> Path:
    """Draw every track's notes as bars (x: quarters, y: MIDI pitch) into a PNG; return its path.

    Drum tracks are drawn as dots (their duration means nothing to a drum kit). An empty
    score still gives a figure, so a caller never has to special-case silence.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ends = [float(np.max(t.notes["onset"] + t.notes["duration"])) for t in tracks if len(t)]
    span = max(ends + [float(bar_lines[-1]) if len(bar_lines) else 0.0, 4.0])
    width = float(np.clip(span / 4.0, 8.0, 40.0))
    fig, ax = plt.subplots(figsize=(width, 4.5))
    try:
        colors = plt.get_cmap("tab10").colors
        pitches = []
        for i, track in enumerate(tracks):
            color = colors[i % len(colors)]
            n = track.notes
            label = f"{track.name} ({len(track)})"
            if len(track) == 0:
                ax.plot([], [], color=color, label=label)
            elif track.is_drum:
                ax.scatter(n["onset"], n["pitch"], s=8, marker="x", color=color, label=label)
            else:
                ax.barh(n["pitch"], n["duration"], left=n["onset"], height=0.8, color=color,
                        edgecolor="black", linewidth=0.2, label=label)
            pitches.extend(np.asarray(n["pitch"]).tolist())
        for x in bar_lines:
            ax.axvline(float(x), color="0.85", linewidth=0.6, zorder=0)
        lo, hi = (min(pitches), max(pitches)) if pitches else (60, 72)
        ax.set_ylim(lo - 2, hi + 2)
        ax.set_xlim(0, span)
        ax.set_xlabel("quarter notes")
        ax.set_ylabel("MIDI pitch")
        if title:
            ax.set_title(title)
        if tracks:
            ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize="small")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
    return path


def find_audio_tools(soundfont: str | None = None, fluidsynth: str = "fluidsynth") -> tuple[str, Path]:
    """-> (fluidsynth executable, soundfont file), or a :class:`UserError` naming the fix."""
    binary = shutil.which(fluidsynth)
    if binary is None:
        raise UserError(
            f"render.audio=true needs the {fluidsynth!r} program, which is not installed "
            "(apt-get install fluidsynth fluid-soundfont-gm), or set render.audio=false"
        )
    if soundfont:
        sf = Path(soundfont).expanduser()
        if not sf.is_file():
            raise UserError(f"soundfont {str(sf)!r} not found; pass render.soundfont=PATH to a .sf2 file")
        return binary, sf
    for candidate in DEFAULT_SOUNDFONTS:
        if Path(candidate).is_file():
            return binary, Path(candidate)
    raise UserError(
        "no General MIDI soundfont found (looked for " + ", ".join(DEFAULT_SOUNDFONTS)
        + "); install fluid-soundfont-gm or pass render.soundfont=PATH"
    )


def render_wav(
    midi_path: str | Path,
    wav_path: str | Path,
    soundfont: str | None = None,
    fluidsynth: str = "fluidsynth",
    sample_rate: int = 44100,
) -> Path:
    """Synthesize a MIDI file to a 16-bit WAV with FluidSynth (no audio device needed)."""
    binary, sf = find_audio_tools(soundfont, fluidsynth)
    wav_path = Path(wav_path)
    wav_path.parent.mkdir(parents=True, exist_ok=True)
    cmd = [binary, "-ni", "-q", "-T", "wav", "-r", str(int(sample_rate)),
           "-F", str(wav_path), str(sf), str(midi_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not wav_path.is_file() or wav_path.stat().st_size <= 44:
        lines = (proc.stderr or proc.stdout or "no output").strip().splitlines() or ["no output"]
        raise UserError(f"fluidsynth could not render {midi_path}: {lines[-1][:200]}")
    return wav_path
