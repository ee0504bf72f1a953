"""``SessionFacts``: what a checkpoint knows about the data it was trained on.

The DataModule writes it once (:meth:`deeporb.data.datamodule.SessionDataModule.session_info`)
into the model's hyper-parameters as ``session=``; sampling, evaluation and training read it
back through :meth:`SessionFacts.from_dict`, the one place that says what a fact means when
an older checkpoint lacks it. The record is plain data (no paths opened, no torch), so a
checkpoint stays readable by ``yaml``/``json`` tools and by ``torch.load(weights_only=True)``:
:func:`plain_data` is what makes a value fit to be written into a checkpoint.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import PurePath
from typing import Any

from deeporb.encoding.grammar import VIEWS, View
from deeporb.encoding.words import EncodingConfig, Meter, Vocabulary
from deeporb.errors import UserError
from deeporb.instruments import key_program

SPLIT_FACTS = ("names", "sessions_dir", "val_fraction", "test_fraction")
PLAIN = (str, int, float, bool, bytes, type(None))


def plain_data(value: Any, where: str = "value") -> Any:
    """``value`` as data a checkpoint can hold and ``torch.load(weights_only=True)`` reads back
    without running code: mappings (a Hydra ``DictConfig``, a ``Counter``) become dicts, lists
    and ``ListConfig`` lists, tuples stay tuples, paths become strings, numpy scalars and arrays
    Python numbers and lists. Anything else is a ``TypeError`` naming ``where`` it is, raised
    when the checkpoint is made rather than a file that no DeepOrb app will load."""
    if type(value) in PLAIN:  # exactly: numpy.float64 is a float and a str Enum a str, both pickled as objects
        return value
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return plain_data(value.tolist(), where)
    if isinstance(value, Mapping):
        return {plain_data(k, f"a key of {where}"): plain_data(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(plain_data(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [plain_data(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"{where} is a {type(value).__module__}.{type(value).__qualname__}; "
                    "a checkpoint holds plain data only (dicts, lists, strings, numbers)")


@dataclass(frozen=True)
class SessionFacts:
    """The session facts a checkpoint carries. Defaults are what an older checkpoint that
    lacks a fact is taken to mean; ``None`` means "unknown" (the split cannot be rebuilt).

    Mappings inside (``time_signatures``, ``instruments``, ``pieces``) are read-only by
    convention: the record is frozen, its contents are not copied on every read.
    """

    names: tuple[str, ...] = ()  # the sessions trained on
    sessions_dir: str | None = None  # where training found them (absolute)
    val_fraction: float | None = None
    test_fraction: float | None = None
    instruments_filter: tuple[str, ...] | None = None  # data.instruments (None: all)
    seq_len: int | None = None
    repeat_bars: int = 0  # data.repeat_bars: how far back a rep_K word may point (older checkpoints: none)
    fill_share: float = 0.0  # data.fill_share: the training items that were fill examples (0: the model cannot fill)
    final_bar: bool = False  # data.final_bar: a piece's last bar says `final` (older checkpoints: no such word)
    qpm_median: float = 120.0  # tempo of a sample without primer or tempo=
    time_signatures: dict[str, int] = field(default_factory=lambda: {"4/4": 1})  # "N/D" -> pieces
    instruments: dict[str, dict] = field(default_factory=dict)  # key -> {program, is_drum, tracks, notes}
    instrument_keys: tuple[str, ...] = ()  # the vocabulary's instruments
    instrument_key: str = "program"  # how a MIDI track becomes a key (encode.py's instrument_key)
    encoding: EncodingConfig = field(default_factory=EncodingConfig)
    pieces: dict[str, int] = field(default_factory=dict)  # split -> pieces
    view: View = View.TRACKS  # how training read the sessions (older checkpoints: tracks)
    styles: tuple[str, ...] = ()  # each session's style key, in the order of ``names``, when several; else none
    #   (checkpoints before 2026-12-05 hold them sorted: the vocabulary's order)
    style_time_signatures: dict[str, dict[str, int]] = field(default_factory=dict)  # style -> "N/D" -> pieces

    def data_settings(self) -> dict:
        """The DataModule's arguments that rebuild the data this checkpoint was trained on: the
        sessions, where they were, the view, the instruments, the split and the window length
        (None where an older checkpoint does not say). The one way from facts back to data."""
        return {"session": list(self.names) or None, "sessions_dir": self.sessions_dir, "view": self.view,
                "instruments": None if self.instruments_filter is None else list(self.instruments_filter),
                "score_order": list(self.instrument_keys) or None,
                "seq_len": self.seq_len, "repeat_bars": self.repeat_bars, "fill_share": self.fill_share,
                "final_bar": self.final_bar, "val_fraction": self.val_fraction, "test_fraction": self.test_fraction}

    def to_dict(self) -> dict:
        """Plain lists and dicts, as the checkpoint's ``hparams.session`` stores them (numpy
        counts from the data become Python numbers: :func:`plain_data`)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, View):
                value = value.value
            elif isinstance(value, EncodingConfig):
                value = value.to_dict()
            elif isinstance(value, dict):
                value = {k: dict(v) if isinstance(v, Mapping) else v for k, v in value.items()}
            out[f.name] = value
        return plain_data(out, "session")

    @classmethod
    def from_dict(cls, d: Mapping | None, vocab: Vocabulary | None = None) -> SessionFacts:
        """Read ``hparams.session`` of any DeepOrb checkpoint; a missing fact gets the field's
        default, except those the checkpoint's ``vocab`` also knows (encoding, instrument keys).
        Unknown keys are ignored, so a newer checkpoint's extra facts do not break reading."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for k in ("names", "instrument_keys", "styles"):
            if k in kw:
                kw[k] = tuple(kw[k] or ())
        if kw.get("instruments_filter") is not None:
            kw["instruments_filter"] = tuple(kw["instruments_filter"])
        for k in ("time_signatures", "instruments", "pieces", "style_time_signatures"):
            if k in kw:
                kw[k] = {key: dict(v) if isinstance(v, Mapping) else v for key, v in (kw[k] or {}).items()}
        if "view" in kw:
            if kw["view"] not in VIEWS:
                raise UserError(f"the checkpoint's session facts name an unknown view {kw['view']!r} "
                                f"(DeepOrb knows {', '.join(VIEWS)}); pass a file written by train.py")
            kw["view"] = View(kw["view"])
        if "encoding" in kw:
            kw["encoding"] = EncodingConfig.from_dict(kw["encoding"])
        elif vocab is not None:
            kw["encoding"] = vocab.config
        if "instrument_keys" not in kw and vocab is not None:
            kw["instrument_keys"] = tuple(vocab.instruments)
        if vocab is not None:  # the vocabulary is what the weights were trained on
            kw["repeat_bars"] = vocab.repeat_bars
            kw["fill_share"] = float(kw.get("fill_share") or 0.0) if vocab.fills else 0.0
            kw["final_bar"] = vocab.final_bar
        return cls(**kw)

    def require_split(self, what: str = "checkpoint") -> SessionFacts:
        """Self, when it says which pieces were held out; else a user error naming what lacks it."""
        missing = [k for k in SPLIT_FACTS if getattr(self, k) in (None, ())]
        if missing:
            raise UserError(
                f"the {what}'s session facts lack {', '.join(missing)}, so its split cannot be rebuilt; "
                "use a checkpoint written by train.py"
            )
        return self

    def meter(self, style: str | None = None) -> Meter:
        """The meter a sample without primer is written in: the training pieces' commonest
        time signature that this encoding can represent (4/4 if none); with a ``style``, the
        commonest among that style's pieces (a 4/4 chorale style beside 2/4 folk tunes)."""
        counts: Counter = Counter()
        for text, count in self.style_time_signatures.get(style or "", self.time_signatures).items():
            try:
                n, d = (int(x) for x in str(text).split("/"))
            except ValueError:
                continue
            if self.encoding.bar_steps(n, d) is not None:
                counts[(n, d)] += int(count)
        sig = max(counts.items(), key=lambda kv: (kv[1], kv[0]))[0] if counts else (4, 4)
        return Meter([0], [sig])

    def instrument_program(self, key: str) -> tuple[int, bool]:
        """Instrument key -> (GM program, is_drum): what the training tracks of that key used
        most, else what the key's General MIDI name says."""
        info = self.instruments.get(key) or {}
        program, is_drum = key_program(key)
        if "program" in info:
            program = int(info["program"])
        if "is_drum" in info:
            is_drum = bool(info["is_drum"])
        return program, is_drum
