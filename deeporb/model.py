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
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import SumMetric

from deeporb.data.facts import plain_data
from deeporb.encoding.grammar import KINDS
from deeporb.encoding.words import PAD, Vocabulary

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


EMPTY = -(2**40)  # the position of a memory slot no word has filled: outside every window


@dataclass
class Memory:
    """The look-back attention's keys and values of each row's last ``window`` words.

    A ring: the word at position p sits in slot ``p % window``; ``positions`` says which word
    each slot holds (``EMPTY`` before one does). Attention does not care about the order of its
    keys, so one step writes one slot instead of shifting the whole window.
    """

    keys: torch.Tensor  # (B, heads, window, head_dim)
    values: torch.Tensor
    positions: torch.Tensor  # (B, window) int64
    length: torch.Tensor  # (B,) words each row has read

    @classmethod
    def empty(cls, batch: int, heads: int, window: int, head_dim: int, like: torch.Tensor) -> Memory:
        keys = like.new_zeros(batch, heads, window, head_dim)
        positions = torch.full((batch, window), EMPTY, dtype=torch.long, device=like.device)
        return cls(keys, keys.clone(), positions, torch.zeros(batch, dtype=torch.long, device=like.device))

    def write(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Store the last words of a chunk (B, heads, T, head_dim), in place."""
        window, t = self.positions.shape[1], keys.shape[2]
        n = min(t, window)
        pos = self.length[:, None] + torch.arange(t - n, t, device=keys.device)  # (B, n)
        slots = pos % window
        index = slots[:, None, :, None].expand(-1, keys.shape[1], -1, keys.shape[3])
        self.keys.scatter_(2, index, keys[:, :, t - n :].to(self.keys.dtype))
        self.values.scatter_(2, index, values[:, :, t - n :].to(self.values.dtype))
        self.positions.scatter_(1, slots, pos)
        self.length += t

    def rows(self, index: torch.Tensor) -> Memory:
        return Memory(self.keys[index], self.values[index], self.positions[index], self.length[index])

    @staticmethod
    def cat(memories: list[Memory]) -> Memory:
        return Memory(*(torch.cat([getattr(m, f) for m in memories]) for f in ("keys", "values", "positions", "length")))


@dataclass
class State:
    """What reading carries from one word to the next: the LSTM's ``(h, c)`` (layers, B, hidden)
    and, with look-back attention, its :class:`Memory`. Generation selects, repeats and joins
    rows through :meth:`rows` and :meth:`cat`, so it never needs to know what the model holds."""

    lstm: tuple[torch.Tensor, torch.Tensor]
    memory: Memory | None = None

    def rows(self, index: torch.Tensor) -> State:
        """The state of rows ``index`` (a selection, a reorder or a repeat), copied."""
        h, c = self.lstm
        return State((h[:, index], c[:, index]), self.memory.rows(index) if self.memory is not None else None)

    @staticmethod
    def cat(states: list[State]) -> State:
        lstm = (torch.cat([s.lstm[0] for s in states], 1), torch.cat([s.lstm[1] for s in states], 1))
        memories = [s.memory for s in states]
        return State(lstm, Memory.cat(memories) if memories[0] is not None else None)


class LookBack(nn.Module):
    """Causal multi-head attention over the LSTM's outputs for the last ``window`` words, added
    to them (residual, layer norm): the network can look up what a bar or a part said 1, 2, 4, 8
    or 16 bars back, or what a gap's surroundings hold, instead of hoping the LSTM state kept it
    (Magenta's Attention RNN; issues 19 and 20). The LSTM's outputs carry the order, so the
    attention needs no position encoding."""

    def __init__(self, size: int, heads: int, window: int, dim: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.window, self.dim, self.dropout = heads, window, dim, dropout
        self.qkv = nn.Linear(size, 3 * dim)  # narrower than the LSTM: a step reads the window's keys
        self.out = nn.Linear(dim, size)
        self.norm = nn.LayerNorm(size)

    def forward(self, x: torch.Tensor, memory: Memory | None) -> tuple[torch.Tensor, Memory]:
        """x (B, T, size) -> the same shape, and the memory after these words (written in place)."""
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, self.dim // self.heads).permute(2, 0, 3, 1, 4)
        if memory is None and t <= self.window:  # a training window: plain causal attention
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (dropout here costs 5x on a CPU)
            memory = Memory.empty(b, self.heads, self.window, self.dim // self.heads, k.detach())
            memory.write(k.detach(), v.detach())
        else:
            if memory is None:
                memory = Memory.empty(b, self.heads, self.window, self.dim // self.heads, k.detach())
            queries = memory.length[:, None] + torch.arange(t, device=x.device)  # (B, T)
            if t == 1:  # a generation step: the new word's slot first, then the ring is its window
                memory.write(k, v)
                filled = min(int(memory.length.max()), self.window)  # slots past it are empty yet
                keys, values = memory.keys[:, :, :filled], memory.values[:, :, :filled]
                positions = memory.positions[:, :filled]
            else:
                keys, values = torch.cat([memory.keys, k], 2), torch.cat([memory.values, v], 2)
                positions = torch.cat([memory.positions, queries], 1)
            seen = (positions[:, None, :] <= queries[:, :, None]) & (positions[:, None, :] > queries[:, :, None] - self.window)
            y = F.scaled_dot_product_attention(q, keys, values, attn_mask=seen[:, None])
            if t > 1:
                memory.write(k.detach(), v.detach())
        y = y.transpose(1, 2).reshape(b, t, self.dim)
        return self.norm(x + F.dropout(self.out(y), self.dropout, self.training)), memory


class LSTMGenerator(pl.LightningModule):
    """Next-word LSTM over session words.

    Args:
        vocab: ``Vocabulary.to_dict()`` (encoding config + instrument keys).
        embed_dim, hidden_size, num_layers, dropout: network size.
        tie_weights: share the embedding with the output head (a projection is added when
            ``hidden_size != embed_dim``).
        attention_heads: 0 for none, else the heads of a :class:`LookBack` attention over the
            LSTM's outputs of the last ``attention_window`` words, ``attention_dim`` wide.
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
        attention_heads: int = 0,
        attention_window: int = 1024,
        attention_dim: int = 64,
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
        self.lookback = (LookBack(hidden_size, attention_heads, attention_window, attention_dim, dropout)
                         if attention_heads else None)
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
        """tokens (B, T) -> logits (B, T, V) and the state after the last step."""
        out, state = self._features(self.dropout(self.embedding(tokens)), state)
        out = self.dropout(out)
        if self.project is not None:
            out = self.project(out)
        return self.head(out), state

    def _features(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        out, lstm = self.lstm(x, state.lstm if state is not None else None)
        memory = state.memory if state is not None else None
        if self.lookback is not None:
            out, memory = self.lookback(out, memory)
        return out, State(lstm, memory)

    @torch.no_grad()
    def read(self, tokens: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """A prompt (B, T) -> the logits after its last word (B, V) and the state: the head runs
        on the last step only, so a long primer (a fill reads all of it) costs no (T, V) array,
        and the attention reads it a window at a time, so it costs no (T, T) one either."""
        chunk = self.lookback.window if self.lookback is not None else tokens.shape[1]
        for part in tokens.split(max(chunk, 1), dim=1):
            out, state = self._features(self.embedding(part), state)
        out = out[:, -1]
        return self.head(self.project(out) if self.project is not None else out), state

    @torch.no_grad()
    def step(self, token: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """One word per sequence, (B,) -> logits (B, V): generation carries the state (the
        attention's memory is written in place, so a state is stepped once)."""
        logits, state = self(token[:, None], state)
        return logits[:, 0], state

    # -- training ----------------------------------------------------------------------
    def _shared_step(self, batch: dict, stage: str) -> torch.Tensor:
        tokens = batch["tokens"]
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        carried = "first" in batch  # data.carry_state: each row continues its chunk of the last step
        logits, state = self(inputs, self._carried_state(batch["first"]) if carried else None)
        if carried:  # truncated backpropagation: no gradient back
            self._carry = State(tuple(s.detach() for s in state.lstm))
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
        h, c = self._carry.lstm if self._carry is not None else (None, None)
        if h is None or h.shape[1] != first.shape[0]:
            return None
        keep = (~first).to(h.dtype)[None, :, None]
        return State((h * keep, c * keep))

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
