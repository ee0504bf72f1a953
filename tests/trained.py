"""A small LSTM trained briefly, for real, on a corpus a test built: the set-up shared by the
tests that check a model learns what the words let it say (repeated bars, fills, endings)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytorch_lightning as pl
import torch

from deeporb.data.datamodule import SessionDataModule
from deeporb.model import LSTMGenerator
from deeporb.stages.encode import encode_session


def small_model(dm: SessionDataModule, lr: float | None = None) -> LSTMGenerator:
    """The network these tests train: one layer of 96 units (``lr``: AdamW's; None: the model's default)."""
    optimizer = None if lr is None else functools.partial(torch.optim.AdamW, lr=lr)
    return LSTMGenerator(dm.vocab.to_dict(), embed_dim=32, hidden_size=96, num_layers=1, dropout=0.0,
                         session=dm.session_info(), optimizer=optimizer)


def train_briefly(midi_dir: Path, session: str, steps: int, lr: float | None = None,
                  **data) -> tuple[SessionDataModule, LSTMGenerator]:
    """Encode ``midi_dir`` as ``session`` (in ``sessions`` beside it), train :func:`small_model`
    for ``steps`` optimizer steps from seed 0 (``data``: the data module's settings; 16 windows a
    step, no transposition) and return the data module and the model, in eval mode."""
    sessions = Path(midi_dir).parent / "sessions"
    encode_session(midi_dir=str(midi_dir), session=session, sessions_dir=str(sessions), workers=1)
    dm = SessionDataModule(session, str(sessions), **{"batch_size": 16, "transpose": 0, **data})
    dm.prepare_data()
    pl.seed_everything(0, verbose=False)
    model = small_model(dm, lr)
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1, limit_val_batches=0)
    trainer.fit(model, datamodule=dm)
    return dm, model.eval()
