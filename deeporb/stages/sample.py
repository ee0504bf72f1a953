"""The sample stage behind ``sample.py``: a checkpoint in, MIDI (+ piano roll, + WAV) out.

:class:`SampleConfig` is the one home of every sampling setting and its default; Hydra
composes ``sample.py``'s config from it (``configs/sample.yaml`` adds only Hydra's own
settings) and Python callers build one. :func:`run` is what the app does; :func:`sample`
loads, prompts (:mod:`deeporb.generation.prompts`), generates (:mod:`deeporb.generation.loop`)
and writes the files; the rest of this module turns generated rows into MIDI tracks.

Time signatures are fixed by the prompt (the primer's, else the checkpoint's commonest,
:meth:`deeporb.data.facts.SessionFacts.meter`) and never sampled, so the tracks of one
sample always share a meter. Every row decodes strictly: a failure is a sampler bug.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hydra.core.config_store import ConfigStore

from deeporb.checkpoints import facts, load_generator
from deeporb.data.facts import SessionFacts
from deeporb.encoding.words import GridNotes, Meter, Vocabulary, decode_words, pitch_word
from deeporb.errors import UserError
from deeporb.evaluation.compare import compare_samples, overlap_summary
from deeporb.evaluation.music_stats import format_comparison
from deeporb.generation.loop import generate
from deeporb.generation.prompts import bar_grid, build_prompts, load_primer
from deeporb.midi import Track, write_midi
from deeporb.model import LSTMGenerator
from deeporb.render import find_audio_tools, piano_roll, render_wav

# ---------------------------------------------------------------------------------------
# the settings


@dataclass
class RenderConfig:
    """What is drawn and heard beside each ``sample_NNN.mid``."""

    piano_roll: bool = True  # sample_NNN.png
    audio: bool = False  # sample_NNN.wav through FluidSynth
    soundfont: str | None = None  # None: /usr/share/sounds/sf2/FluidR3_GM.sf2 or another standard place
    fluidsynth: str = "fluidsynth"  # the FluidSynth program
    sample_rate: int = 44100


@dataclass
class SampleConfig:
    """``python sample.py KEY=VALUE ...``: every setting of the sample stage, with its default."""

    ckpt_path: str | None = None  # a .ckpt file, or a training run folder (its best checkpoint, else last.ckpt)
    num_samples: int = 4  # samples generated together in one batch
    bars: int = 16  # bars to generate (after the primer, when there is one)
    temperature: float = 1.0  # <= 0: greedy
    top_k: int = 0  # keep the k likeliest words (0: off)
    top_p: float = 0.95  # nucleus sampling (1.0: off)
    seed: int | None = None  # None: a fresh seed, recorded in samples.json and the PNG titles
    instruments: list[str] | None = None  # instrument keys; None: the primer's known ones, else all the model knows
    primer: str | None = None  # a MIDI file whose first bars start each instrument's part
    primer_bars: int = 4
    keep_primer: bool = True  # include the primer bars in the output
    tempo: float | None = None  # quarter notes per minute; None: the primer's, else the training median
    compare: bool = False  # music statistics of the samples vs the checkpoint's held-out test pieces
    device: str = "cpu"  # or cuda
    out_dir: str = "outputs/sample/${now:%Y-%m-%d}/${now:%H-%M-%S}"
    render: RenderConfig = field(default_factory=RenderConfig)


ConfigStore.instance().store(name="sample_schema", node=SampleConfig)


# ---------------------------------------------------------------------------------------
# from words to files


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


def shift_meter(meter: Meter, step: int) -> Meter:
    """The meter seen from grid step ``step`` on (which is a bar line)."""
    i = int(np.searchsorted(meter.starts, step, side="right")) - 1
    starts = [0] + [s - step for s in meter.starts[i + 1 :]]
    return Meter(starts, [meter.signatures[i], *meter.signatures[i + 1 :]])


def seconds_at(quarters: float, tempos: list[tuple[float, float]]) -> float:
    """Quarter-note time -> seconds through a tempo map."""
    total, q0, qpm = 0.0, 0.0, tempos[0][1] if tempos else 120.0
    for q, t in tempos[1:]:
        if q >= quarters:
            break
        total += (q - q0) * 60.0 / qpm
        q0, qpm = q, t
    return total + (quarters - q0) * 60.0 / qpm


@dataclass
class SampleResult:
    midi: Path
    instruments: list[str]
    notes: int
    bars: int
    pitch_range: tuple[int, int] | None
    seconds: float
    qpm: float
    time_signature: str
    tracks: list[Track] = field(repr=False, default_factory=list)
    png: Path | None = None
    wav: Path | None = None


def rows_to_tracks(
    rows: list[list[int]],
    prompts: list[list[int]],
    instruments: list[str],
    vocab: Vocabulary,
    session: SessionFacts,
    start_step: int,
) -> tuple[list[Track], Meter]:
    """Decode one sample's rows (strictly: a failure is a sampler bug) into MIDI tracks."""
    config = vocab.config
    tracks, meter = [], None
    for key, prompt, row in zip(instruments, prompts, rows, strict=True):
        words = vocab.decode_ids(prompt + row)
        grid, row_meter = decode_words(words, vocab, strict=True)
        meter = meter or row_meter
        if start_step:
            keep = grid.onset >= start_step
            grid = GridNotes(grid.onset[keep] - start_step, grid.duration[keep], grid.pitch[keep], grid.velocity_bin[keep])
        program, is_drum = session.instrument_program(key)
        tracks.append(Track(key, program, is_drum, tidy_notes(grid).to_quarters(config)))
    return tracks, shift_meter(meter, start_step) if start_step else meter


def sample(cfg: SampleConfig, model: LSTMGenerator | None = None) -> list[SampleResult]:
    """Load (unless ``model`` is given), prompt, generate, decode, write MIDI (+ PNG, + WAV)
    and ``samples.json`` into ``cfg.out_dir``."""
    render = cfg.render
    if cfg.num_samples < 1 or cfg.bars < 1:
        raise UserError(f"num_samples and bars must be at least 1 (got {cfg.num_samples}, {cfg.bars})")
    if not 0.0 < cfg.top_p <= 1.0 or cfg.top_k < 0:
        raise UserError(f"need 0 < top_p <= 1 and top_k >= 0 (got top_p={cfg.top_p}, top_k={cfg.top_k})")
    if cfg.tempo is not None and not 0 < float(cfg.tempo) <= 1000:
        raise UserError(f"tempo must be in quarter notes per minute, 0 < tempo <= 1000 (got {cfg.tempo})")
    if render.audio:
        find_audio_tools(render.soundfont, render.fluidsynth)  # fail before the work
    model = model if model is not None else load_generator(cfg.ckpt_path, cfg.device)
    vocab, session = model.vocab, facts(model)
    if not vocab.instruments:
        raise UserError("the checkpoint's vocabulary has no instruments to generate")
    unknown = [k for k in cfg.instruments or [] if k not in vocab.instruments]
    if unknown:
        raise UserError(
            f"unknown instrument {', '.join(map(repr, unknown))}; this model knows: {', '.join(vocab.instruments)}"
        )
    loaded = load_primer(cfg.primer, vocab, cfg.primer_bars, session.instrument_key) if cfg.primer else None
    chosen = list(dict.fromkeys(cfg.instruments or (sorted(loaded.words) if loaded else vocab.instruments)))
    meter = loaded.meter if loaded else session.meter()
    if cfg.tempo is not None:
        tempos = [(0.0, float(cfg.tempo))]
    elif loaded and loaded.tempos:
        tempos = loaded.tempos
    else:
        tempos = [(0.0, float(session.qpm_median))]
    start_step = loaded.end_step if loaded and not cfg.keep_primer else 0
    if start_step:
        start_q = start_step / vocab.config.resolution
        in_force = [t for q, t in tempos if q <= start_q][-1]
        tempos = [(0.0, in_force)]
    seed = cfg.seed if cfg.seed is not None else int(np.random.SeedSequence().entropy % 2**31)
    prompts = build_prompts(vocab, chosen, meter, loaded)
    generated = generate(model, prompts, cfg.num_samples, cfg.bars, cfg.temperature, cfg.top_k, cfg.top_p, seed)

    out_dir = Path(cfg.out_dir)
    results = []
    total_bars = cfg.bars + (loaded.bars if loaded and cfg.keep_primer else 0)
    for i, rows in enumerate(generated):
        tracks, out_meter = rows_to_tracks(rows, prompts, chosen, vocab, session, start_step)
        ts = out_meter.changes(vocab.config)
        midi = write_midi(out_dir / f"sample_{i:03d}.mid", tracks, tempos, ts)
        pitches = np.concatenate([t.notes["pitch"] for t in tracks])
        end_q = max([float(np.max(t.notes["onset"] + t.notes["duration"])) for t in tracks if len(t)] or [0.0])
        lines, _ = bar_grid(out_meter, total_bars, vocab.config)
        res = SampleResult(
            midi=midi,
            instruments=chosen,
            notes=int(len(pitches)),
            bars=total_bars,
            pitch_range=(int(pitches.min()), int(pitches.max())) if len(pitches) else None,
            seconds=round(seconds_at(max(end_q, lines[-1] / vocab.config.resolution), tempos), 3),
            qpm=tempos[0][1],
            time_signature=f"{ts[0][1]}/{ts[0][2]}",
            tracks=tracks,
        )
        if render.piano_roll:
            res.png = piano_roll(tracks, midi.with_suffix(".png"), title=f"{midi.name} (seed {seed})",
                                 bar_lines=lines / vocab.config.resolution)
        if render.audio:
            res.wav = render_wav(midi, midi.with_suffix(".wav"), render.soundfont, render.fluidsynth,
                                 render.sample_rate)
        results.append(res)
    summary = {
        "checkpoint": str(getattr(model, "checkpoint_path", cfg.ckpt_path)),
        "seed": seed,
        "instruments": chosen,
        "primer": str(loaded.path) if loaded else None,
        "primer_bars": loaded.bars if loaded else 0,
        "ignored_primer_instruments": loaded.ignored if loaded else [],
        "samples": [
            {"midi": r.midi.name, "notes": r.notes, "bars": r.bars, "seconds": r.seconds,
             "pitch_range": r.pitch_range, "qpm": r.qpm, "time_signature": r.time_signature}
            for r in results
        ],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "samples.json").write_text(json.dumps(summary, indent=1) + "\n")
    return results


def print_summary(results: list[SampleResult], out_dir: str | Path) -> None:
    """The closing table: one row per sample."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"samples -> {out_dir}")
    for col in ("sample", "instruments", "notes", "bars", "pitch range", "seconds"):
        table.add_column(col, justify="left" if col in ("sample", "instruments") else "right")
    for r in results:
        span = f"{pitch_word(r.pitch_range[0])} to {pitch_word(r.pitch_range[1])}" if r.pitch_range else "-"
        counts = ", ".join(f"{t.name} ({len(t)})" for t in r.tracks)
        table.add_row(r.midi.name, counts, str(r.notes), str(r.bars), span, f"{r.seconds:.1f}")
    Console().print(table)


def compare_with_test_split(results: list[SampleResult], session: SessionFacts, out_dir: str | Path) -> list[dict]:
    """``compare=true``: music statistics of the samples against the checkpoint's held-out
    test pieces. Prints the table, writes ``comparison.json`` and logs to wandb when a run
    is live (e.g. sampling from a notebook that started one)."""
    rows = compare_samples(results, session)
    plain = [{k: v for k, v in r.items() if not k.endswith("_hist")} for r in rows]
    summary = overlap_summary(rows)
    print(f"samples vs held-out test pieces (mean overlap: histograms {summary['histogram']:.3f}, "
          f"scalars {summary['scalar']:.3f})")
    print(format_comparison(rows))
    path = Path(out_dir) / "comparison.json"
    path.write_text(json.dumps({"summary": summary, "rows": plain}, indent=1, default=float) + "\n")
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.log({f"compare/{r['feature']}/{m}": r[m] for r in plain for m in ("overlap", "kl")}
                  | {f"compare/mean_overlap_{k}": v for k, v in summary.items()})
    return rows


def run(cfg: SampleConfig) -> list[SampleResult]:
    """What ``python sample.py`` does: sample, print the table, compare when asked."""
    results = sample(cfg)
    print_summary(results, cfg.out_dir)
    if cfg.compare:
        compare_with_test_split(results, facts(cfg.ckpt_path), cfg.out_dir)
    return results
