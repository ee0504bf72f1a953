"""The model side of the server: plan a request, generate a batch of them, write each piece.

:meth:`Composer.plan` runs on a handler's thread pool: it checks the settings against the
checkpoint, reads the primer and builds the prompts (so a bad primer is a 400 before anything
queues). :meth:`Composer.run_batch` runs on the batcher's worker thread: one call of
:func:`deeporb.generation.loop.generate` for all the batch's prompts, each request drawing
from its own ``torch.Generator`` seeded with its seed, so a piece depends on its request
alone, not on what it was batched with. The steps are :func:`deeporb.generation.compose.compose`'s
(both views; the same prompts, checks and decoding), split at the one ``generate`` call that
requests share. Each piece's MIDI is written before its request is answered; the piano roll
and the WAV are drawn when first fetched (:meth:`Composer.file`), so clients that want only
MIDI never pay for them and the worker goes straight on to the next batch.

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
import torch

from deeporb.checkpoints import facts
from deeporb.encoding.words import BAR
from deeporb.errors import UserError
from deeporb.generation.compose import (
    Composition,
    Settings,
    check_settings,
    header_parts,
    rows_to_tracks,
    score_to_tracks,
    seconds_at,
)
from deeporb.generation.loop import draw_header, generate
from deeporb.generation.prompts import Primer, bar_grid, build_prompts, load_primer, score_prompt
from deeporb.midi import write_midi
from deeporb.render.audio import check_render_length
from deeporb.render.roll import piano_roll
from deeporb.serve.batcher import Job
from deeporb.serve.fields import PieceRequest, RequestError
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
class Plan:
    """A checked request, ready to generate: its prompts and how its rows become a piece."""

    request: PieceRequest
    settings: Settings
    prompts: list[list[int]]  # tracks view: one per instrument; score view: one
    instruments: list[str]  # tracks view: the parts, in the prompts' order; score view: the named ones
    ensembles: list[list[str] | None]  # score view: the parts that must play (generate's ensembles)
    style: str | None
    primer_bars: int
    meter: object
    tempos: list[tuple[float, float]]


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
    def __init__(self, model, store: PieceStore, render: RenderConfig, primer_bars: int,
                 render_timeout_s: float = 60.0, max_renders: int = 2) -> None:
        self.model, self.store, self.render_cfg, self.primer_bars = model, store, render, primer_bars
        self.render_timeout_s = render_timeout_s
        self.vocab, self.session = model.vocab, facts(model)
        self.view = self.session.view
        self.device = next(model.parameters()).device
        self.pieces: dict[str, Piece] = {}  # kept pieces, for rendering on demand
        self._render_lock = threading.Lock()  # pyplot's state is global: one drawing at a time
        self._renders = asyncio.Semaphore(max_renders)
        self._drawing: dict[tuple[str, str], asyncio.Task] = {}  # the file each drawing in progress makes

    def plan(self, request: PieceRequest, primer: Path | None, primer_name: str = "primer") -> Plan:
        """Check, read the primer (if any), draw what the request leaves open, build the prompts.
        Whatever the checkpoint cannot honour is a :class:`RequestError`."""
        vocab, session = self.vocab, self.session
        settings = Settings(bars=request.bars, temperature=request.temperature, top_k=request.top_k,
                            top_p=request.top_p, seed=request.seed,
                            instruments=list(request.instruments) if request.instruments else None,
                            style=request.style)
        loaded: Primer | None = None
        try:
            check_settings(settings, 1, vocab, self.view)
            if primer is not None:
                loaded = load_primer(primer, vocab, self.primer_bars, session.instrument_key)
        except UserError as e:  # a primer's line names the upload's temporary path and a CLI fix
            message = str(e).replace(repr(str(primer)), repr(primer_name)).removesuffix("; pass primer=FILE.mid")
            raise RequestError(message) from None
        meter = loaded.meter if loaded else session.meter(request.style)
        tempos = loaded.tempos if loaded and loaded.tempos else [(0.0, float(session.qpm_median))]
        draw = dict(temperature=request.temperature, top_k=request.top_k, top_p=request.top_p,
                    seed=request.seed, view=self.view)
        style = request.style
        named = settings.instruments
        given = named or (sorted(loaded.parts if self.view == "score" else loaded.words) if loaded else None)
        if style is None and vocab.styles and not (self.view == "score" and given is None):
            style = self._style(draw_header(self.model, vocab.header_ids([]).tolist(), 1, True, False, **draw)[0])
        if self.view == "score":
            if given is None:  # the model draws the ensemble (and the style, unless given)
                prefix = vocab.header_ids([], style).tolist()
                head = draw_header(self.model, prefix, 1, style is None and bool(vocab.styles), True, **draw)[0]
                _, headers = bar_grid(meter, 0, vocab.config)
                prompts = [prefix + head + vocab.ids(headers[0]).tolist()]
                style = style or self._style(prompts[0])
            else:
                prompts = [score_prompt(vocab, given, meter, loaded, style)]
            return Plan(request, settings, prompts, named or [], [named], style,
                        loaded.bars if loaded else 0, meter, tempos)
        chosen = given or list(vocab.instruments)
        prompts = build_prompts(vocab, chosen, meter, loaded, style)
        return Plan(request, settings, prompts, chosen, [None] * len(chosen), style,
                    loaded.bars if loaded else 0, meter, tempos)

    def _style(self, ids: list[int]) -> str | None:
        """The style word of a header (``<bos> style_S ...``) or of a drawn header (``[style_S]``)."""
        a, b = self.vocab.blocks["style"]
        found = [i for i in ids[:2] if a <= i < b]
        return self.vocab.styles[found[0] - a] if found else None

    def job(self, plan: Plan) -> Job:
        """Requests share a batch when generate() can take them together: one length, one
        filter, one number of primer bars in the prompts."""
        return Job(key=(*plan.request.batch_key(), plan.primer_bars), rows=len(plan.prompts), work=plan)

    def run_batch(self, jobs: list[Job]) -> None:
        """Generate every job's prompts in one batch, then write and answer each piece."""
        plans: list[Plan] = [j.work for j in jobs]
        first = plans[0].request
        prompts, generators, ensembles = [], [], []
        for plan in plans:
            g = torch.Generator(device=self.device).manual_seed(plan.request.seed)
            prompts += plan.prompts
            generators += [g] * len(plan.prompts)
            ensembles += plan.ensembles
        [rows] = generate(self.model, prompts, 1, first.bars, first.temperature, first.top_k, first.top_p,
                          view=self.view, ensembles=ensembles if any(ensembles) else None, generators=generators)
        start = 0
        for job, plan in zip(jobs, plans, strict=True):
            n = len(plan.prompts)
            try:
                job.future.set_result(self.write(plan, rows[start : start + n]))
            except Exception as e:  # one piece failing to write must not fail the others
                job.future.set_exception(e)
            start += n

    def finish(self, plan: Plan, rows: list[list[int]]) -> Composition:
        """The request's rows -> its piece, decoded strictly as compose() decodes."""
        vocab, session = self.vocab, self.session
        if self.view == "score":
            ids = plan.prompts[0] + rows[0]
            head = header_parts(ids, vocab)
            order = plan.instruments + [k for k in head if k not in plan.instruments] if plan.instruments else head
            tracks, meter = score_to_tracks(ids, order, vocab, session, 0)
            bars = ids.count(vocab.index[BAR])
        else:
            tracks, meter = rows_to_tracks(rows, plan.prompts, plan.instruments, vocab, session, 0)
            bars = plan.primer_bars + plan.request.bars
        end_q = max([float(np.max(t.notes["onset"] + t.notes["duration"])) for t in tracks if len(t)] or [0.0])
        lines, _ = bar_grid(meter, bars, vocab.config)
        seconds = round(seconds_at(max(end_q, lines[-1] / vocab.config.resolution), plan.tempos), 3)
        return Composition(tracks, meter, plan.tempos, bars, seconds, plan.style,
                           ended=bars - plan.primer_bars < plan.request.bars, instruments=[t.name for t in tracks])

    def write(self, plan: Plan, rows: list[list[int]]) -> Piece:
        piece = self.finish(plan, rows)
        piece_id = self.store.new_id()
        write_midi(self.store.path(piece_id, "mid"), piece.tracks, piece.tempos, piece.meter.changes(self.vocab.config))
        self.store.added(piece_id)
        lines, _ = bar_grid(piece.meter, piece.bars, self.vocab.config)
        written = Piece(piece_id, plan.request.seed, piece, lines / self.vocab.config.resolution)
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
