"""The fields of ``POST /api/generate``: read from JSON or a form, checked against the model.

One function, :func:`read_fields`, turns what a client sent (a JSON object, or multipart
form strings) into a :class:`PieceRequest` or a :class:`RequestError` whose message is the
one line the client sees. Every check a request can fail is here, before it queues, so
the generation worker only ever sees requests it can serve. :func:`describe` is the
other side of the same contract: the limits and defaults ``GET /api/model`` announces.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

from deeporb.generation.draw import GREEDY_BELOW

MAX_SEED = 2**31 - 1
NUMBERS = ("bars", "temperature", "top_k", "top_p", "seed")
FIELDS = ("instruments", "style", *NUMBERS)
FORM_ONLY = ("primer",)  # the upload; read by the app, not here


class RequestError(Exception):
    """A request the client can fix: ``status`` is the HTTP status (4xx, 503 for a full queue), the
    message the one line the client reads."""

    def __init__(self, message: str, status: int = 400, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.close = close  # answered with Connection: close (a body left unread)


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (``configs/serve.yaml`` sets them)."""

    max_bars: int
    max_temperature: float
    max_top_k: int  # the vocabulary's size
    body_bytes: int
    primer_bytes: int


@dataclass(frozen=True)
class PieceRequest:
    """A checked request. ``seed`` is always set (a fresh one when the client gave none), so
    the response can say which seed reproduces the piece."""

    instruments: tuple[str, ...] | None  # None: the primer's known ones, else all the model knows
    style: str | None
    bars: int
    temperature: float
    top_k: int
    top_p: float
    seed: int

    def batch_key(self) -> tuple:
        """Requests with equal keys can share one batch: the sampler takes one length and one
        filter for all rows (seeds and instruments may differ: each request draws from its own
        generator)."""
        return (self.bars, self.temperature, self.top_k, self.top_p)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["instruments"] = list(self.instruments) if self.instruments else None
        return d


def _shown(value) -> str:
    """A value as an error line quotes it: a 400-digit number is not one clear line."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...{text[-8:]} ({len(text)} characters)"


def _whole(name: str, value, low: int, high: int) -> int:
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:  # "1e400", "2.5", "eight", or past Python's 4300 digits
            raise RequestError(f"{name} must be a whole number (got {_shown(value)})") from None
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{name} must be a whole number (got {_shown(value)})")
    if not low <= value <= high:
        raise RequestError(f"{name} must be between {low} and {high} (got {_shown(value)})")
    return value


def _bars(value, most: int) -> int:
    """Bars to write: at least one, at most the server's configured limit."""
    try:
        return _whole("bars", value, 1, most)
    except RequestError as e:
        too_many = str(e).startswith("bars must be between") and int(value) > most  # not float(): 10**400 overflows
        raise RequestError(f"{e}: this server's max_bars" if too_many else str(e)) from None


def _number(name: str, value, low: float, high: float, low_open: bool = False) -> float:
    given, out_of_range = value, f"{name} must be in {'(' if low_open else '['}{low}, {high}] (got {_shown(value)})"
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise RequestError(f"{name} must be a number (got {_shown(value)})") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        if abs(value) > 2**64:  # a JSON integer past any limit (and maybe past a float's range)
            raise RequestError(out_of_range)
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, float) or not math.isfinite(value):
        raise RequestError(f"{name} must be a finite number (got {_shown(given)})")
    if not (low < value if low_open else low <= value) or value > high:
        raise RequestError(out_of_range)
    return value


def _temperature(value, most: float) -> float:
    """Below the draw's :data:`~deeporb.generation.draw.GREEDY_BELOW` the draw is greedy (1e-300
    once failed every request batched with it): such a temperature is read as 0, as the draw reads
    it, so it also batches with the greedy requests."""
    t = _number("temperature", value, 0.0, most)
    return 0.0 if t < GREEDY_BELOW else t


def _names(value) -> list[str]:
    """A JSON list of names, or form values (repeated fields and/or comma-separated)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestError(f"instruments must be a list of instrument names (got {_shown(value)})")
    return [n.strip() for v in value for n in v.split(",") if n.strip()]


def read_fields(sent: Mapping, instruments: tuple[str, ...], styles: tuple[str, ...],
                limits: Limits, defaults: Mapping, fresh_seed: int) -> PieceRequest:
    """Check what a client sent against the model and the limits -> a :class:`PieceRequest`.

    ``sent`` maps field names to JSON values or form strings (a form's ``instruments`` may be a
    list of its repeated values). A missing field, JSON ``null`` or an empty form string takes
    ``defaults[field]``.
    """
    unknown = sorted(set(sent) - set(FIELDS) - set(FORM_ONLY))
    if unknown:
        raise RequestError(f"unknown field {', '.join(map(_shown, unknown[:5]))}; the fields are: {', '.join(FIELDS)}")
    given = {k: v for k, v in sent.items() if v is not None and v != "" and v != [""] and k in FIELDS}

    chosen = None
    if "instruments" in given:
        chosen = tuple(dict.fromkeys(_names(given["instruments"])))
        if not chosen:
            raise RequestError(f"instruments is empty; name one or more of: {', '.join(instruments)}")
        bad = [k for k in chosen if k not in instruments]
        if bad:
            raise RequestError(f"unknown instrument {', '.join(map(_shown, bad[:5]))}; this model knows: {', '.join(instruments)}")
    style = given.get("style", defaults.get("style"))
    if style is not None:
        if not isinstance(style, str):
            raise RequestError(f"style must be a style name (got {_shown(style)})")
        if style not in styles:
            known = f"this model knows: {', '.join(styles)}" if styles else "this model has no styles; leave style out"
            raise RequestError(f"unknown style {_shown(style)}; {known}")
    value = {k: given.get(k, defaults.get(k)) for k in NUMBERS}
    return PieceRequest(
        instruments=chosen,
        style=style,
        bars=_bars(value["bars"], limits.max_bars),
        temperature=_temperature(value["temperature"], limits.max_temperature),
        top_k=_whole("top_k", value["top_k"], 0, limits.max_top_k),
        top_p=_number("top_p", value["top_p"], 0.0, 1.0, low_open=True),
        seed=fresh_seed if value["seed"] is None else _whole("seed", value["seed"], 0, MAX_SEED),
    )


def describe(instruments, styles, limits: Limits, defaults: Mapping) -> dict:
    """The fields as ``GET /api/model`` announces them: choices, ranges, defaults."""
    return {
        "instruments": list(instruments),
        "styles": list(styles),
        "limits": {
            "bars": [1, limits.max_bars],
            "temperature": [0.0, limits.max_temperature],
            "greedy_below": GREEDY_BELOW,  # a smaller temperature is read as 0: greedy
            "top_k": [0, limits.max_top_k],
            "top_p": [0.0, 1.0],  # 0 excluded
            "seed": [0, MAX_SEED],
            "body_bytes": limits.body_bytes,
            "primer_bytes": limits.primer_bytes,
        },
        "defaults": {k: defaults.get(k) for k in FIELDS},
    }
