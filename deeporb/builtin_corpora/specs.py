"""What the built-in corpora are: which music21 corpus files each one takes, and how their parts
become named, programmed tracks.

music21 (already a dependency) ships a scholarly corpus on disk, so a new user can train
without hunting for MIDI data and without any network access. This module only *describes*
the corpora and lists their pieces (cheaply: it never imports music21, so a cache hit stays
well under a second); ``convert.py`` turns one piece into MIDI and ``export.py`` caches a
whole corpus as a folder of ``.mid`` files. Nothing here downloads anything or imports torch.

Datasets (see :data:`DATASETS`):

* ``bach_chorales`` -- the four-voice Bach chorales in ``music21/corpus/bach``. Every MIDI file
  has exactly four tracks named ``soprano``, ``alto``, ``tenor``, ``bass`` (GM program 52, "Choir
  Aahs", for all four: the voices are told apart by *name*, so ``instrument_key="name"``).
  Instrumental doublings that some files carry (horns, trumpets, continuo, ...) are dropped;
  files that do not have exactly one part per voice (e.g. two soprano parts) are skipped.
* ``nottingham`` -- a folk-melody stand-in for the Nottingham Music Database. music21 ships only
  *two* genuine Nottingham tunes (``nottingham-dataset/reelsa-c.abc``); we add the 1,059 fiddle
  tunes of Ryan's Mammoth Collection (Boston, 1883: reels, jigs, hornpipes, strathspeys, clogs),
  which is the same repertoire as the Nottingham database. One track ``melody``, GM program 73
  (flute), ``instrument_key="program"``. ABC chord symbols are dropped (melody only).
* ``beethoven_quartets`` -- the Beethoven string quartets in music21's corpus (movements or
  whole quartets of Opp. 18, 59, 74, 132, 133). Tracks ``violin 1``, ``violin 2``, ``viola``,
  ``cello`` with GM programs 40, 40, 41, 42, so ``instrument_key="program"`` gives
  violin/viola/cello keys.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# General MIDI programs (0-based).
CHOIR_AAHS = 52
FLUTE = 73
VIOLIN, VIOLA, CELLO = 40, 41, 42

# Score formats we read, best first: when a piece exists in several formats (the corpus has
# .krn duplicates of some .mxl files), only the first one in this order is used.
_SCORE_EXTS = (".mxl", ".xml", ".musicxml", ".krn")

# Beethoven string quartets: Opp. 18, 59, 74, 95, 127, 130-133, 135 (whichever are shipped).
_QUARTET_OPUS = re.compile(r"^opus(18|59|74|95|127|130|131|132|133|135)(no\d+)?$")


class SkipPiece(Exception):
    """A piece that does not fit its dataset (not four voices; a track empty after conversion)."""


@dataclass(frozen=True)
class Piece:
    """One exportable piece: a corpus file (and tune number for multi-tune ABC files)."""

    source: str  # POSIX path relative to music21's corpus folder
    stem: str  # output file name without ".mid": stable and filesystem-safe
    number: int | None = None  # ABC tune number (X:) when the file holds several tunes


# An arranger gets the parsed music21 Score and returns [(part, track_name, gm_program), ...]
# in track order, or raises SkipPiece.
Arranger = Callable[[Any], list[tuple[Any, str, int]]]


@dataclass(frozen=True)
class DatasetSpec:
    """How to find a dataset's pieces in music21's corpus and how to turn one into MIDI tracks."""

    name: str
    description: str
    instrument_key: str  # "name" or "program": how the encoder should key instruments
    list_pieces: Callable[[Path], list[Piece]]  # corpus root -> pieces in stable sorted order
    arrange: Arranger
    drop_chord_symbols: bool = False  # ABC chord symbols would otherwise be played as chords
    tracks: tuple[str, ...] = ()  # the track names every exported file has (documentation/tests)
    programs: tuple[int, ...] = ()  # GM program of each of ``tracks``


# --------------------------------------------------------------------------------------------
# Listing pieces (cheap: no music21 import, so a cache hit stays well under a second)


def corpus_root() -> Path:
    """music21's bundled corpus folder, located without importing music21 (which is slow)."""
    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("music21 is not installed; it ships the corpora this module exports")
    return Path(next(iter(spec.submodule_search_locations))) / "corpus"


def _natural_key(text: str) -> list[Any]:
    """Sort key that orders bwv2.6 before bwv10.7 (numbers compared as numbers)."""
    parts = re.split(r"(\d+)", text)
    return [int(p) if i % 2 else p.lower() for i, p in enumerate(parts)] + [text]


def _safe_stem(text: str) -> str:
    """Filesystem-safe file stem: keep letters, digits, '.', '-', '_'; '/' becomes '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.replace("/", "_")).strip("._") or "piece"


def _score_files(root: Path, folder: str) -> list[Path]:
    """Score files under root/folder, one per piece (preferring .mxl over .krn duplicates)."""
    best: dict[Path, Path] = {}
    for path in (root / folder).rglob("*"):
        ext = path.suffix.lower()
        if not path.is_file() or ext not in _SCORE_EXTS:
            continue
        key = path.with_suffix("")
        if key not in best or _SCORE_EXTS.index(ext) < _SCORE_EXTS.index(best[key].suffix.lower()):
            best[key] = path
    return sorted(best.values(), key=lambda p: _natural_key(p.relative_to(root).as_posix()))


def _abc_tunes(path: Path) -> list[int]:
    """Tune numbers (X: fields) in an ABC file; music21 parses one with ``number=``."""
    text = path.read_text(encoding="latin-1")
    return [int(m) for m in re.findall(r"^X:\s*(\d+)", text, flags=re.MULTILINE)]


def _list_bach(root: Path) -> list[Piece]:
    files = _score_files(root, "bach")
    return [Piece(p.relative_to(root).as_posix(), _safe_stem(p.stem)) for p in files]


def _list_folk(root: Path) -> list[Piece]:
    pieces: list[Piece] = []
    for folder in ("nottingham-dataset", "ryansMammoth"):
        files = sorted((root / folder).glob("*.abc"), key=lambda p: _natural_key(p.name))
        for path in files:
            rel = path.relative_to(root).as_posix()
            base = _safe_stem(f"{folder}/{path.stem}")
            tunes = _abc_tunes(path)
            if len(tunes) <= 1:
                pieces.append(Piece(rel, base))
            else:
                pieces.extend(Piece(rel, f"{base}_{n}", n) for n in tunes)
    return pieces


def _list_beethoven(root: Path) -> list[Piece]:
    pieces = []
    for path in _score_files(root, "beethoven"):
        rel = path.relative_to(root / "beethoven")
        if _QUARTET_OPUS.match(rel.parts[0].split(".")[0]):
            pieces.append(
                Piece(path.relative_to(root).as_posix(), _safe_stem(rel.with_suffix("").as_posix()))
            )
    return pieces


# --------------------------------------------------------------------------------------------
# Arrangers: choose and name the parts of a parsed score (music21 objects, imported lazily)

_VOICES = ("soprano", "alto", "tenor", "bass")
_VOICE_ALIASES = {
    "soprano": "soprano", "sopran": "soprano", "s": "soprano", "discant": "soprano",
    "discantus": "soprano", "cantus": "soprano",
    "alto": "alto", "alt": "alto", "altus": "alto", "a": "alto",
    "tenor": "tenor", "t": "tenor",
    "bass": "bass", "basso": "bass", "bassus": "bass", "b": "bass",
}  # fmt: skip


def _part_label(part: Any) -> str:
    """A part's best name: partName, else its instrument's name, else ''."""
    name = part.partName
    if not name:
        inst = part.getInstrument(returnDefault=False)
        name = inst.bestName() if inst is not None else ""
    return str(name or "")


def _arrange_chorale(score: Any) -> list[tuple[Any, str, int]]:
    """Pick the S/A/T/B parts by name (first word, e.g. 'Soprano\\rOboe 1,2' -> soprano).

    Chorales often carry instrumental parts (horns, trumpets, continuo) that double the voices;
    those are dropped. A score with no recognisable names but exactly four parts is taken in score
    order (top to bottom = S, A, T, B). Anything else (two soprano parts, keyboard pieces) raises
    SkipPiece, because the encoder relies on exactly these four names.
    """
    parts = list(score.parts)
    by_voice: dict[str, list[Any]] = {v: [] for v in _VOICES}
    for part in parts:
        words = re.split(r"[\s.,;:]+", _part_label(part).strip().lower())
        voice = _VOICE_ALIASES.get(words[0]) if words and words[0] else None
        # "Soprano 1" / "Soprano 2" are divided voices: still soprano, counted twice below.
        if voice:
            by_voice[voice].append(part)
    if all(len(by_voice[v]) == 1 for v in _VOICES):
        return [(by_voice[v][0], v, CHOIR_AAHS) for v in _VOICES]
    if not any(by_voice.values()) and len(parts) == 4:
        return [(p, v, CHOIR_AAHS) for p, v in zip(parts, _VOICES, strict=True)]
    labels = [_part_label(p) or "?" for p in parts]
    raise SkipPiece(f"not four voices S/A/T/B: {len(parts)} parts {labels}")


def _arrange_folk(score: Any) -> list[tuple[Any, str, int]]:
    """ABC tunes are a single melody line; a multi-voice tune keeps only its first (top) voice."""
    parts = list(score.parts)
    if not parts:
        raise SkipPiece("no parts")
    return [(parts[0], "melody", FLUTE)]


def _string_kind(label: str) -> str | None:
    low = label.lower()
    if "cello" in low:  # before "viol..." checks: "Violoncello" contains "viol"
        return "cello"
    if "viola" in low:
        return "viola"
    if "violin" in low or "violino" in low:
        return "violin"
    return None


def _arrange_quartet(score: Any) -> list[tuple[Any, str, int]]:
    """Map parts to violin 1/violin 2/viola/cello by name ('1st Violin', 'Violoncello.', ...)."""
    parts = list(score.parts)
    kinds = [_string_kind(_part_label(p)) for p in parts]
    if sorted(k or "?" for k in kinds) != ["cello", "viola", "violin", "violin"]:
        raise SkipPiece(f"not a string quartet: parts {[_part_label(p) for p in parts]}")
    out: list[tuple[Any, str, int]] = []
    violins = 0
    for part, kind in zip(parts, kinds, strict=True):
        if kind == "violin":
            violins += 1  # score order: the first violin part is printed on top
            out.append((part, f"violin {violins}", VIOLIN))
    out += [(p, k, VIOLA) for p, k in zip(parts, kinds, strict=True) if k == "viola"]
    out += [(p, k, CELLO) for p, k in zip(parts, kinds, strict=True) if k == "cello"]
    return out


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="bach_chorales",
            description=(
                "J.S. Bach's four-part chorales from music21's corpus (music21/corpus/bach, "
                "MusicXML). Four tracks named soprano/alto/tenor/bass (GM 52 choir aahs); "
                "instrumental doublings dropped, pieces without exactly one part per voice skipped."
            ),
            instrument_key="name",
            list_pieces=_list_bach,
            arrange=_arrange_chorale,
            tracks=_VOICES,
            programs=(CHOIR_AAHS,) * 4,
        ),
        DatasetSpec(
            name="nottingham",
            description=(
                "Folk-melody stand-in for the Nottingham Music Database: music21 ships only 2 "
                "genuine Nottingham tunes (nottingham-dataset/reelsa-c.abc), so this adds the "
                "1,059 tunes of Ryan's Mammoth Collection (1883 reels, jigs, hornpipes; ABC). "
                "One melody track (GM 73 flute); chord symbols dropped; repeats expanded."
            ),
            instrument_key="program",
            list_pieces=_list_folk,
            arrange=_arrange_folk,
            drop_chord_symbols=True,
            tracks=("melody",),
            programs=(FLUTE,),
        ),
        DatasetSpec(
            name="beethoven_quartets",
            description=(
                "Beethoven string quartets in music21's corpus (Opp. 18 nos. 1, 3-5, 59 nos. 1-3, "
                "74, 132, 133; some files are single movements, some whole quartets). Tracks "
                "violin 1/violin 2/viola/cello with GM programs 40/40/41/42."
            ),
            instrument_key="program",
            list_pieces=_list_beethoven,
            arrange=_arrange_quartet,
            tracks=("violin 1", "violin 2", "viola", "cello"),
            programs=(VIOLIN, VIOLIN, VIOLA, CELLO),
        ),
    )
}


def get_spec(name: str) -> DatasetSpec:
    """The spec of dataset ``name``; ValueError listing the available ones if there is none."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; available datasets: {', '.join(sorted(DATASETS))}"
        ) from None


def list_pieces(name: str) -> list[Piece]:
    """All candidate pieces of a dataset in the stable order ``limit`` uses (no parsing)."""
    return get_spec(name).list_pieces(corpus_root())
