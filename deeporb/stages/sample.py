"""The sample stage behind ``sample.py``: a checkpoint in, MIDI (+ piano roll, + WAV) out.

:class:`SampleConfig` is the sampling settings' record (:class:`deeporb.generation.compose.Settings`,
where each default lives) plus what this stage adds; Hydra composes ``sample.py``'s config
from it (``configs/sample.yaml`` adds only Hydra's own settings) and Python callers build one. :func:`run` is what the app does; :func:`sample`
loads the model and the primer, composes the pieces (:mod:`deeporb.generation.compose`, plan -> generate -> finish:
prompts, the batched loop, strict decoding, in either view) and writes the files.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
from hydra.core.config_store import ConfigStore

from deeporb.checkpoints import checkpoint_or_default, facts, load_generator
from deeporb.data.facts import SessionFacts
from deeporb.encoding.words import pitch_word
from deeporb.evaluation.compare import compare_form_samples, compare_samples, overlap_summary
from deeporb.evaluation.form import form_piece, format_form, json_ready, piece_form, summarize_form
from deeporb.evaluation.music_stats import format_comparison
from deeporb.fileio import claim_folder
from deeporb.generation.compose import (
    Settings,
    candidates,
    check_settings,
    check_sizes,
    finish,
    generate_plans,
    plan,
    short_bar_warning,
)
from deeporb.generation.prompts import MAX_PRIMER_BARS, bar_grid, check_primer_bars, load_primer
from deeporb.midi import Track, write_midi
from deeporb.model import LSTMGenerator
from deeporb.render.audio import (
    BUILTIN_RATE,
    MAX_SECONDS,
    check_audio,
    check_render_length,
    render_wav,
)
from deeporb.render.musicxml import write_musicxml
from deeporb.render.page import PAGE, write_page
from deeporb.render.roll import piano_roll

# ---------------------------------------------------------------------------------------
# the settings


@dataclass
class RenderConfig:
    """What is drawn and heard beside each ``sample_NNN.mid``."""

    piano_roll: bool = True  # sample_NNN.png
    audio: bool = False  # sample_NNN.wav
    synth: str = "builtin"  # builtin (pip's midirenderer + TimGM6mb.sf2, no system package) or fluidsynth
    soundfont: str | None = None  # a .sf2; None: TimGM6mb.sf2 (fluidsynth: a system GM soundfont first)
    fluidsynth: str = "fluidsynth"  # the FluidSynth program (render.synth=fluidsynth)
    sample_rate: int = BUILTIN_RATE  # Hz; the builtin synthesizer's own 48000 needs no resampling
    max_seconds: float = MAX_SECONDS  # longest piece rendered (600 s: a 115 MB WAV); a longer one is refused
    #   before generating when the bars asked last longer at the tempo, else before writing
    page: bool = True  # index.html: every sample's piano roll, player, MIDI link and statistics
    musicxml: bool = False  # sample_NNN.musicxml: the score (named parts, key, meter) for notation programs


@dataclass
class SampleConfig(Settings):
    """``python sample.py KEY=VALUE ...``: the sampling settings (:class:`Settings`: bars,
    min_bars, temperature, top_k, top_p, seed, instruments, style, primer_bars, keep_primer,
    tempo, fill.parts, fill.bars, fill.candidates, each with its default there) and what the stage adds around them."""

    ckpt_path: str | None = None  # a .ckpt file, a training run folder (its best checkpoint, else last.ckpt), or
    #   pretrained:NAME (a bundled model); None: sample.py uses pretrained:bach_chorales and says so
    num_samples: int = 4  # samples generated together in one batch (at most 1024, and num_samples x bars 16384)
    primer: str | None = None  # a MIDI file whose first bars (primer_bars) start each piece; with fill.*, the
    #   piece whose bars and parts are written anew (all its bars are read)
    compare: bool = False  # music statistics of the samples vs the checkpoint's held-out test pieces
    device: str = "cpu"  # or cuda
    out_dir: str = "outputs/sample/${now:%Y-%m-%d}/${now:%H-%M-%S}"
    title: str | None = None  # the page's heading (e.g. which model made the pieces); None: "DeepOrb samples: FOLDER"
    render: RenderConfig = field(default_factory=RenderConfig)


ConfigStore.instance().store(name="sample_schema", node=SampleConfig)


# ---------------------------------------------------------------------------------------
# from pieces to files


@dataclass
class SampleResult:
    midi: Path
    instruments: list[str]
    notes: int
    bars: int  # bars written (the kept primer bars included): fewer than asked when the model ended the piece
    pitch_range: tuple[int, int] | None
    seconds: float
    qpm: float
    time_signature: str
    tracks: list[Track] = field(repr=False, default_factory=list)
    style: str | None = None
    played: list[str] = field(default_factory=list)  # the parts holding at least one note
    png: Path | None = None
    wav: Path | None = None
    musicxml: Path | None = None
    form: dict = field(repr=False, default_factory=dict)  # deeporb.evaluation.form.piece_form figures


def settings_of(cfg: SampleConfig) -> Settings:
    """The sampling settings of the app's config (a fresh seed when it has none)."""
    return Settings(**{f.name: getattr(cfg, f.name) for f in fields(Settings)}).seeded()


def sample(cfg: SampleConfig, model: LSTMGenerator | None = None) -> list[SampleResult]:
    """Load (unless ``model`` is given), compose (:mod:`deeporb.generation.compose`: plan, generate, finish),
    write MIDI (+ PNG, + WAV) and ``samples.json`` into ``cfg.out_dir``: a new or empty folder,
    or one DeepOrb made for samples (:func:`deeporb.fileio.claim_folder`); anything else is refused."""
    render = cfg.render
    settings = settings_of(cfg)
    seed = settings.seed
    check_sizes(settings, cfg.num_samples)  # every size bounded before any work (issue 17)
    if cfg.primer:
        check_primer_bars(cfg.primer_bars)
    if render.audio:
        check_audio(render.synth, render.soundfont, render.fluidsynth)  # fail before the work
        check_render_length(0.0, render.max_seconds)  # the limit itself is a number above 0
    model = model if model is not None else load_generator(cfg.ckpt_path, cfg.device)
    vocab, session = model.vocab, facts(model)
    check_settings(settings, cfg.num_samples, vocab, session.view)  # before reading a primer
    primer_bars = MAX_PRIMER_BARS if settings.fill.asked else cfg.primer_bars  # a fill reads the whole primer
    loaded = load_primer(cfg.primer, vocab, primer_bars, session.instrument_key) if cfg.primer else None
    if loaded and loaded.cut and settings.fill.asked:
        print(f"warning: the primer has notes after its first {MAX_PRIMER_BARS:,} bars; a fill reads those bars "
              "and its pieces hold only them", file=sys.stderr)
    planned = plan(model, settings, cfg.num_samples, loaded)
    if settings.fill.candidates > 1 and candidates(planned) == 1:
        print(f"warning: fill.candidates={settings.fill.candidates} writes one fill a piece here: the fill keeps no "
              "notes in its gap, and the candidates are told apart by those", file=sys.stderr)
    if render.audio:  # the bars asked at the tempo: a piece too long to hear is refused unwritten
        check_render_length(planned.longest_seconds(vocab.config), render.max_seconds)
    out_dir = claim_folder(cfg.out_dir, "samples")  # before composing: never over files DeepOrb did not write
    pieces = finish(model, planned, generate_plans(model, [planned])[0])
    if render.audio:  # notes may ring past the last bar: still before writing any file
        check_render_length(max(p.seconds for p in pieces), render.max_seconds)
    warning = short_bar_warning(pieces[0].meter, cfg.bars, vocab)
    if warning:
        print(warning, file=sys.stderr)

    results = []
    for i, piece in enumerate(pieces):
        tracks = piece.tracks
        ts = piece.meter.changes(vocab.config)
        midi = write_midi(out_dir / f"sample_{i:03d}.mid", tracks, piece.tempos, ts)
        pitches = np.concatenate([t.notes["pitch"] for t in tracks])
        res = SampleResult(
            midi=midi,
            instruments=piece.instruments,
            notes=int(len(pitches)),
            bars=piece.bars,
            pitch_range=(int(pitches.min()), int(pitches.max())) if len(pitches) else None,
            seconds=piece.seconds,
            qpm=piece.tempos[0][1],
            time_signature=piece.time_signature,
            tracks=tracks,
            style=piece.style,
            played=piece.played,
        )
        lines, _ = bar_grid(piece.meter, piece.bars, vocab.config)
        res.form = piece_form(form_piece(tracks, bar_lines=lines / vocab.config.resolution),
                              resolution=vocab.config.resolution)
        if render.piano_roll:
            res.png = piano_roll(tracks, midi.with_suffix(".png"), title=f"{midi.name} (seed {seed})",
                                 bar_lines=lines / vocab.config.resolution)
        if render.audio:
            res.wav = render_wav(midi, midi.with_suffix(".wav"), render.synth, render.soundfont,
                                 render.fluidsynth, render.sample_rate, max_seconds=render.max_seconds)
        if render.musicxml:
            res.musicxml = write_musicxml(midi.with_suffix(".musicxml"), tracks, piece.tempos, ts,
                                          vocab.config.resolution, end=lines[-1] / vocab.config.resolution)
        results.append(res)
    summary = {
        "checkpoint": str(getattr(model, "checkpoint_path", cfg.ckpt_path)),
        "view": session.view,
        "seed": seed,
        "settings": asdict(settings),  # the whole record, so the pieces can be made again
        "instruments": sorted({k for r in results for k in r.instruments}, key=lambda k: (
            k not in (cfg.instruments or []), (cfg.instruments or []).index(k) if k in (cfg.instruments or []) else k)),
        "primer": str(loaded.path) if loaded else None,
        "primer_bars": loaded.bars if loaded else 0,
        "ignored_primer_instruments": loaded.ignored if loaded else [],
        "bars_asked": cfg.bars,
        "min_bars": cfg.min_bars if cfg.min_bars is not None else cfg.bars,
        "warning": warning,
        "samples": [
            {"midi": r.midi.name, "notes": r.notes, "bars": r.bars, "seconds": r.seconds,
             "pitch_range": r.pitch_range, "qpm": r.qpm, "time_signature": r.time_signature,
             "style": r.style, "instruments": r.instruments, "played": r.played, "form": json_ready(r.form)}
            for r in results
        ],
        "form": json_ready(summarize_form([r.form for r in results])),  # the set's form/* figures
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "samples.json").write_text(json.dumps(summary, indent=1) + "\n")
    if render.page:
        write_page(out_dir, results, {k: summary[k] for k in (
            "checkpoint", "view", "seed", "instruments", "primer", "primer_bars", "warning")}, title=cfg.title)
    return results


def print_summary(results: list[SampleResult], out_dir: str | Path) -> None:
    """The closing table: one row per sample."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"samples -> {out_dir}")
    styled = any(r.style for r in results)
    cols = ("sample", *(("style",) if styled else ()), "instruments", "notes", "bars", "meter", "pitch range", "seconds")
    for col in cols:
        table.add_column(col, justify="left" if col in ("sample", "style", "instruments") else "right")
    for r in results:
        span = f"{pitch_word(r.pitch_range[0])} to {pitch_word(r.pitch_range[1])}" if r.pitch_range else "-"
        counts = ", ".join(f"{t.name} ({len(t)})" for t in r.tracks)
        table.add_row(r.midi.name, *((r.style or "-",) if styled else ()), counts, str(r.notes), str(r.bars),
                      r.time_signature, span, f"{r.seconds:.1f}")
    Console().print(table)


def compare_with_test_split(results: list[SampleResult], session: SessionFacts, out_dir: str | Path) -> list[dict]:
    """``compare=true``: music statistics of the samples against the checkpoint's held-out
    test pieces, and their form beside the whole test pieces. Prints the tables, writes ``comparison.json`` and logs to wandb when a run
    is live (e.g. sampling from a notebook that started one)."""
    rows = compare_samples(results, session)
    plain = [{k: v for k, v in r.items() if not k.endswith("_hist")} for r in rows]
    summary = overlap_summary(rows)
    print(f"samples vs held-out test pieces (mean overlap: histograms {summary['histogram']:.3f}, "
          f"scalars {summary['scalar']:.3f})")
    print(format_comparison(rows))
    form = compare_form_samples(results, session)  # beside the whole held-out pieces, not excerpts
    print(f"form: samples vs whole held-out test pieces\n{format_form(form)}")
    path = Path(out_dir) / "comparison.json"
    path.write_text(json.dumps({"summary": summary, "rows": plain, "form": form}, indent=1, default=float) + "\n")
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.log({f"compare/{r['feature']}/{m}": r[m] for r in plain for m in ("overlap", "kl")}
                  | {f"compare/mean_overlap_{k}": v for k, v in summary.items()}
                  | {f"compare/{k}/{side}": v for side in ("samples", "reference") for k, v in form[side].items()}
                  | {"compare/form/length_overlap": form["length_overlap"]})
    return rows


def run(cfg: SampleConfig) -> list[SampleResult]:
    """What ``python sample.py`` does: sample (from the default bundled model when no ``ckpt_path``
    is given), print the table, compare when asked."""
    cfg = replace(cfg, ckpt_path=checkpoint_or_default(cfg.ckpt_path))
    results = sample(cfg)
    print_summary(results, cfg.out_dir)
    if cfg.render.page:
        print(f"open {Path(cfg.out_dir) / PAGE} (piano rolls, audio, MIDI, statistics; no server needed)")
    if cfg.compare:
        compare_with_test_split(results, facts(cfg.ckpt_path), cfg.out_dir)
    return results
