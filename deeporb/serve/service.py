"""The model side of the server: plan a request, generate a batch of them, write each piece.

The steps are ``sample.py``'s, from :mod:`deeporb.generation.compose`: :meth:`Composer.plan`
(on a handler's thread pool) reads the primer and calls :func:`~deeporb.generation.compose.plan`,
so a bad primer or setting is a 400 before anything queues (a fill reads its whole primer, as
sample.py does, up to ``max_fill_primer_bars`` bars, and writes at most ``max_bars`` of them); :meth:`Composer.run_batch` (on the
batcher's worker thread) runs :func:`~deeporb.generation.compose.generate_plans` once for every
plan of a batch, each drawing from its own generator seeded with its seed, so a piece depends
on its request alone, then :func:`~deeporb.generation.compose.finish` for each. The service adds
batching and files, nothing else: a served piece is ``sample.py``'s for the same settings.

Each piece's MIDI is written before its request is answered; the piano roll, the WAV and the
MusicXML score are drawn when first fetched (:meth:`Composer.file`), so clients that want only
MIDI never pay for them and the worker goes straight on to the next batch. The score is
:mod:`deeporb.render.musicxml`'s, from the piece's tracks on the model's grid, as
``sample.py render.musicxml=true`` writes it.

The WAV is synthesized in a child process (:data:`WAV_CHILD`), never in the server's: the
synthesizer holds the GIL and the whole WAV in memory while it runs, and a piece at MIDI's
slowest tempo once made the server answer nothing for 97 s. The child is refused up front
past ``render.max_seconds``, killed past ``render_timeout_s``, and its memory goes back to
the system when it exits. At most ``max_renders`` drawings run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deeporb.checkpoints import facts
from deeporb.errors import UserError
from deeporb.generation.compose import (
    Composition,
    Plan,
    Settings,
    can_fill,
    candidates,
    finish,
    generate_plans,
    plan,
)
from deeporb.generation.prompts import MAX_PRIMER_BARS, bar_grid, load_primer
from deeporb.midi import write_midi
from deeporb.render.audio import check_render_length
from deeporb.render.musicxml import write_musicxml
from deeporb.render.roll import piano_roll
from deeporb.serve.batcher import Job
from deeporb.serve.fields import RequestError
from deeporb.serve.pieces import PieceStore
from deeporb.stages.sample import RenderConfig

# the child that synthesizes a WAV: it imports the synthesizer's module alone (a fraction of a
# second, no torch) and yields the CPU to the server (nice 10); a UserError is its one line on
# stderr and exit status 2
WAV_CHILD = """
import os, sys
os.nice(10)
from deeporb.errors import UserError
from deeporb.render.audio import render_wav
midi, wav, synth, soundfont, fluidsynth, rate, most = sys.argv[1:]
try:
    render_wav(midi, wav, synth, soundfont or None, fluidsynth, int(rate), max_seconds=float(most))
except UserError as e:
    print(e, file=sys.stderr)
    sys.exit(2)
"""


@dataclass
class Piece:
    """A written piece: its id, what composing it gave, and how to draw it."""

    id: str
    seed: int
    composition: Composition
    bar_lines: np.ndarray = field(repr=False)

    @property
    def notes(self) -> int:
        return sum(len(t) for t in self.composition.tracks)


class Composer:
    def __init__(self, model, store: PieceStore, render: RenderConfig, render_timeout_s: float = 60.0,
                 max_renders: int = 2, max_bars: int = 64, max_fill_primer_bars: int = 256) -> None:
        self.model, self.store, self.render_cfg = model, store, render
        self.render_timeout_s = render_timeout_s
        self.max_bars, self.max_fill_primer_bars = max_bars, min(max_fill_primer_bars, MAX_PRIMER_BARS - 1)
        self.vocab, self.session = model.vocab, facts(model)
        self.can_fill = can_fill(self.vocab, self.session.view)
        self.pieces: dict[str, Piece] = {}  # kept pieces, for rendering on demand
        self._render_lock = threading.Lock()  # pyplot's state is global: one drawing at a time
        self._score_lock = threading.Lock()  # music21 keeps global state too (and the GIL gains nothing)
        self._renders = asyncio.Semaphore(max_renders)
        self._drawing: dict[tuple[str, str], asyncio.Task] = {}  # the file each drawing in progress makes

    def plan(self, settings: Settings, primer: Path | None, primer_name: str = "primer") -> Plan:
        """Read the primer (if any), then :func:`deeporb.generation.compose.plan`: whatever the
        checkpoint cannot honour is a :class:`RequestError`."""
        fill = settings.fill.asked
        if fill and not self.can_fill:  # before reading a primer: no primer would help
            raise RequestError("this model cannot fill: it was trained without fill examples (a score-view "
                               "checkpoint trained with data.fill_share above 0 can); leave fill out")
        if fill and primer is None:
            raise RequestError("fill.parts / fill.bars rewrite part of a primer: upload the piece as primer "
                               "(multipart/form-data), or send a served piece's id as primer")
        try:
            loaded = None
            if primer is not None:
                # a fill reads its whole primer: one bar past the limit tells a longer one from one that long
                bars = self.max_fill_primer_bars + 1 if fill else settings.primer_bars
                loaded = load_primer(primer, self.vocab, bars, self.session.instrument_key)
                if fill:
                    self.check_fill(settings, loaded.bars, primer_name)
            return plan(self.model, settings, 1, loaded)
        except UserError as e:  # a primer's line names the upload's temporary path and a CLI fix
            message = str(e).replace(repr(str(primer)), repr(primer_name)).removesuffix("; pass primer=FILE.mid")
            raise RequestError(message) from None

    def check_fill(self, settings: Settings, primer_bars: int, primer_name: str) -> None:
        """A fill's bounds: the model reads the whole primer, which comes back whole, and writes
        its gap as a request writes ``bars``."""
        if primer_bars > self.max_fill_primer_bars:
            raise RequestError(f"primer {primer_name!r} is over {self.max_fill_primer_bars} bars, the longest piece a "
                               "fill rewrites here (max_fill_primer_bars); fill a shorter piece", 413)
        if settings.fill.bars is None and primer_bars > self.max_bars:
            raise RequestError(f"without fill.bars a fill rewrites all {primer_bars} bars of primer {primer_name!r}, "
                               f"over this server's max_bars of {self.max_bars}; send fill.bars [first, last] "
                               f"of at most {self.max_bars} bars")

    def job(self, planned: Plan) -> Job:
        """Requests share a batch when their plans can generate together (:meth:`Plan.batch_key`)."""
        return Job(key=planned.batch_key(), rows=len(planned.prompts) * candidates(planned), work=planned)

    def run_batch(self, jobs: list[Job]) -> None:
        """Generate every job's plan in one batch, then write and answer each piece."""
        plans: list[Plan] = [j.work for j in jobs]
        for job, planned, rows in zip(jobs, plans, generate_plans(self.model, plans), strict=True):
            try:
                job.future.set_result(self.write(planned, rows))
            except Exception as e:  # one piece failing to write must not fail the others
                job.future.set_exception(e)

    def write(self, planned: Plan, rows: list[list[int]]) -> Piece:
        [piece] = finish(self.model, planned, rows)
        piece_id = self.store.new_id()
        write_midi(self.store.path(piece_id, "mid"), piece.tracks, piece.tempos, piece.meter.changes(self.vocab.config))
        self.store.added(piece_id)
        lines, _ = bar_grid(piece.meter, piece.bars, self.vocab.config)
        written = Piece(piece_id, planned.settings.seed, piece, lines / self.vocab.config.resolution)
        self.pieces[piece_id] = written
        for gone in [k for k in self.pieces if self.store.find(k, "mid") is None]:
            del self.pieces[gone]
        return written

    async def file(self, piece_id: str, kind: str) -> Path | None:
        """The piece's file of this kind, drawn now if it is not yet (None: unknown or pruned).
        Requests for a file being drawn wait for that one drawing."""
        path = self.store.find(piece_id, kind)
        if path is None or path.is_file():
            return path
        piece = self.pieces.get(piece_id)
        if piece is None:
            return None
        key = (piece_id, kind)
        task = self._drawing.get(key)
        if task is None:
            task = self._drawing[key] = asyncio.ensure_future(self._draw(piece, kind))
            task.add_done_callback(lambda t: self._drawn(key, t))
        return await asyncio.shield(task)  # a client that goes away does not stop the drawing

    def _drawn(self, key: tuple[str, str], task: asyncio.Task) -> None:
        self._drawing.pop(key, None)
        if not task.cancelled():
            task.exception()  # seen here, so a drawing whose clients all left logs no warning

    async def _draw(self, piece: Piece, kind: str) -> Path | None:
        path, draft = self.store.path(piece.id, kind), self.store.draft(piece.id, kind)
        if kind == "wav":  # before the work: the length is known, and it bounds the WAV's bytes
            try:
                check_render_length(piece.composition.seconds, self.render_cfg.max_seconds)
            except UserError as e:
                raise RequestError(f"{str(e).split(';')[0]}: this server draws no WAV that long; "
                                   "ask for fewer bars, or a primer at a faster tempo", 422) from None
        try:
            async with self._renders:
                if kind == "png":
                    await asyncio.to_thread(self._roll, piece, draft)
                elif kind == "musicxml":
                    await asyncio.to_thread(self._score, piece, draft)
                else:
                    await self._wav(piece.id, draft)
            draft.replace(path)  # drawn beside, then renamed: a reader never sees half a file
        finally:
            self.store.discard_drafts(piece.id, kind)
        self.store.added(piece.id)
        if self.store.find(piece.id, kind) is None:  # pruned while it was drawn
            path.unlink(missing_ok=True)
            return None
        return path

    def _roll(self, piece: Piece, draft: Path) -> None:
        with self._render_lock:
            piano_roll(piece.composition.tracks, draft, title=f"seed {piece.seed}", bar_lines=piece.bar_lines)

    def _score(self, piece: Piece, draft: Path) -> None:
        made, grid = piece.composition, self.vocab.config.resolution
        try:
            with self._score_lock:
                write_musicxml(draft, made.tracks, made.tempos, made.meter.changes(self.vocab.config), grid,
                               end=float(piece.bar_lines[-1]), title=f"deeporb-{piece.id[:8]}")
        except UserError as e:  # a grid no note value writes: the checkpoint's, so every piece's
            raise RequestError(str(e), 422) from None

    async def _wav(self, piece_id: str, draft: Path) -> None:
        """Synthesize the WAV in a child process (:data:`WAV_CHILD`), killed past ``render_timeout_s``."""
        cfg, midi = self.render_cfg, self.store.path(piece_id, "mid")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WAV_CHILD, str(midi), str(draft), cfg.synth, cfg.soundfont or "", cfg.fluidsynth,
            str(cfg.sample_rate), str(cfg.max_seconds), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True)  # its own group: a FluidSynth it starts goes with it
        try:
            async with asyncio.timeout(self.render_timeout_s):
                _, err = await proc.communicate()
        except TimeoutError:
            raise RequestError(f"the WAV took over {self.render_timeout_s:g} s to draw (render_timeout_s), "
                               "so the server stopped it; retry later or ask for a shorter piece", 503) from None
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        lines = err.decode(errors="replace").strip().splitlines() or ["no output"]
        line = lines[-1].replace(str(midi), "the piece")
        if proc.returncode == 2:
            raise RequestError(line, 422)
        if proc.returncode != 0:
            raise RuntimeError(f"the WAV renderer exited with status {proc.returncode}: {line[:300]}")
