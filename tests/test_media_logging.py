"""The sampling callback (deeporb/stages/callbacks.py) in a demo-sized run: what it writes into
the run folder and into each logger's own files, read back (wandb offline run, TensorBoard
event files, CSV), and where the run report tells a person to look."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from deeporb.render.audio import BUILTIN_RATE, read_wav
from deeporb.stages.callbacks import LOG_RATE
from deeporb.stages.train import train

ROOT = Path(__file__).resolve().parents[1]


def config(out: Path, sessions: Path, *overrides: str):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=[
            f"paths.output_dir={out}", f"paths.sessions_dir={sessions}", "data.session=chorales",
            "model.embed_dim=32", "model.hidden_size=32", "model.num_layers=1", "data.seq_len=32",
            "data.batch_size=8", "trainer.enable_progress_bar=false", "++callbacks.rich_progress_bar=null",
            "++callbacks.model_summary=null", *overrides,
        ])


@pytest.fixture(scope="module")
def logged_run(chorale_sessions_dir, tmp_path_factory):
    """One epoch of 3 batches with wandb (offline), CSV and TensorBoard, samples after validation."""
    out = tmp_path_factory.mktemp("media")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("WANDB_API_KEY", raising=False)
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        cfg = config(out, chorale_sessions_dir, "logger=many", "trainer.max_epochs=1",
                     "+trainer.limit_train_batches=3", "+trainer.limit_val_batches=1", "test=false",
                     "trainer.num_sanity_val_steps=0", "callbacks.samples.bars=2")
        assert OmegaConf.select(cfg, "logger.wandb.log_model") is False  # offline: no artifacts
        import io
        from contextlib import redirect_stdout

        report = io.StringIO()
        with redirect_stdout(report):
            train(cfg)
    return out, report.getvalue()


def test_samples_land_in_the_run_folder_with_their_page(logged_run):
    out, report = logged_run
    folders = sorted((out / "samples").iterdir())
    assert [f.name for f in folders] == ["epoch000-step000003"]
    files = sorted(p.name for p in folders[0].iterdir())
    assert files == [".deeporb", "index.html", "sample_000.mid", "sample_000.png", "sample_000.wav",
                     "sample_001.mid", "sample_001.png", "sample_001.wav", "samples.json"]
    assert f"samples of the last validation: {folders[0] / 'index.html'}" in report


def test_wandb_offline_run_holds_the_table_images_and_audio(logged_run):
    out, report = logged_run
    run = Path(json.loads((out / "metrics.json").read_text())["wandb_dir"])
    assert run.name.startswith("offline-run-") and f"wandb sync {run}" in report
    media = run / "files" / "media"
    import matplotlib.image as mpimg

    pngs = list((media / "images").rglob("*.png"))
    assert len(pngs) == 2 and all(mpimg.imread(p).shape[0] == 450 for p in pngs)
    wavs = list((media / "audio").rglob("*.wav"))
    assert len(wavs) == 2
    for wav in wavs:
        audio, rate = read_wav(wav)
        assert rate == BUILTIN_RATE and audio.shape[1] > rate and abs(audio).max() > 0.01  # sound, > 1 s
    (table_file,) = (media / "table").rglob("*.table.json")
    table = json.loads(table_file.read_text())
    cols = table["columns"]
    assert cols[:7] == ["epoch", "step", "sample", "piano_roll", "audio", "midi", "instruments"]
    assert {"pitch_class_entropy", "cross_part_consonance", "key_consistency"} <= set(cols)
    rows = [dict(zip(cols, row, strict=True)) for row in table["data"]]
    assert [r["sample"] for r in rows] == ["sample_000.mid", "sample_001.mid"]
    assert rows[0]["notes"] > 0 and rows[0]["step"] == 3
    (history,) = run.glob("run-*.wandb")  # the scalars: in the run's record, which wandb sync uploads
    assert b"samples/pitch_class_entropy" in history.read_bytes() and b"samples/notes" in history.read_bytes()


def test_tensorboard_event_files_hold_piano_rolls_and_audio(logged_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, report = logged_run
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "audio": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    assert sorted(tags["images"]) == ["samples/sample_000/piano_roll", "samples/sample_001/piano_roll"]
    assert sorted(tags["audio"]) == ["samples/sample_000/audio", "samples/sample_001/audio"]
    image = events.Images("samples/sample_000/piano_roll")[0]
    assert image.step == 3 and image.height == 450 and image.width >= 800
    audio = events.Audio("samples/sample_000/audio")[0]
    assert audio.sample_rate == LOG_RATE and audio.length_frames > LOG_RATE and audio.content_type == "audio/wav"
    samples, rate = read_wav(audio.encoded_audio_string)
    assert rate == LOG_RATE and samples.shape == (1, audio.length_frames) and abs(samples).max() > 0.01
    assert "samples/notes" in tags["scalars"]
    assert f"tensorboard --logdir {out / 'tensorboard'}" in report


def test_csv_holds_the_sample_statistics_means(logged_run):
    out, _ = logged_run
    rows = [r for r in csv.DictReader(open(out / "csv" / "metrics.csv")) if r.get("samples/notes")]
    assert len(rows) == 1 and rows[0]["step"] == "3"
    assert float(rows[0]["samples/notes"]) > 0 and 0 <= float(rows[0]["samples/scale_consistency"]) <= 1
    assert 0 <= float(rows[0]["samples/form/repeat_rate"]) <= 1 and float(rows[0]["samples/form/mean_bars"]) > 0


def test_debug_configs_turn_the_callback_off():
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        assert compose("train").callbacks.samples.num_samples == 2
        for debug in ("limit", "overfit", "fast_dev_run"):
            assert OmegaConf.select(compose("train", overrides=[f"debug={debug}"]), "callbacks.samples") is None
