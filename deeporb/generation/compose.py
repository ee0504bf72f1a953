"""Composing: a loaded model and per-request settings in, decoded pieces (MIDI tracks) out.

:func:`compose` is the whole generation path without files, so ``sample.py``, the sampling
callback and the server share it: it checks the settings against the checkpoint (its view,
instruments and styles), builds the prompts (:mod:`deeporb.generation.prompts`), lets the
model draw what the settings leave open (:func:`deeporb.generation.loop.draw_header`),
generates every sample in one batch (:func:`deeporb.generation.loop.generate`) and decodes
each row strictly (a failure is a sampler bug) into one :class:`~deeporb.midi.Track` per part.

The view is the checkpoint's (``SessionFacts.view``; older checkpoints: tracks):

* **score**: one row per sample, ``<bos> [style_S] inst_A inst_B ... bar ts_N/D ...``. The
  ensemble is the named ``instruments`` (exactly those play, each at least once: a decoding
  constraint on ``inst_`` words only, see :class:`deeporb.generation.masks.Grammar`), else the
  primer's parts, else drawn by the model (its header, then the meter's ``ts``). The model may
  end a piece with ``<eos>`` from ``min_bars`` on.
* **tracks**: one row per instrument, as the original (every part runs ``bars`` bars).

Time signatures are fixed by the prompt (the primer's, else the checkpoint's commonest) and
never sampled, so the parts of one sample always share a meter.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from deeporb.checkpoints import facts
from deeporb.data.facts import SessionFacts
from deeporb.encoding.fills import Gap, fill_prompt
from deeporb.encoding.grammar import View
from deeporb.encoding.score import decode_score
from deeporb.encoding.words import BAR, GridNotes, Meter, Vocabulary, decode_words
from deeporb.errors import UserError
from deeporb.generation.forced import Kept, kept_notes
from deeporb.generation.loop import draw_header, generate
from deeporb.generation.prompts import Primer, bar_grid, build_prompts, score_prompt
from deeporb.generation.refill import gap_of, refill_tracks
from deeporb.midi import Track

SHORT_BAR_QUARTERS = 1  # a bar this short or shorter makes `bars` mislead (see short_bar_warning)
# Sizes, checked before any work (issue 17). The loop keeps every word it draws until the end:
# rows (num_samples, times the parts in the tracks view) x bars x words a bar (20 to 100 in
# music, at most MAX_BAR_WORDS = 512), and takes about that many model steps in bars x words.
MAX_BARS = 1024  # 34 minutes of 4/4 at 120 qpm, minutes of CPU; more ran for hours before this
MAX_NUM_SAMPLES = 1024  # rows of one batch; more samples: run again with another seed
MAX_FILL_CANDIDATES = 16  # fills written per piece to draw one from (fill.candidates)
MAX_SAMPLE_BARS = 16_384  # num_samples x bars a run (16 x 1024, 1024 x 16): at most ~8.5M words a part
# tempo (quarter notes per minute): MIDI holds 60e6 / 0xFFFFFF = 3.58 up to 60e6 (1 us a quarter);
# from 4 a quarter lasts 15 s at most, and above 1000 notes blur into a buzz
MIN_TEMPO, MAX_TEMPO = 4.0, 1000.0


@dataclass
class Fill:
    """Which bars of which parts of the primer to write anew, the rest kept note for note
    (:mod:`deeporb.generation.refill`). Neither given: no fill (the primer is continued)."""

    parts: list[str] | None = None  # parts to write; one the primer lacks is added. None: every part of the primer
    bars: list[int] | None = None  # [first, last] bars of the primer, 1-based, inclusive. None: all its bars
    candidates: int = 1  # fills written per piece, one drawn by how likely the model finds the kept notes given each
    #   (a fill that keeps no notes in its gap writes one: nothing tells its candidates apart)

    @property
    def asked(self) -> bool:
        return self.parts is not None or self.bars is not None


@dataclass
class Settings:
    """The sampling settings of one request, declared once with their defaults.

    ``sample.py``'s config extends this record (:class:`deeporb.stages.sample.SampleConfig`),
    the service reads a request's fields into it (:mod:`deeporb.serve.fields`) and the training
    callback builds its config from it, so every setting and default lives here alone.
    """

    bars: int = 16  # most bars to write (after the primer), in the meter's bars (at most 1024)
    min_bars: int | None = None  # score view: the model may end a piece (<eos>) from this bar on; None: = bars
    temperature: float = 1.0  # <= 0 or below 1e-6 (draw.GREEDY_BELOW): greedy
    top_k: int = 0  # keep the k likeliest words (0: off)
    top_p: float = 0.95  # nucleus sampling (1.0: off)
    seed: int | None = None  # None: a fresh seed, recorded with the pieces
    instruments: list[str] | None = None  # exactly these play (score view: each at least once); None: the
    #   primer's known ones, else drawn by the model (score view) or all it knows (tracks view)
    style: str | None = None  # a style of the checkpoint (multi-session training); None: the model draws one
    primer_bars: int = 4  # the primer's first bars that open each piece (0 to 1024)
    keep_primer: bool = True  # include the primer bars in the pieces
    tempo: float | None = None  # quarter notes per minute (4 to 1000); None: the primer's, else the training median
    fill: Fill = field(default_factory=Fill)  # fill.parts / fill.bars: rewrite those of the primer (score view)

    def __post_init__(self) -> None:
        if isinstance(self.fill, dict):  # from JSON or asdict()
            self.fill = Fill(**self.fill)

    def seeded(self) -> Settings:
        """These settings with a seed: the one given, else a fresh one (so it can be reported)."""
        if self.seed is not None:
            return self
        return dataclasses.replace(self, seed=int(np.random.SeedSequence().entropy % 2**31))


@dataclass
class Composition:
    """One generated piece, decoded: what a MIDI file and its summary row are made of."""

    tracks: list[Track]  # one per part, in the order asked (named parts first), silent ones too
    meter: Meter  # as written (from the first written bar)
    tempos: list[tuple[float, float]]  # (quarter, qpm)
    bars: int  # bars written (the kept primer bars included)
    seconds: float
    style: str | None
    ended: bool = False  # the model ended it (<eos>) before `bars`
    instruments: list[str] = field(default_factory=list)  # the parts, as in ``tracks``

    @property
    def played(self) -> list[str]:
        """The parts that hold at least one note."""
        return [t.name for t in self.tracks if len(t)]

    @property
    def time_signature(self) -> str:
        n, d = self.meter.signatures[0]
        return f"{n}/{d}"


# ---------------------------------------------------------------------------------------
# words to tracks


def tidy_notes(grid: GridNotes) -> GridNotes:
    """Shorten a note where the same pitch starts again before it ends; drop exact repeats.

    Overlapping notes of one pitch on one channel are ambiguous in MIDI (which note-off ends
    which note-on): players cut or hang them. The grammar allows repeats inside a chord (real
    files have them), so they are dropped here; this also covers long notes overlapping a
    later onset.
    """
    if len(grid) == 0:
        return grid
    order = np.lexsort((-grid.duration, grid.onset, grid.pitch))
    on, dur, pitch, vel = (a[order].copy() for a in (grid.onset, grid.duration, grid.pitch, grid.velocity_bin))
    same = pitch[1:] == pitch[:-1]
    repeat = np.concatenate([[False], same & (on[1:] == on[:-1])])
    on, dur, pitch, vel = on[~repeat], dur[~repeat], pitch[~repeat], vel[~repeat]
    same = pitch[1:] == pitch[:-1]
    gap = on[1:] - on[:-1]
    cut = same & (on[:-1] + dur[:-1] > on[1:])
    dur[:-1][cut] = gap[cut]
    back = np.lexsort((vel, dur, pitch, on))
    return GridNotes(on[back], dur[back], pitch[back], vel[back])


def seconds_at(quarters: float, tempos: list[tuple[float, float]]) -> float:
    """Quarter-note time -> seconds through a tempo map."""
    total, q0, qpm = 0.0, 0.0, tempos[0][1] if tempos else 120.0
    for q, t in tempos[1:]:
        if q >= quarters:
            break
        total += (q - q0) * 60.0 / qpm
        q0, qpm = q, t
    return total + (quarters - q0) * 60.0 / qpm


def _track(key: str, grid: GridNotes, start_step: int, vocab: Vocabulary, session: SessionFacts) -> Track:
    if start_step:
        keep = grid.onset >= start_step
        grid = GridNotes(grid.onset[keep] - start_step, grid.duration[keep], grid.pitch[keep], grid.velocity_bin[keep])
    program, is_drum = session.instrument_program(key)
    return Track(key, program, is_drum, tidy_notes(grid).to_quarters(vocab.config))


def rows_to_tracks(
    rows: list[list[int]],
    prompts: list[list[int]],
    instruments: list[str],
    vocab: Vocabulary,
    session: SessionFacts,
    start_step: int,
) -> tuple[list[Track], Meter]:
    """Tracks view: one sample's rows (decoded strictly: a failure is a sampler bug) -> tracks."""
    tracks, meter = [], None
    for key, prompt, row in zip(instruments, prompts, rows, strict=True):
        grid, row_meter = decode_words(vocab.decode_ids(prompt + row), vocab, strict=True)
        meter = meter or row_meter
        tracks.append(_track(key, grid, start_step, vocab, session))
    return tracks, meter.after(start_step)


def score_to_tracks(
    ids: list[int], order: list[str], vocab: Vocabulary, session: SessionFacts, start_step: int
) -> tuple[list[Track], Meter]:
    """Score view: one row (prompt + generated, decoded strictly) -> a track per part in ``order``."""
    parts, meter = decode_score(vocab.decode_ids(ids), vocab, strict=True)
    tracks = [_track(key, parts[key], start_step, vocab, session) for key in order]
    return tracks, meter.after(start_step)


def short_bar_warning(meter: Meter, bars: int, vocab: Vocabulary) -> str | None:
    """One line when a bar of ``meter`` lasts one quarter note or less, else None.

    No common meter is that short (2/4 lasts 2 quarters, 3/8 1.5), so such a bar is nearly
    always a file's placeholder signature (issue 14: pop songs in 4/4 that carry 1/4), and
    ``bars=16`` then means only 16 quarters of music.
    """
    config = vocab.config
    short = [(n, d) for n, d in meter.signatures if config.bar_steps(n, d) <= SHORT_BAR_QUARTERS * config.resolution]
    if not short:
        return None
    n, d = short[0]
    quarters = bars * config.bar_steps(n, d) / config.resolution
    return (f"warning: the meter is {n}/{d}, so bars={bars} is only {quarters:g} quarter notes; `bars` counts "
            f"the meter's bars (raise bars, or sample with a primer in the music's real meter)")


# ---------------------------------------------------------------------------------------
# checks


def check_sizes(settings: Settings, num_samples: int) -> None:
    """One :class:`UserError` for the first size or number out of bounds: what needs no
    checkpoint, so a caller can refuse before loading one (:func:`check_settings` repeats it)."""
    if not 1 <= settings.bars <= MAX_BARS:
        raise UserError(f"bars must be between 1 and {MAX_BARS:,} (got {settings.bars:,}); "
                        f"{MAX_BARS:,} bars of 4/4 at 120 qpm last 34 minutes")
    if not 1 <= num_samples <= MAX_NUM_SAMPLES:
        raise UserError(f"num_samples must be between 1 and {MAX_NUM_SAMPLES:,} (got {num_samples:,}); "
                        "for more, run again with another seed")
    if not 1 <= settings.fill.candidates <= MAX_FILL_CANDIDATES:
        raise UserError(f"fill.candidates must be between 1 and {MAX_FILL_CANDIDATES} (got {settings.fill.candidates}); "
                        "1 writes one fill per piece")
    each = settings.fill.candidates if settings.fill.asked else 1  # rows a piece takes
    if num_samples * each * settings.bars > MAX_SAMPLE_BARS:
        fits = MAX_SAMPLE_BARS // (settings.bars * each)
        runs = -(-num_samples // max(fits, 1))
        product = "num_samples x bars" if each == 1 else "num_samples x fill.candidates x bars"
        raise UserError(f"{product} = {num_samples * each * settings.bars:,} is over {MAX_SAMPLE_BARS:,} bars a run; "
                        f"split the work into {runs} runs of at most num_samples={fits}, each with its own seed")
    if not math.isfinite(float(settings.temperature)):
        raise UserError(f"temperature must be a finite number (got {settings.temperature}); "
                        "0 or less (or below 1e-6) is greedy")
    if settings.tempo is not None and not MIN_TEMPO <= float(settings.tempo) <= MAX_TEMPO:
        raise UserError(f"tempo must be between {MIN_TEMPO:g} and {MAX_TEMPO:g} quarter notes per minute "
                        f"(got {settings.tempo}); null: the primer's, else the training median")


def check_settings(settings: Settings, num_samples: int, vocab: Vocabulary, view: View) -> None:
    """One :class:`UserError` for the first setting out of bounds (:func:`check_sizes`) or that
    this checkpoint cannot honour."""
    check_sizes(settings, num_samples)
    if settings.min_bars is not None and not 1 <= settings.min_bars <= settings.bars:
        raise UserError(f"min_bars must be between 1 and bars={settings.bars} (got {settings.min_bars}); "
                        "null means bars")
    if settings.min_bars is not None and settings.min_bars < settings.bars and view != View.SCORE:
        raise UserError("min_bars needs a score-view checkpoint: this one was trained in the tracks view, where "
                        "each part is its own sequence and cannot end the piece; leave min_bars=null")
    if not 0.0 < settings.top_p <= 1.0 or settings.top_k < 0:
        raise UserError(f"need 0 < top_p <= 1 and top_k >= 0 (got top_p={settings.top_p}, top_k={settings.top_k})")
    if not vocab.instruments:
        raise UserError("the checkpoint's vocabulary has no instruments to generate")
    unknown = [k for k in settings.instruments or [] if k not in vocab.instruments]
    if unknown:
        raise UserError(
            f"unknown instrument {', '.join(map(repr, unknown))}; this model knows: {', '.join(vocab.instruments)}"
        )
    if settings.instruments is not None and not settings.instruments:
        raise UserError(f"instruments=[] names no part; name some of: {', '.join(vocab.instruments)} (or null)")
    if settings.style is not None and settings.style not in vocab.styles:
        if vocab.styles:
            raise UserError(f"unknown style {settings.style!r}; this checkpoint knows: {', '.join(vocab.styles)}")
        raise UserError(f"style={settings.style!r}, but this checkpoint was trained without styles "
                        "(one session); leave style=null")


def can_fill(vocab: Vocabulary, view: View) -> bool:
    """Whether a checkpoint writes fills: a score-view one trained with fill examples."""
    return view == View.SCORE and vocab.fills


def check_can_fill(vocab: Vocabulary, view: View) -> None:
    """One :class:`UserError` unless the checkpoint can fill (:func:`can_fill`)."""
    if not can_fill(vocab, view):
        raise UserError("this checkpoint cannot fill: it was trained without fill examples (data.fill_share=0, "
                        "or the tracks view); train a score-view model with data.fill_share above 0")


def layout(
    settings: Settings, session: SessionFacts, primer: Primer | None, vocab: Vocabulary
) -> tuple[list[tuple[float, float]], int]:
    """The output's tempo map and the first grid step written, known before any generation
    (the meter waits for the style: :func:`plan`)."""
    if settings.tempo is not None:
        tempos = [(0.0, float(settings.tempo))]
    elif primer and primer.tempos:
        tempos = primer.tempos
    else:
        tempos = [(0.0, float(session.qpm_median))]
    start_step = primer.end_step if primer and not settings.keep_primer else 0
    if start_step:
        start_q = start_step / vocab.config.resolution
        tempos = [(0.0, [t for q, t in tempos if q <= start_q][-1])]
    return tempos, start_step


# ---------------------------------------------------------------------------------------
# the path: plan -> generate -> finish


@dataclass
class Plan:
    """A checked request, ready to generate: its prompts, and how its rows become pieces.

    Everything the model chooses before the body (a style, a score's ensemble) is drawn
    here, and each piece's meter follows its style, so a drawn style writes in its own meter.
    """

    settings: Settings  # its seed always set
    view: View
    prompts: list[list[int]]  # score: one per piece; tracks: one per part of each piece, piece by piece
    ensembles: list[list[str] | None]  # per prompt: the parts that play, each at least once (score view, named parts)
    parts: list[str]  # tracks: each piece's parts, in its prompts' order; score: the named parts (None: [])
    styles: list[str | None]  # per piece
    meters: list[Meter]  # per piece, from the prompt's first bar: the style's meter, or the primer's
    tempos: list[tuple[float, float]]
    primer_bars: int
    start_step: int  # the first grid step written (the primer's end when its bars are not kept)
    gap: Gap | None = None  # a fill's: what the rows write (one bar per hole), instead of bars after the primer
    primer: Primer | None = None  # a fill's primer, which the written gap goes into
    kept: Kept | None = None  # what a fill keeps: its notes given word for word (forced.kept_notes)
    required: list[str] | None = None  # a fill's added parts: each must play, the others kept as the prompt has them

    @property
    def pieces(self) -> int:
        return len(self.styles)

    def longest_seconds(self, config) -> float:
        """How long the pieces last when every bar asked is written (kept primer bars too; notes
        ringing past the last bar line aside): the render limit is checked on this before any
        generation, not on a WAV after it."""
        after = 0 if self.gap else self.settings.bars  # a fill writes inside the primer
        ends = [int(bar_grid(m, self.primer_bars + after, config)[0][-1]) for m in self.meters]
        return seconds_at((max(ends) - self.start_step) / config.resolution, self.tempos)

    def batch_key(self) -> tuple:
        """Plans with equal keys generate in one batch: the loop takes one length, one filter
        and one number of prompt bars for all rows (seeds, parts and styles may differ)."""
        s = self.settings
        return (self.view, *self.bars, s.temperature, s.top_k, s.top_p, self.primer_bars, self.gap is not None)

    @property
    def bars(self) -> tuple[int, int | None]:
        """(bars, min_bars) the loop writes: a fill's holes, exactly; else the settings'."""
        if self.gap is not None:
            return len(self.gap.bars), len(self.gap.bars)
        return self.settings.bars, self.settings.min_bars


def plan(model, settings: Settings, num_samples: int = 1, primer: Primer | None = None) -> Plan:
    """Check ``settings`` against the model, draw what they leave open, build the prompts.
    ``primer`` from :func:`deeporb.generation.prompts.load_primer`; a seed of None gets a fresh one
    (``plan.settings.seed`` says which)."""
    settings = settings.seeded()
    vocab, session = model.vocab, facts(model)
    view = session.view
    check_settings(settings, num_samples, vocab, view)
    named = list(dict.fromkeys(settings.instruments)) if settings.instruments else None
    tempos, start_step = layout(settings, session, primer, vocab)
    draw = dict(temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p,
                seed=settings.seed, view=view)
    draw_style = bool(vocab.styles) and settings.style is None
    a, b = vocab.blocks["style"]

    def style_in(ids: list[int]) -> str | None:
        found = [i for i in ids[:2] if a <= i < b]
        return vocab.styles[found[0] - a] if found else None

    def meter_of(style: str | None) -> Meter:  # chosen once the style is known
        return primer.meter if primer else session.meter(style)

    def first_bar(style: str | None) -> list[int]:
        _, headers = bar_grid(meter_of(style), 0, vocab.config)
        return vocab.ids(headers[0]).tolist()

    def styles_drawn() -> list[str | None]:
        if not draw_style:
            return [settings.style] * num_samples
        heads = draw_header(model, vocab.header_ids([]).tolist(), num_samples, True, False, **draw)
        return [style_in(h) for h in heads]

    parts = named or []
    if settings.fill.asked:  # the model writes the gap after reading the whole primer around it
        check_can_fill(vocab, view)
        gap = gap_of(settings.fill, primer, vocab)
        styles = styles_drawn()
        prompts = [fill_prompt(primer.parts, primer.meter, vocab, gap, s, primer.bars) for s in styles]
        added = [k for k in gap.parts if k not in primer.parts]  # each must play (the kept ones may rest)
        kept = kept_notes(primer.parts, primer.meter, vocab, gap)
        return Plan(settings, view, prompts, [None] * len(prompts), [], styles,
                    [primer.meter] * len(styles), primer.tempos or tempos, primer.bars, 0, gap, primer, kept, added or None)
    if view == View.SCORE:
        given = named or (sorted(primer.parts) if primer else None)
        if given is None:  # the model draws the ensemble (and the style, unless given)
            prefix = vocab.header_ids([], settings.style).tolist()
            heads = draw_header(model, prefix, num_samples, draw_style, True, **draw)
            styles = [settings.style or style_in(h) for h in heads]
            prompts = [prefix + h + first_bar(s) for h, s in zip(heads, styles, strict=True)]
        else:
            styles = styles_drawn()
            prompts = [score_prompt(vocab, given, meter_of(s), primer, s) for s in styles]
        ensembles = [named] * len(prompts)
    else:
        parts = named or (sorted(primer.words) if primer else list(vocab.instruments))
        styles = styles_drawn()
        prompts = [p for s in styles for p in build_prompts(vocab, parts, meter_of(s), primer, s)]
        ensembles = [None] * len(prompts)
    return Plan(settings, view, prompts, ensembles, parts, styles, [meter_of(s) for s in styles], tempos,
                primer.bars if primer else 0, start_step)


def generate_plans(model, plans: list[Plan]) -> list[list[list[int]]]:
    """Every plan's rows in one batch (plans of one :meth:`Plan.batch_key`), each plan drawing
    from its own generator seeded with its seed: a piece depends on its plan alone, not on
    what it was batched with. -> per plan, its rows (generated word ids, prompt excluded)."""
    s = plans[0].settings
    if any(p.batch_key() != plans[0].batch_key() for p in plans):
        raise ValueError("plans generated together must share one batch_key()")
    device = next(model.parameters()).device
    prompts, generators, ensembles, required, kept = [], [], [], [], []
    plan_generators = [torch.Generator(device=device).manual_seed(int(p.settings.seed)) for p in plans]
    for p, g in zip(plans, plan_generators, strict=True):
        n = candidates(p)
        prompts += [q for q in p.prompts for _ in range(n)]
        generators += [g] * (len(p.prompts) * n)
        ensembles += [e for e in p.ensembles for _ in range(n)]
        required += [p.required] * (len(p.prompts) * n)
        kept += [p.kept] * (len(p.prompts) * n)
    bars, min_bars = plans[0].bars
    weights: list[float] | None = [] if any(candidates(p) > 1 for p in plans) else None
    [rows] = generate(model, prompts, 1, bars, s.temperature, s.top_k, s.top_p, view=plans[0].view,
                      min_bars=min_bars, ensembles=ensembles if any(ensembles) else None, generators=generators,
                      required=required if any(required) else None, kept=kept if any(kept) else None,
                      weights=weights)
    out, start = [], 0
    for p, g in zip(plans, plan_generators, strict=True):
        n = candidates(p)
        chosen = []
        for first in range(start, start + len(p.prompts) * n, n):
            pick = 0
            if n > 1:  # one of the piece's fills, drawn by how likely the model finds its kept notes
                w = torch.tensor(weights[first : first + n], dtype=torch.float64, device=device)
                pick = int(torch.multinomial(torch.softmax(w, 0), 1, generator=g))
            chosen.append(rows[first + pick])
        out.append(chosen)
        start += len(p.prompts) * n
    return out


def candidates(plan: Plan) -> int:
    """Fills written for each of a plan's pieces: ``fill.candidates`` where the fill keeps notes
    inside its gap (their likelihood is what tells the fills apart), else 1."""
    return plan.settings.fill.candidates if plan.kept is not None and any(plan.kept.events) else 1


def finish(model, plan: Plan, rows: list[list[int]]) -> list[Composition]:
    """A plan's generated rows -> its pieces, each row decoded strictly (a failure is a sampler bug)."""
    vocab, session, settings = model.vocab, facts(model), plan.settings
    nprimer = plan.primer_bars
    pieces: list[tuple[list[Track], Meter, int]] = []  # tracks, meter, bars written (primer's too)
    if plan.gap is not None:  # the primer, its gap written anew
        programs = {k: session.instrument_program(k) for k in plan.gap.parts}
        for prompt, row in zip(plan.prompts, rows, strict=True):
            written, _ = decode_score(vocab.decode_ids(prompt + row), vocab, strict=True)
            written = {k: tidy_notes(g) for k, g in written.items()}
            tracks = refill_tracks(plan.primer, plan.gap, written, vocab, programs, settings.fill.parts)
            pieces.append((tracks, plan.primer.meter, nprimer))
        nprimer = 0  # every bar is the piece's: none was asked after the primer
    elif plan.view == View.SCORE:
        for prompt, row in zip(plan.prompts, rows, strict=True):
            head = header_parts(prompt + row, vocab)
            if plan.parts:  # the named parts first, then the primer's (only where its bars are kept)
                order = plan.parts + ([k for k in head if k not in plan.parts] if settings.keep_primer else [])
            else:
                order = head
            tracks, meter = score_to_tracks(prompt + row, order, vocab, session, plan.start_step)
            pieces.append((tracks, meter, (prompt + row).count(vocab.index[BAR])))
    else:
        k = len(plan.parts)
        for i in range(plan.pieces):
            these = slice(i * k, (i + 1) * k)
            tracks, meter = rows_to_tracks(rows[these], plan.prompts[these], plan.parts, vocab, session,
                                           plan.start_step)
            pieces.append((tracks, meter, nprimer + settings.bars))
    out = []
    for (tracks, meter, written), style in zip(pieces, plan.styles, strict=True):
        bars = written - (nprimer if plan.start_step else 0)
        end_q = max([float(np.max(t.notes["onset"] + t.notes["duration"])) for t in tracks if len(t)] or [0.0])
        lines, _ = bar_grid(meter, bars, vocab.config)
        seconds = round(seconds_at(max(end_q, lines[-1] / vocab.config.resolution), plan.tempos), 3)
        out.append(Composition(tracks, meter, plan.tempos, bars, seconds, style,
                               ended=plan.gap is None and written - nprimer < settings.bars,
                               instruments=[t.name for t in tracks]))
    return out


def compose(model, settings: Settings, num_samples: int, primer: Primer | None = None) -> list[Composition]:
    """``num_samples`` pieces from a loaded model (no files written): plan, generate, finish."""
    planned = plan(model, settings, num_samples, primer)
    return finish(model, planned, generate_plans(model, [planned])[0])


def header_parts(ids: list[int], vocab: Vocabulary) -> list[str]:
    """The parts a score's header names (the ``inst_`` words before its first ``bar``), ascending."""
    a, b = vocab.blocks["inst"]
    head = ids[: ids.index(vocab.index[BAR])] if vocab.index[BAR] in ids else ids
    return [vocab.instruments[i - a] for i in head if a <= i < b]
