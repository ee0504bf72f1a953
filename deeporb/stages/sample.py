"""Generate music from a trained checkpoint: batched, grammar-constrained, optionally primed.

Every sample and every instrument is one row of a single batch that steps together, one word
at a time, carrying the LSTM state (the history is never fed again). Before each draw a
grammar mask is applied to the logits, so every row is a valid word sequence that
:func:`deeporb.encoding.words.decode_words` accepts with ``strict=True``; see :class:`Grammar`.

Rows start from a prompt fed once through the network: ``<bos> inst_KEY`` then the primer's
first bars (if any) and the header (``bar`` + time signature) of the first bar to write.
Time signatures are fixed by the prompt (primer or training statistics) and never sampled,
so the tracks of one sample always share a meter. This module never trains.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from deeporb.checkpoints import instrument_program, load_generator, resolve_checkpoint, session_info
from deeporb.encoding.words import (
    GridNotes,
    Meter,
    Vocabulary,
    decode_words,
    pitch_word,
)
from deeporb.errors import UserError
from deeporb.generation.loop import generate
from deeporb.generation.prompts import bar_grid, build_prompts, load_primer, session_meter
from deeporb.midi import Track, write_midi

# ---------------------------------------------------------------------------------------
# from words to files


def tidy_notes(grid: GridNotes) -> GridNotes:
    """Shorten a note where the same pitch starts again before it ends; drop exact repeats.

    Overlapping notes of one pitch on one channel are ambiguous in MIDI (which note-off ends
    which note-on): players cut or hang them. The grammar prevents repeats inside a chord;
    this also covers long notes overlapping a later onset.
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
    session: dict,
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
        program, is_drum = instrument_program(key, session)
        tracks.append(Track(key, program, is_drum, tidy_notes(grid).to_quarters(config)))
    return tracks, shift_meter(meter, start_step) if start_step else meter


def sample(
    ckpt_path: str | Path,
    out_dir: str | Path,
    num_samples: int = 4,
    bars: int = 16,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 0.95,
    seed: int | None = None,
    instruments: list[str] | None = None,
    primer: str | Path | None = None,
    primer_bars: int = 4,
    keep_primer: bool = True,
    tempo: float | None = None,
    render: dict | None = None,
    device: str = "cpu",
    model=None,
) -> list[SampleResult]:
    """The whole sample stage: load, prompt, generate, decode, write MIDI (+ PNG, + WAV)."""
    render = {"piano_roll": True, "audio": False, "soundfont": None, "fluidsynth": "fluidsynth",
              "sample_rate": 44100, **(render or {})}
    if num_samples < 1 or bars < 1:
        raise UserError(f"num_samples and bars must be at least 1 (got {num_samples}, {bars})")
    if not 0.0 < top_p <= 1.0 or top_k < 0:
        raise UserError(f"need 0 < top_p <= 1 and top_k >= 0 (got top_p={top_p}, top_k={top_k})")
    if tempo is not None and not 0 < float(tempo) <= 1000:
        raise UserError(f"tempo must be in quarter notes per minute, 0 < tempo <= 1000 (got {tempo})")
    if render["audio"]:
        from deeporb.render import find_audio_tools

        find_audio_tools(render["soundfont"], render["fluidsynth"])  # fail before the work
    model = model if model is not None else load_generator(ckpt_path, device)
    vocab, session = model.vocab, session_info(model)
    if not vocab.instruments:
        raise UserError("the checkpoint's vocabulary has no instruments to generate")
    if instruments is not None and isinstance(instruments, str):
        instruments = [instruments]
    unknown = [k for k in instruments or [] if k not in vocab.instruments]
    if unknown:
        raise UserError(
            f"unknown instrument {', '.join(map(repr, unknown))}; this model knows: {', '.join(vocab.instruments)}"
        )
    loaded = load_primer(primer, vocab, primer_bars, session["instrument_key"]) if primer else None
    chosen = list(dict.fromkeys(instruments or (sorted(loaded.words) if loaded else vocab.instruments)))
    meter = loaded.meter if loaded else session_meter(session, vocab.config)
    if tempo is not None:
        tempos = [(0.0, float(tempo))]
    elif loaded and loaded.tempos:
        tempos = loaded.tempos
    else:
        tempos = [(0.0, float(session["qpm_median"]))]
    start_step = loaded.end_step if loaded and not keep_primer else 0
    if start_step:
        start_q = start_step / vocab.config.resolution
        in_force = [t for q, t in tempos if q <= start_q][-1]
        tempos = [(0.0, in_force)]
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**31)
    prompts = build_prompts(vocab, chosen, meter, loaded)
    generated = generate(model, prompts, num_samples, bars, temperature, top_k, top_p, seed)

    out_dir = Path(out_dir)
    results = []
    total_bars = bars + (loaded.bars if loaded and keep_primer else 0)
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
        if render["piano_roll"]:
            from deeporb.render import piano_roll

            res.png = piano_roll(tracks, midi.with_suffix(".png"), title=f"{midi.name} (seed {seed})",
                                 bar_lines=lines / vocab.config.resolution)
        if render["audio"]:
            from deeporb.render import render_wav

            res.wav = render_wav(midi, midi.with_suffix(".wav"), render["soundfont"],
                                 render["fluidsynth"], render["sample_rate"])
        results.append(res)
    summary = {
        "checkpoint": str(getattr(model, "checkpoint_path", ckpt_path)),
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


def compare_with_test_split(results: list[SampleResult], ckpt_path: str | Path, out_dir: str | Path) -> list[dict]:
    """``compare=true``: music statistics of the samples against the checkpoint's held-out
    test pieces. Prints the table, writes ``comparison.json`` and logs to wandb when a run
    is live (e.g. sampling from a notebook that started one)."""
    import sys

    from deeporb.evaluation.likelihood import compare_samples, overlap_summary
    from deeporb.evaluation.music_stats import format_comparison

    rows = compare_samples(results, resolve_checkpoint(ckpt_path))
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


