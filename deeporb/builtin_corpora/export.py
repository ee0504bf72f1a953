"""Built-in training corpora: export music21's bundled corpus to cached folders of MIDI files.

Why this module exists: DeepOrb's encoder reads any folder of ``.mid`` files (with symusic), but
a new user should be able to train without hunting for MIDI data. The ``music21`` package (already
a dependency) ships a scholarly corpus on disk, so we can turn parts of it into MIDI folders with
no network access at all. Nothing here downloads anything, and this module never imports torch.

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

All datasets: repeats are expanded (music21's misreadings of folk-ABC repeat marks are repaired
first; a piece whose repeats music21 still cannot expand is written as printed and reported),
and grace notes are dropped (music21 writes them as zero-length MIDI notes that break note-off
pairing).

Export is slow (music21 parses MusicXML/ABC and expands repeats in pure Python; from ~0.1 s
for a chorale or a folk tune to minutes for a whole Beethoven quartet), so the result is cached
under ``cache_dir/<name>/``: existing ``.mid`` files are never re-exported, and pieces that cannot
be exported are recorded in ``.export.json`` so a second call does not re-parse them. That
manifest also records the exporter and music21 versions; a cache made by other versions is
deleted and rebuilt. Every file is written to a temporary name and then ``os.replace``-d into
place, so an interrupted export never leaves a truncated ``.mid`` behind.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
import json
import logging
import multiprocessing
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "ExportReport",
    "Piece",
    "export_dataset",
    "export_dataset_report",
    "list_pieces",
]

log = logging.getLogger(__name__)

#: Bumped whenever the exported MIDI would change: a cache made by another version (or another
#: music21 version) is deleted and re-exported rather than silently mixed with new files.
EXPORT_VERSION = 2
MANIFEST_FILE = ".export.json"  # {"signature": ..., "skipped": {stem: reason}}

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
    """Raised by an arranger when a piece does not fit the dataset (e.g. not four voices)."""


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


@dataclass
class ExportReport:
    """What :func:`export_dataset_report` did; ``export_dataset`` returns only ``folder``."""

    name: str
    folder: Path
    exported: list[str] = field(default_factory=list)  # stems written by this call
    cached: list[str] = field(default_factory=list)  # stems already present
    skipped: dict[str, str] = field(default_factory=dict)  # stem -> reason (this call or recorded)
    no_repeats: list[str] = field(default_factory=list)  # exported without expanding repeats
    seconds: float = 0.0
    piece_seconds: dict[str, float] = field(default_factory=dict)  # stem -> export time

    @property
    def files(self) -> list[str]:
        """Stems of the pieces this call guarantees are in ``folder`` (cached + exported)."""
        return self.cached + self.exported


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


def _get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; available datasets: {', '.join(sorted(DATASETS))}"
        ) from None


def list_pieces(name: str) -> list[Piece]:
    """All candidate pieces of a dataset in the stable order ``limit`` uses (no parsing)."""
    return _get_spec(name).list_pieces(corpus_root())


# --------------------------------------------------------------------------------------------
# Converting one piece (runs in worker processes when workers > 1)


def _fix_repeat_marks(part: Any) -> int:
    """Repair the two repeat patterns music21 mis-reads in folk ABC; returns #marks added.

    1. ``A-part :| B-part :|`` with no ``|:`` before the B part (the Nottingham style). Engraving
       convention (and abc2midi) repeats just the B part, but music21 jumps back to the very
       beginning, so "AABB" became "AA(AB)(AB)" (1.5-3x too long). We add the missing start
       repeat right after the previous repeated section (after its last volta, if any).
    2. ``|: ... [|]`` where music21 drops the closing ``:|`` of an ABC ending like ``[|]:|``;
       music21 then refuses the whole piece. A start repeat still open at the end of the tune
       is closed on its last measure.
    """
    from music21 import bar, spanner

    added = 0
    open_start = False
    last_section_end = -1  # index of the last measure of the previous repeated section
    measures = list(part.getElementsByClass("Measure"))
    for i, m in enumerate(measures):
        if isinstance(m.leftBarline, bar.Repeat) and m.leftBarline.direction == "start":
            open_start = True
        if any(isinstance(sp, spanner.RepeatBracket) for sp in m.getSpannerSites()):
            last_section_end = max(last_section_end, i)
        right = m.rightBarline
        if isinstance(right, bar.Repeat) and right.direction == "end":
            start = last_section_end + 1
            if not open_start and last_section_end >= 0 and start <= i:
                measures[start].leftBarline = bar.Repeat(direction="start")
                added += 1
            open_start = False
            last_section_end = max(last_section_end, i)
    if open_start and measures:
        measures[-1].rightBarline = bar.Repeat(direction="end")
        added += 1
    return added


def _unshare_elements(score: Any) -> None:
    """Give each container its own copy of objects music21 put in two places.

    music21's ABC reader sometimes puts one TimeSignature object into two measures, and its
    MIDI writer then fails with "already found in this Stream".
    """
    seen: set[int] = set()
    for container in [score, *score.recurse(streamsOnly=True)]:
        for el in list(container.elements):
            if id(el) in seen and not el.isStream:
                container.replace(el, copy.deepcopy(el))
            seen.add(id(el))


def _strip_repeats(score: Any) -> None:
    """Remove repeat barlines, voltas and D.C./segno marks, so the piece plays as printed."""
    from music21 import bar, repeat, spanner

    for m in score.recurse().getElementsByClass("Measure"):
        if isinstance(m.leftBarline, bar.Repeat):
            m.leftBarline = None
        if isinstance(m.rightBarline, bar.Repeat):
            m.rightBarline = bar.Barline("double")
    for obj in list(score.recurse().getElementsByClass(repeat.RepeatExpression)):
        obj.activeSite.remove(obj)
    for holder in [score, *score.recurse().getElementsByClass("Stream")]:
        for sp in list(holder.getElementsByClass(spanner.RepeatBracket)):
            holder.remove(sp)


def _to_midi_bytes(score: Any) -> tuple[bytes, bool]:
    """music21 Score -> MIDI bytes; returns (data, repeats_expanded).

    music21 expands repeats while writing MIDI and raises on repeat marks it finds inconsistent
    (e.g. in Op. 132 and a few dozen ABC tunes). Rather than lose the piece, we then write it
    as printed, without repeats.
    """
    from music21.midi import translate

    try:
        return translate.streamToMidiFile(score).writestr(), True
    except Exception as exc:  # music21 raises several exception types for repeat problems
        log.debug("repeat expansion failed (%s); writing without repeats", exc)
    _strip_repeats(score)
    return translate.streamToMidiFile(score).writestr(), False


def _convert(spec: DatasetSpec, piece: Piece, root: Path) -> tuple[bytes, bool]:
    """Parse one corpus piece, keep/rename its parts, and return normalised MIDI bytes."""
    import symusic
    from music21 import converter, harmony, instrument

    kwargs: dict[str, Any] = {"forceSource": True, "storePickle": False}  # no music21 pickles
    if piece.number is not None:
        kwargs["number"] = piece.number
    score = converter.parseFile(str(root / piece.source), **kwargs)
    if not hasattr(score, "parts"):  # an ABC file can come back as an Opus
        score = score.scores[0] if getattr(score, "scores", None) else score
    arranged = spec.arrange(score)
    keep = {id(part) for part, _, _ in arranged}
    for part in list(score.parts):
        if id(part) not in keep:
            score.remove(part)
    for part, track_name, program in arranged:
        # One instrument per part at offset 0, so music21 writes one name and one program
        # (mid-part instrument changes would make symusic split the track).
        for old in list(part.recurse().getElementsByClass(instrument.Instrument)):
            old.activeSite.remove(old)
        # Grace notes have no duration in music21 and come out as zero-length MIDI notes whose
        # note-off pairs with a later note of the same pitch (bars-long notes). Drop them.
        for grace in [n for n in part.recurse().notes if n.duration.isGrace]:
            grace.activeSite.remove(grace)
        if spec.drop_chord_symbols:
            for cs in list(part.recurse().getElementsByClass(harmony.ChordSymbol)):
                cs.activeSite.remove(cs)
        inst = instrument.Instrument()
        inst.partName = inst.instrumentName = track_name
        inst.midiProgram = program
        part.partName = track_name
        part.insert(0, inst)

        _fix_repeat_marks(part)

    _unshare_elements(score)
    data, expanded = _to_midi_bytes(score)

    # Normalise with symusic (what the encoder reads): exact names/programs, canonical order.
    midi = symusic.Score.from_midi(data)
    tracks = []
    for _, track_name, program in arranged:
        same = [t for t in midi.tracks if t.name == track_name]
        notes = sum(len(t.notes) for t in same)
        if notes == 0:
            raise SkipPiece(f"track {track_name!r} has no notes after conversion")
        track = same[0]
        for extra in same[1:]:
            track.notes.extend(extra.notes)
            track.controls.extend(extra.controls)
        track.notes.sort()
        track.program = program
        track.is_drum = False
        tracks.append(track)
    midi.tracks = tracks
    return midi.dumps_midi(), expanded


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a hidden temp file in the same folder, then os.replace (atomic on POSIX)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # not *.mid: encoders ignore it
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _export_one(name: str, piece: Piece, out_dir: str) -> tuple[str, str | None, bool, float]:
    """Export one piece; returns (stem, skip_reason_or_None, repeats_expanded, seconds).

    Never raises for a bad piece: a music21 parse/convert error becomes a skip reason, so one
    broken score cannot abort a 400-piece export. Errors writing the file (disk full, folder
    deleted) are not the piece's fault and would hit every piece, so they propagate.
    """
    start = time.perf_counter()
    spec = DATASETS[name]
    try:
        data, expanded = _convert(spec, piece, corpus_root())
    except SkipPiece as exc:
        reason = str(exc)
    except Exception as exc:  # music21 can raise almost anything on odd input
        reason = f"{type(exc).__name__}: {exc}"[:300]
    else:
        _write_atomic(Path(out_dir) / f"{piece.stem}.mid", data)
        return piece.stem, None, expanded, time.perf_counter() - start
    return piece.stem, reason, False, time.perf_counter() - start


# --------------------------------------------------------------------------------------------
# Export driver


def _signature() -> dict[str, Any]:
    """What the cached files depend on: this exporter's version and music21's."""
    try:
        m21 = importlib.metadata.version("music21")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        m21 = "unknown"
    return {"export_version": EXPORT_VERSION, "music21": m21}


def _save_manifest(out_dir: Path, skipped: dict[str, str]) -> None:
    payload = {"signature": _signature(), "skipped": dict(sorted(skipped.items()))}
    _write_atomic(out_dir / MANIFEST_FILE, json.dumps(payload, indent=1).encode())


def _open_cache(name: str, out_dir: Path) -> dict[str, str]:
    """Validate the cache folder and return its recorded skips.

    A folder without a manifest, or made by another exporter/music21 version, is stale: its
    .mid files are deleted (they may carry since-fixed conversion bugs) and a fresh manifest
    is written before anything new is exported, so every .mid present is always current.
    """
    try:
        data = json.loads((out_dir / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict) and data.get("signature") == _signature():
        skipped = data.get("skipped")
        return {str(k): str(v) for k, v in skipped.items()} if isinstance(skipped, dict) else {}
    stale = sorted(out_dir.glob("*.mid"))
    if stale:
        log.warning(
            "%s: %d cached file(s) in %s were made by another exporter or music21 version; "
            "deleting and re-exporting them",
            name, len(stale), out_dir,
        )  # fmt: skip
        for path in stale:
            path.unlink()
    _save_manifest(out_dir, {})
    return {}


def _start_method() -> str:
    """'fork' when it is safe (fast; works from notebooks and stdin scripts), else 'spawn'.

    Forking a process that already runs threads (torch, CUDA, a training loop) can deadlock the
    children, so then we pay for spawn, which needs the caller's main module to be importable.
    """
    if (
        "fork" in multiprocessing.get_all_start_methods()
        and "torch" not in sys.modules
        and threading.active_count() == 1
    ):
        return "fork"
    return "spawn"


def _run_batch(
    name: str,
    batch: list[Piece],
    out_dir: Path,
    pool: ProcessPoolExecutor | None,
    progress: Callable[[tuple[str, str | None, bool, float]], None],
) -> Iterable[tuple[str, str | None, bool, float]]:
    if pool is None:
        for piece in batch:
            result = _export_one(name, piece, str(out_dir))
            progress(result)
            yield result
        return
    futures = [pool.submit(_export_one, name, piece, str(out_dir)) for piece in batch]
    for fut in as_completed(futures):
        result = fut.result()
        progress(result)
        yield result


def export_dataset_report(
    name: str,
    cache_dir: str | Path,
    limit: int | None = None,
    workers: int = 1,
    progress: bool = False,
) -> ExportReport:
    """Like :func:`export_dataset`, but return an :class:`ExportReport` (skips, timings)."""
    spec = _get_spec(name)
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0 or None, got {limit}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    start = time.perf_counter()
    out_dir = Path(cache_dir).expanduser() / spec.name
    out_dir.mkdir(parents=True, exist_ok=True)
    report = ExportReport(name=spec.name, folder=out_dir)

    pieces = spec.list_pieces(corpus_root())
    known_skips = _open_cache(spec.name, out_dir)
    new_skips: dict[str, str] = {}
    done = 0  # files guaranteed present (cached + exported)
    ticker = {"done": 0, "todo": 0, "last": 0.0}

    def show(result: tuple[str, str | None, bool, float]) -> None:
        """Progress on stderr: every skip, else at most one line a second (1,000+ pieces)."""
        if not progress:
            return
        stem, reason, _, secs = result
        ticker["done"] += 1
        now = time.perf_counter()
        if reason is None and now - ticker["last"] < 1.0 and ticker["done"] < ticker["todo"]:
            return
        ticker["last"] = now
        status = f"skipped ({reason})" if reason else f"{secs:.2f} s"
        print(
            f"[{spec.name}] {ticker['done']}/{ticker['todo']} converted, "
            f"{now - start:.0f} s elapsed; {stem}: {status}",
            file=sys.stderr,
            flush=True,
        )

    pool: ProcessPoolExecutor | None = None
    index = 0
    try:
        while limit is None or done < limit:
            # Next batch: just enough unexported pieces to reach `limit` if they all succeed, so
            # the folder gets exactly the first `limit` exportable pieces in sorted order.
            batch: list[Piece] = []
            while index < len(pieces) and (limit is None or done + len(batch) < limit):
                piece = pieces[index]
                index += 1
                if (out_dir / f"{piece.stem}.mid").exists():
                    report.cached.append(piece.stem)
                    done += 1
                elif piece.stem in known_skips:
                    report.skipped[piece.stem] = known_skips[piece.stem]
                else:
                    batch.append(piece)
            if not batch:
                break
            ticker["todo"] += len(batch)
            if workers > 1 and len(batch) > 1 and pool is None:
                ctx = multiprocessing.get_context(_start_method())
                pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
            for stem, reason, expanded, secs in _run_batch(
                spec.name, batch, out_dir, pool if len(batch) > 1 else None, show
            ):
                report.piece_seconds[stem] = secs
                if reason is None:
                    report.exported.append(stem)
                    done += 1
                    if not expanded:
                        report.no_repeats.append(stem)
                else:
                    report.skipped[stem] = new_skips[stem] = reason
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if new_skips:
            _save_manifest(out_dir, {**known_skips, **new_skips})

    order = {p.stem: i for i, p in enumerate(pieces)}
    report.exported.sort(key=order.__getitem__)
    report.seconds = time.perf_counter() - start

    if report.skipped:
        shown = "; ".join(f"{k} ({v})" for k, v in list(report.skipped.items())[:5])
        more = f"; ... {len(report.skipped) - 5} more" if len(report.skipped) > 5 else ""
        log.warning(
            "%s: skipped %d piece(s) that could not be exported (listed in %s): %s%s",
            spec.name, len(report.skipped), out_dir / MANIFEST_FILE, shown, more,
        )  # fmt: skip
    if report.no_repeats:
        log.warning(
            "%s: %d piece(s) had malformed repeat marks and were exported without repeats: %s",
            spec.name, len(report.no_repeats), ", ".join(report.no_repeats),
        )  # fmt: skip
    if limit is not None:
        on_disk = sum(1 for _ in out_dir.glob("*.mid"))
        if on_disk > done:
            log.warning(
                "%s: %s holds %d .mid files from an earlier, larger export (limit=%d); "
                "whoever reads the folder sees all of them",
                spec.name, out_dir, on_disk, limit,
            )  # fmt: skip
    log.info(
        "%s: %d exported, %d cached, %d skipped in %.1f s -> %s",
        spec.name, len(report.exported), len(report.cached), len(report.skipped),
        report.seconds, out_dir,
    )  # fmt: skip
    return report


def export_dataset(
    name: str,
    cache_dir: str | Path,
    limit: int | None = None,
    workers: int = 1,
    progress: bool = False,
) -> Path:
    """Write corpus ``name`` as MIDI files under ``cache_dir/name/`` and return that folder.

    Cached: files already there are not re-exported, and recorded skips are not retried, so a
    repeated call only lists files (well under a second, music21 is not even imported).
    ``limit`` exports the first N *exportable* pieces in a stable natural sort order of their
    corpus paths (skipped pieces do not count). ``workers > 1`` converts pieces in a process pool.
    Pieces music21 cannot parse or write are skipped, logged as a warning with the count, and
    recorded in ``.export.json``; use :func:`export_dataset_report` to get them programmatically.
    Unknown ``name`` raises ValueError listing the available datasets.
    """
    return export_dataset_report(name, cache_dir, limit, workers, progress).folder


def _main(argv: list[str] | None = None) -> int:
    """``python -m deeporb.builtin_corpora.export NAME CACHE_DIR [--limit N] [--workers W]`` (prints timing)."""
    import argparse

    parser = argparse.ArgumentParser(description="Export a music21 corpus to cached MIDI files.")
    parser.add_argument("name", choices=sorted(DATASETS))
    parser.add_argument("cache_dir")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    rep = export_dataset_report(
        args.name, args.cache_dir, args.limit, args.workers, progress=not args.quiet
    )
    times = sorted(rep.piece_seconds.values())
    if times:
        print(
            f"{rep.name}: {len(rep.exported)} exported, {len(rep.cached)} cached, "
            f"{len(rep.skipped)} skipped; wall {rep.seconds:.1f} s; per piece "
            f"mean {sum(times) / len(times):.2f} s, median {times[len(times) // 2]:.2f} s, "
            f"max {times[-1]:.2f} s (workers={args.workers})"
        )
    else:
        print(f"{rep.name}: nothing to do ({len(rep.cached)} cached) in {rep.seconds:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
