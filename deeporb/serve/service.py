"""The model side of the server: plan a request, generate a batch of them, write each piece.

:meth:`Composer.plan` runs on a handler's thread pool: it checks the settings against the
checkpoint, reads the primer and builds the prompts (so a bad primer is a 400 before anything
queues). :meth:`Composer.run_batch` runs on the batcher's worker thread: one call of
:func:`deeporb.generation.loop.generate` for all the batch's prompts, each request drawing
from its own ``torch.Generator`` seeded with its seed, so a piece depends on its request
alone, not on what it was batched with. The steps are :func:`deeporb.generation.compose.compose`'s
(both views; the same prompts, checks and decoding), split at the one ``generate`` call that
requests share. Each piece's MIDI is written before its request is answered; the piano roll
and the WAV are drawn when first fetched (:meth:`Composer.render`), so clients that want only
MIDI never pay for them and the worker goes straight on to the next batch.
"""

from __future__ import annotations

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
from deeporb.render.audio import render_wav
from deeporb.render.roll import piano_roll
from deeporb.serve.batcher import Job
from deeporb.serve.fields import PieceRequest, RequestError
from deeporb.serve.pieces import PieceStore
from deeporb.stages.sample import RenderConfig


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
    def __init__(self, model, store: PieceStore, render: RenderConfig, primer_bars: int) -> None:
        self.model, self.store, self.render_cfg, self.primer_bars = model, store, render, primer_bars
        self.vocab, self.session = model.vocab, facts(model)
        self.view = self.session.view
        self.device = next(model.parameters()).device
        self.pieces: dict[str, Piece] = {}  # kept pieces, for rendering on demand
        self._render_lock = threading.Lock()  # pyplot's state is global: one drawing at a time

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
        lines, _ = bar_grid(piece.meter, piece.bars, self.vocab.config)
        written = Piece(piece_id, plan.request.seed, piece, lines / self.vocab.config.resolution)
        self.pieces[piece_id] = written
        for gone in [k for k in self.pieces if self.store.find(k, "mid") is None]:
            del self.pieces[gone]
        return written

    def render(self, piece_id: str, kind: str) -> Path | None:
        """The piece's file of this kind, drawn now if it is not yet (None: unknown or pruned)."""
        path = self.store.find(piece_id, kind)
        if path is None or path.is_file():
            return path
        piece = self.pieces.get(piece_id)
        if piece is None:
            return None
        with self._render_lock:
            if not path.is_file():  # drawn beside, then renamed: a reader never sees half a file
                draft = path.with_name(f".draft-{path.name}")
                if kind == "png":
                    piano_roll(piece.composition.tracks, draft, title=f"seed {piece.seed}", bar_lines=piece.bar_lines)
                else:
                    cfg = self.render_cfg
                    render_wav(self.store.path(piece_id, "mid"), draft, cfg.synth, cfg.soundfont, cfg.fluidsynth,
                               cfg.sample_rate)
                draft.replace(path)
        if self.store.find(piece_id, kind) is None:  # pruned while it was drawn
            path.unlink(missing_ok=True)
            return None
        return path
