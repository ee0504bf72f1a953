"""``LSTMGenerator``: the LightningModule that learns to predict the next word.

Embedding -> multi-layer LSTM -> linear head, trained with cross-entropy. Besides loss,
perplexity and accuracy it reports ``bits_per_note``: total negative log-likelihood in bits
divided by the number of notes (pitch words) predicted. Unlike per-word loss it does not
depend on how many words an encoding spends per note, so encodings compare fairly.

The checkpoint is self-contained: its hyper-parameters hold the vocabulary (encoding config
and instrument keys) and the session statistics, so ``LSTMGenerator.load_from_checkpoint``
needs nothing else. They are plain data (dicts, lists, strings, numbers), so the checkpoint
loads with ``torch.load(weights_only=True)``, the only way DeepOrb loads one. This module
never reads files.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import SumMetric

from deeporb.data.facts import plain_data
from deeporb.encoding.grammar import KINDS
from deeporb.encoding.words import PAD, Vocabulary

State = tuple[torch.Tensor, torch.Tensor]
STAGES = ("train", "val", "test")
SUMS = ("nll", "words", "notes", "correct")


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int = 100,
    min_lr_ratio: float = 0.05,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up to the base learning rate, then cosine decay to ``min_lr_ratio`` of it."""
    warmup_steps = max(0, min(warmup_steps, total_steps // 2))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class LSTMGenerator(pl.LightningModule):
    """Next-word LSTM over session words.

    Args:
        vocab: ``Vocabulary.to_dict()`` (encoding config + instrument keys).
        embed_dim, hidden_size, num_layers, dropout: network size.
        tie_weights: share the embedding with the output head (a projection is added when
            ``hidden_size != embed_dim``).
        optimizer: ``functools.partial`` taking the parameters (Hydra ``_partial_: true``).
        scheduler: partial taking ``(optimizer, total_steps=...)``, or None.
        session: facts sampling needs later: session names, tempo and meter statistics.
    """

    def __init__(
        self,
        vocab: dict,
        embed_dim: int = 256,
        hidden_size: int = 256,
        num_layers: int = 2,
        dropout: float = 0.1,
        tie_weights: bool = False,
        optimizer: Callable | None = None,
        scheduler: Callable | None = None,
        session: dict | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        for key, value in self.hparams.items():  # a Hydra DictConfig or numpy number would be pickled as code
            self.hparams[key] = plain_data(value, f"LSTMGenerator's {key}")
        self.vocab = Vocabulary.from_dict(vocab)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        v = len(self.vocab)
        self.pad_id = self.vocab.index[PAD]
        self.embedding = nn.Embedding(v, embed_dim, padding_idx=self.pad_id)
        self.lstm = nn.LSTM(
            embed_dim,
            hidden_size,
            num_layers=num_layers,
            dropout=dropout if num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.dropout = nn.Dropout(dropout)
        self.project = (
            nn.Linear(hidden_size, embed_dim) if tie_weights and hidden_size != embed_dim else None
        )
        self.head = nn.Linear(embed_dim if self.project is not None else hidden_size, v)
        if tie_weights:
            self.head.weight = self.embedding.weight
        kinds = torch.as_tensor(self.vocab.kind_of())
        self.register_buffer("is_note", kinds == KINDS.index("pitch"), persistent=False)
        self._carry: State | None = None  # data.carry_state: the lanes' state between training steps
        self.sums = nn.ModuleDict(
            {f"{stage}_{name}": SumMetric() for stage in STAGES for name in SUMS}
        )

    # -- network -----------------------------------------------------------------------
    def forward(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """tokens (B, T) -> logits (B, T, V) and the LSTM state after the last step."""
        x = self.dropout(self.embedding(tokens))
        out, state = self.lstm(x, state)
        out = self.dropout(out)
        if self.project is not None:
            out = self.project(out)
        return self.head(out), state

    @torch.no_grad()
    def read(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """A prompt (B, T) -> the logits after its last word (B, V) and the state: the head runs
        on the last step only, so a long primer (a fill reads all of it) costs no (T, V) array."""
        out, state = self.lstm(self.embedding(tokens), state)
        out = out[:, -1]
        return self.head(self.project(out) if self.project is not None else out), state

    @torch.no_grad()
    def step(self, token: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """One word per sequence, (B,) -> logits (B, V): generation carries the state."""
        logits, state = self(token[:, None], state)
        return logits[:, 0], state

    # -- training ----------------------------------------------------------------------
    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        tokens = batch["tokens"]
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        carried = "first" in batch  # data.carry_state: each row continues its chunk of the last step
        logits, state = self(inputs, self._carried_state(batch["first"]) if carried else None)
        if carried:
            self._carry = tuple(s.detach() for s in state)  # truncated backpropagation: no gradient back
        nll = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(),
            targets.reshape(-1),
            ignore_index=self.pad_id,
            reduction="none",
        )
        mask = targets.reshape(-1) != self.pad_id
        words = mask.sum()
        loss = nll.sum() / words.clamp(min=1)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{stage} loss is {loss.item()} at step {self.global_step}; "
                "lower model.optimizer.lr or raise trainer.gradient_clip_val"
            )
        correct = ((logits.argmax(-1).reshape(-1) == targets.reshape(-1)) & mask).sum()
        # the notes each target stands for (the cache's counts: a rep_K word is its bar's notes)
        notes = batch["notes"][:, 1:].sum() if "notes" in batch else self.is_note[targets.reshape(-1)].sum()
        for name, value in zip(SUMS, (nll.sum().detach(), words, notes, correct), strict=True):
            self.sums[f"{stage}_{name}"].update(value.float())
        batch_size = tokens.size(0)
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=batch_size, sync_dist=stage != "train")
        return loss

    def _carried_state(self, first: torch.Tensor) -> State | None:
        """The state each lane ended its last chunk with, afresh (zeros) where a new row begins
        (:mod:`deeporb.data.streams`)."""
        if self._carry is None or self._carry[0].shape[1] != first.shape[0]:
            return None
        keep = (~first).to(self._carry[0].dtype)[None, :, None]
        return tuple(s * keep for s in self._carry)

    def on_train_epoch_start(self) -> None:
        self._carry = None  # every lane starts a new row

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        """Exact epoch metrics from summed counts (synchronised across DDP ranks)."""
        values = {name: self.sums[f"{stage}_{name}"].compute() for name in SUMS}
        words = values["words"].clamp(min=1)
        mean_nll = values["nll"] / words
        metrics = {
            f"{stage}/ppl": torch.exp(mean_nll),
            f"{stage}/acc": values["correct"] / words,
            f"{stage}/bits_per_note": values["nll"] / math.log(2) / values["notes"].clamp(min=1),
            f"{stage}/words": values["words"],
            f"{stage}/notes": values["notes"],
        }
        if stage == "train":
            metrics["train/epoch_loss"] = mean_nll
        self.log_dict(metrics, prog_bar=stage == "val")
        for name in SUMS:
            self.sums[f"{stage}_{name}"].reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self):
        factory = self.optimizer_factory or (lambda params: torch.optim.AdamW(params, lr=1e-3))
        optimizer = factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = self.scheduler_factory(optimizer, total_steps=total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- bookkeeping -------------------------------------------------------------------
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
