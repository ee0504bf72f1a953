"""The page of a sample folder: ``index.html`` beside the files, and the statistics it shows.

One self-contained HTML file (no script, no server, no network): each sample's piano roll,
an audio player, its MIDI link, and a table of its facts and music statistics (the
per-piece scalars of :mod:`deeporb.evaluation.music_stats` and, for two pitched parts or
more, the cross-part ones of :mod:`deeporb.evaluation.cross_part`), and a table of its form
(:mod:`deeporb.evaluation.form`: repeats, key, ending). Every link is relative,
so the page opens from disk (double-click) and still works after the folder is moved or
copied. :func:`sample_statistics` is also what the training callback logs.
"""

from __future__ import annotations

import html
import math
import re
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from deeporb.errors import UserError, exit_on_user_error
from deeporb.evaluation.cross_part import cross_part_features
from deeporb.evaluation.form import form_piece, piece_form
from deeporb.evaluation.music_stats import SCALAR_FEATURES, piece_features
from deeporb.fileio import atomic_write_bytes

PAGE = "index.html"

STYLE = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; padding: 0 1em; color: #222; }
header p { color: #555; margin: .2em 0; }
section { border-top: 1px solid #ddd; padding: 1em 0; }
img { max-width: 100%; height: auto; display: block; margin: .5em 0; }
audio { width: 100%; max-width: 600px; }
table { border-collapse: collapse; margin-top: .6em; }
td, th { padding: .15em .8em .15em 0; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.missing { color: #888; }
"""


def beats_per_bar(time_signature: str) -> float:
    """Quarters per bar of an ``"N/D"`` time signature."""
    n, d = (int(x) for x in str(time_signature).split("/"))
    return 4 * n / d


def sample_statistics(tracks: Sequence[Any], beats: float = 4.0) -> dict[str, float]:
    """One sample's music statistics: the per-piece scalars over its pitched tracks, plus the
    cross-part ones (NaN with fewer than two pitched tracks). Drums are left out of both,
    as MusPy leaves them out (their pitches name instruments)."""
    parts = [{c: np.asarray(t.notes[c]) for c in ("onset", "duration", "pitch")} | {"is_drum": t.is_drum}
             for t in tracks]
    pitched = [p for p in parts if not p["is_drum"]]
    stream = {c: np.concatenate([p[c] for p in pitched]) if pitched else np.zeros(0)
              for c in ("onset", "duration", "pitch")}
    feats = piece_features(stream, beats_per_bar=beats)
    out = {name: float(feats[name]) for name in SCALAR_FEATURES}
    return out | cross_part_features({"parts": parts}, beats_per_bar=beats)


def form_rows(result: Any) -> dict[str, Any]:
    """One sample's form figures as the page shows them: the result's own (``form``, computed
    on the model's grid by sample.py), else computed here from its tracks and meter."""
    f = getattr(result, "form", None) or piece_form(form_piece(result.tracks, beats_per_bar(result.time_signature)))
    back = Counter(f["repeat_distances"])
    return {
        "repeat_rate": f["repeat_rate"],
        "repeat_rate_part": f["repeat_rate_part"],
        "repeats_back": ", ".join(f"{d} bars x{n}" for d, n in sorted(back.items())) or "none",
        "key": f["key"] or math.nan,
        "key_consistency_per_16_bars": ", ".join(f"{v:.3f}" for v in f["key_consistency_sections"]) or math.nan,
        "tonic_ending": {1.0: "yes", 0.0: "no"}.get(f["tonic_ending"], math.nan),
    }


def _link(path: Path | None, folder: Path) -> str | None:
    """A relative, URL-quoted link from the page's folder to a file in it (or below it)."""
    if path is None:
        return None
    return quote(Path(path).resolve().relative_to(folder.resolve()).as_posix())


def _number(value: float) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return "&ndash;"
    return f"{value:.3f}" if isinstance(value, float) and not float(value).is_integer() else f"{value:g}"


def _rows(rows: Mapping[str, Any]) -> str:
    cells = []
    for key, value in rows.items():
        shown = _number(value) if isinstance(value, (int, float)) else html.escape(str(value))
        cls = ' class="num"' if isinstance(value, (int, float)) else ""
        cells.append(f"<tr><th>{html.escape(key.replace('_', ' '))}</th><td{cls}>{shown}</td></tr>")
    return "\n".join(cells)


def sample_section(result: Any, folder: Path) -> str:
    """One sample's part of the page (a ``SampleResult``: midi, png, wav, tracks, facts)."""
    name = html.escape(result.midi.name)
    png, wav, midi = _link(result.png, folder), _link(result.wav, folder), _link(result.midi, folder)
    roll = (f'<img src="{png}" alt="piano roll of {name}" loading="lazy">' if png
            else '<p class="missing">no piano roll (render.piano_roll=false)</p>')
    audio = (f'<audio controls preload="metadata" src="{wav}"></audio>' if wav
             else '<p class="missing">no audio (render.audio=false)</p>')
    facts = {
        "instruments": ", ".join(f"{t.name} ({len(t)})" for t in result.tracks),
        "notes": result.notes,
        "bars": result.bars,
        "time_signature": result.time_signature,
        "tempo_qpm": float(result.qpm),
        "seconds": float(result.seconds),
    }
    stats = sample_statistics(result.tracks, beats_per_bar(result.time_signature))
    xml = getattr(result, "musicxml", None)  # render.musicxml=true: the score beside the MIDI
    score = f' &middot; <a href="{_link(xml, folder)}" download>{html.escape(xml.name)}</a> (MusicXML)' if xml else ""
    return (f'<section id="{name}">\n<h2>{name}</h2>\n{roll}\n{audio}\n'
            f'<p><a href="{midi}" download>{name}</a> (MIDI){score}</p>\n'
            f"<table>\n{_rows(facts)}\n{_rows(stats)}\n</table>\n"
            f'<table class="form">\n<caption>form</caption>\n{_rows(form_rows(result))}\n</table>\n</section>')


def write_page(folder: str | Path, results: Sequence[Any], facts: Mapping[str, Any], title: str | None = None) -> Path:
    """Write ``folder/index.html`` for the samples written there; return its path.

    ``facts``: what the header tells (checkpoint, seed, instruments, ...), shown as given; ``title``:
    the heading (which model made them, say), else "DeepOrb samples: FOLDER".
    """
    folder = Path(folder)
    header = "".join(f"<p><b>{html.escape(str(k))}</b>: {html.escape(str(v))}</p>\n"
                     for k, v in facts.items() if v not in (None, "", []))
    body = "\n".join(sample_section(r, folder) for r in results)
    title = title or f"DeepOrb samples: {folder.name}"
    text = (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<header>\n<h1>{html.escape(title)}</h1>\n{header}</header>\n{body}\n</body>\n</html>\n")
    path = folder / PAGE
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


INDEX_MARK = "<!-- deeporb: an index of sample pages -->"


def write_index(folder: str | Path) -> Path:
    """``folder/index.html``: one labelled link to each sample page one level below (its title,
    which names the model that made its pieces), so a person sees every set of a run side by
    side (``make demo``: the model it trained and the bundled one). Refuses to replace an
    ``index.html`` it did not write."""
    folder = Path(folder)
    path = folder / PAGE
    if path.exists() and INDEX_MARK not in path.read_text(errors="replace"):
        raise UserError(f"{path} is not an index DeepOrb wrote; not replacing it")
    pages = sorted(p for p in folder.glob(f"*/{PAGE}") if p.is_file())
    items = []
    for page in pages:
        found = re.search(r"<title>(.*?)</title>", page.read_text(errors="replace"), re.S)
        label = html.unescape(found.group(1)) if found else page.parent.name
        items.append(f'<li><a href="{quote(page.parent.name)}/{PAGE}">{html.escape(label)}</a> '
                     f"({html.escape(page.parent.name)}/)</li>")
    text = (f'<!doctype html>\n{INDEX_MARK}\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f"<title>DeepOrb: {html.escape(folder.name)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<h1>DeepOrb: {html.escape(folder.name)}</h1>\n<ul>\n" + "\n".join(items) + "\n</ul>\n</body>\n</html>\n")
    atomic_write_bytes(path, text.encode("utf-8"))
    return path


@exit_on_user_error
def main(argv: Sequence[str]) -> None:
    """``python -m deeporb.render.page FOLDER``: write the index of the sample pages below FOLDER."""
    if len(argv) != 1:
        raise UserError("usage: python -m deeporb.render.page FOLDER")
    print(write_index(argv[0]))


if __name__ == "__main__":
    main(sys.argv[1:])
