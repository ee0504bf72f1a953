"""Look at generated music: a piano-roll PNG (matplotlib Agg) of tracks of note columns.

It works on what :mod:`deeporb.midi` holds (tracks of note columns in quarters), so the
sampler can draw what it writes without reading the MIDI back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from deeporb.midi import Track


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
