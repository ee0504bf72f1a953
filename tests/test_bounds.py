"""Issue 17: every size of sampling is bounded before work starts.

Each bound once through ``sample.py`` (one ``error:`` line, exit 2, no sample written: it
fails before the model writes a word), the render limit on a primer at MIDI's slowest tempo,
a primer at its fastest rendering a real WAV, and a vanishing temperature drawing greedily.
"""

from __future__ import annotations

import mido
import pytest
from midi_factory import make_midi, scale
from test_sampling import ckpt, corpus, model, no_render, run_app, run_dir  # noqa: F401 (fixtures)

from deeporb.errors import UserError
from deeporb.generation.compose import (
    MAX_BARS,
    MAX_NUM_SAMPLES,
    MAX_SAMPLE_BARS,
    Settings,
    check_sizes,
)
from deeporb.generation.prompts import MAX_PRIMER_BARS, check_primer_bars
from deeporb.render.audio import read_wav
from deeporb.stages.sample import RenderConfig, SampleConfig, sample

SLOWEST = 0xFFFFFF  # MIDI's longest quarter note, in microseconds: 3.58 quarters a minute


def primer_at(path, microseconds: int, numerator: int = 4):
    """Two bars of piano (a key the checkpoint knows) at a tempo of ``microseconds`` a quarter."""
    midi = make_midi(path, [{"name": "piano", "program": 0, "notes": scale(step=480 * numerator // 4,
                                                                            pitches=(60, 62, 64, 65, 67, 69, 71, 72))}],
                     time_signatures=[(0, numerator, 4)])
    raw = mido.MidiFile(str(midi))
    for msg in raw.tracks[0]:
        if msg.type == "set_tempo":
            msg.tempo = microseconds
    raw.save(str(midi))
    return midi


def refused(out, *args: str) -> str:
    """Run sample.py expecting its one error line; -> that line. Nothing may be
    written in out_dir, not even Hydra's run files."""
    proc = run_app(f"out_dir={out}", *args)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    left = {p.name for p in out.iterdir()} if out.exists() else set()
    assert not left, left
    return lines[0]


@pytest.mark.parametrize("args,message", [
    (["primer_bars=1000000000"], "primer_bars must be between 0 and 1,024 (got 1,000,000,000)"),
    (["bars=100000"], "bars must be between 1 and 1,024 (got 100,000)"),
    (["num_samples=10000"], "num_samples must be between 1 and 1,024 (got 10,000)"),
    (["num_samples=64", "bars=1024"],
     "num_samples x bars = 65,536 is over 16,384 bars a run; split the work into 4 runs of at most num_samples=16"),
    (["num_samples=2", "bars=1024", "fill.candidates=16", "fill.bars=[1,2]"],
     "num_samples x fill.candidates x bars = 32,768 is over 16,384 bars a run; split the work into 2 runs of at most "
     "num_samples=1"),
    (["fill.candidates=17", "fill.bars=[1,2]"], "fill.candidates must be between 1 and 16 (got 17)"),
    (["temperature=nan"], "temperature must be a finite number (got nan)"),
    (["temperature=inf"], "temperature must be a finite number (got inf)"),
    (["tempo=0.05", "render.audio=true"], "tempo must be between 4 and 1000 quarter notes per minute (got 0.05)"),
], ids=["primer_bars", "bars", "num_samples", "samples_x_bars", "samples_x_candidates", "candidates", "nan", "inf",
        "tempo"])
def test_each_absurd_size_is_one_error_line_before_any_work(args, message, run_dir, tmp_path):  # noqa: F811 (the fixture imported above)
    primer = primer_at(tmp_path / "primer.mid", 500_000)
    line = refused(tmp_path / "out", f"ckpt_path={run_dir}", f"primer={primer}", *args)
    assert message in line, line


def test_the_bounds_admit_their_own_limits():
    check_sizes(Settings(bars=MAX_BARS, temperature=1e-300, tempo=4), MAX_SAMPLE_BARS // MAX_BARS)
    check_sizes(Settings(bars=MAX_SAMPLE_BARS // MAX_NUM_SAMPLES, temperature=-1.0, tempo=1000), MAX_NUM_SAMPLES)
    check_primer_bars(0)
    check_primer_bars(MAX_PRIMER_BARS)
    for settings, n in ((Settings(bars=MAX_BARS + 1), 1), (Settings(), MAX_NUM_SAMPLES + 1),
                        (Settings(bars=MAX_BARS), MAX_SAMPLE_BARS // MAX_BARS + 1),
                        (Settings(tempo=3.9), 1), (Settings(tempo=1000.5), 1), (Settings(temperature=-float("inf")), 1)):
        with pytest.raises(UserError):
            check_sizes(settings, n)
    with pytest.raises(UserError, match="primer_bars must be between 0 and 1,024 .got -1."):
        check_primer_bars(-1)


def test_a_vanishing_temperature_writes_the_greedy_piece(model, tmp_path):  # noqa: F811 (the fixture imported above)
    def piece(name: str, temperature: float) -> bytes:
        cfg = SampleConfig(out_dir=tmp_path / name, num_samples=2, bars=2, seed=3, temperature=temperature,
                           render=no_render())
        return b"".join(r.midi.read_bytes() for r in sample(cfg, model=model))

    greedy = piece("greedy", 0.0)
    assert piece("tiny", 1e-300) == greedy
    assert piece("warm", 1.0) != greedy  # the seed's draw is not the greedy one: the check above can fail


def test_a_primer_at_the_slowest_midi_tempo_is_refused_by_the_render_limit(run_dir, tmp_path):  # noqa: F811 (the fixture imported above)
    """The attack of issue 17: 8/4 at 3.58 qpm made a 1.78 GB WAV. Two primer bars + 16 at
    134 s a bar last 2,416 s: refused before generating, in one line."""
    primer = primer_at(tmp_path / "slow.mid", SLOWEST, numerator=8)
    line = refused(tmp_path / "out", f"ckpt_path={run_dir}", f"primer={primer}", "render.audio=true")
    assert "the piece lasts 2,416 s, over render.max_seconds=600" in line and "render.audio=false" in line, line


def test_a_primer_at_one_microsecond_a_quarter_renders_a_short_wav(model, tmp_path):  # noqa: F811 (the fixture imported above)
    """The fastest tempo MIDI holds: the piece lasts microseconds, its WAV the release tail."""
    primer = primer_at(tmp_path / "fast.mid", 1)
    cfg = SampleConfig(out_dir=tmp_path / "out", num_samples=1, bars=2, seed=0, primer=str(primer),
                       render=RenderConfig(piano_roll=False, page=False, audio=True))
    [r] = sample(cfg, model=model)
    assert r.seconds < 0.001 and r.qpm == 60_000_000
    audio, rate = read_wav(r.wav)
    assert rate == 48_000 and audio.shape[0] == 2 and 0.9 < audio.shape[1] / rate < 1.2
