"""The fields of ``POST /api/generate``: read from JSON or a form, checked against the model.

The fields are the sampling settings' record, :class:`deeporb.generation.compose.Settings`,
with its defaults: a request offers every setting ``sample.py`` has, and a new setting there
is a field here (:data:`READERS` must read each one). :func:`read_fields` turns what a client
sent (a JSON object, or multipart form strings) into a ``Settings`` or a :class:`RequestError`
whose message is the one line the client sees; what needs the model (a primer, ranges such as
``min_bars`` within ``bars``) is checked by :func:`deeporb.generation.compose.plan`, before the
request queues. :func:`describe` is the other side of the same contract: the limits and
defaults ``GET /api/model`` announces.

``fill`` (sample.py's ``fill.parts`` / ``fill.bars``) rewrites bars and parts of the primer,
keeping its other notes: in JSON ``"fill": {"parts": ["drums"], "bars": [5, 8]}`` (either may be
null or left out: every part of the primer, all its bars), in a form or a query the fields
``fill.parts`` (repeated or comma-separated, as ``instruments``) and ``fill.bars`` (``5,8``,
``5-8``, sent twice, or one bar ``5``). Bars are the primer's, 1-based, first and last included.
``fill.candidates`` (1 to 16): fills written per piece, one drawn by how likely the model finds
the notes the fill keeps given each.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields

from deeporb.generation.compose import MAX_FILL_CANDIDATES, MAX_TEMPO, MIN_TEMPO, Fill, Settings
from deeporb.generation.draw import GREEDY_BELOW
from deeporb.generation.prompts import MAX_PRIMER_BARS

MAX_SEED = 2**31 - 1
FIELDS = tuple(f.name for f in fields(Settings))
DEFAULTS = asdict(Settings())
FORM_ONLY = ("primer",)  # the upload (JSON: a served piece's id); read by the app, not here
FILL_FIELDS = ("fill.parts", "fill.bars", "fill.candidates")  # fill's members as a form or query spells them
REPEATED = ("instruments", "fill.parts", "fill.bars")  # a form's fields that keep every value sent


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


def _names(value, name: str = "instruments") -> list[str]:
    """A JSON list of names, or form values (repeated fields and/or comma-separated)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestError(f"{name} must be a list of instrument names (got {_shown(value)})")
    return [n.strip() for v in value for n in v.split(",") if n.strip()]


def _flag(name: str, value) -> bool:
    """A JSON boolean, or a form's ``true``/``false`` (``1``/``0``)."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    if not isinstance(value, bool):
        raise RequestError(f"{name} must be true or false (got {_shown(value)})")
    return value


def _name(name: str, value, known: tuple[str, ...], what: str) -> str:
    if not isinstance(value, str):
        raise RequestError(f"{name} must be {what} name (got {_shown(value)})")
    if value not in known:
        said = f"this model knows: {', '.join(known)}" if known else f"this model has no {name}s; leave {name} out"
        raise RequestError(f"unknown {name} {_shown(value)}; {said}")
    return value


def _instruments(value, known: tuple[str, ...]) -> list[str]:
    chosen = list(dict.fromkeys(_names(value)))
    if not chosen:
        raise RequestError(f"instruments is empty; name one or more of: {', '.join(known)}")
    bad = [k for k in chosen if k not in known]
    if bad:
        raise RequestError(f"unknown instrument {', '.join(map(_shown, bad[:5]))}; this model knows: {', '.join(known)}")
    return chosen


def _fill_parts(value, known: tuple[str, ...]) -> list[str]:
    """Instrument keys; one the primer lacks is added to the piece, so any the model knows."""
    chosen = list(dict.fromkeys(_names(value, "fill.parts")))
    if not chosen:
        raise RequestError(f"fill.parts is empty; name one or more of: {', '.join(known)} "
                           "(or leave it out: every part of the primer)")
    bad = [k for k in chosen if k not in known]
    if bad:
        raise RequestError(f"unknown part {', '.join(map(_shown, bad[:5]))} in fill.parts; "
                           f"this model knows: {', '.join(known)}")
    return chosen


def _fill_bars(value, most: int) -> list[int]:
    """``[first, last]``: a JSON pair (or one number: that bar alone), or form strings ``5,8``,
    ``5-8``, the field sent twice or once. At most ``most`` bars (the server's max_bars): a fill
    writes them, as a request writes ``bars``."""
    sent = value
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        value = [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        split = []
        for v in value:
            span = re.fullmatch(r"\s*(\d{1,9})\s*-\s*(\d{1,9})\s*", v)
            split += list(span.groups()) if span else v.split(",")
        value = split
    if not isinstance(value, list) or len(value) not in (1, 2):
        raise RequestError(f"fill.bars must be [first, last], the primer's bars from 1, e.g. [5, 8] "
                           f"(a form: 5,8) (got {_shown(sent)})")
    bars = [_whole("fill.bars", v, 1, MAX_PRIMER_BARS) for v in value]
    first, last = bars[0], bars[-1]
    if first > last:
        raise RequestError(f"fill.bars must be [first, last] with first <= last (got {_shown(sent)})")
    if last - first + 1 > most:
        raise RequestError(f"fill.bars {first}-{last} is {last - first + 1} bars, over this server's max_bars of "
                           f"{most}; fill at most {most} bars at a time")
    return [first, last]


def _fill(value, known: tuple[str, ...], most: int) -> Fill:
    """A JSON object ``{"parts": ..., "bars": ...}``: either may be null or left out."""
    if not isinstance(value, Mapping):
        raise RequestError(f'fill must be an object {{"parts": [...], "bars": [first, last]}} (in a form: the '
                           f"fields fill.parts and fill.bars) (got {_shown(value)})")
    unknown = sorted(str(k) for k in value if k not in ("parts", "bars", "candidates"))
    if unknown:
        raise RequestError(f"unknown field {', '.join(_shown('fill.' + k) for k in unknown[:5])}; "
                           "fill has parts, bars and candidates")
    given = {k: v for k, v in value.items() if v is not None and v != "" and v != [""]}
    return Fill(_fill_parts(given["parts"], known) if "parts" in given else None,
                _fill_bars(given["bars"], most) if "bars" in given else None,
                _whole("fill.candidates", given["candidates"], 1, MAX_FILL_CANDIDATES) if "candidates" in given
                else Fill.candidates)


# each field of Settings: how a sent value is read (value, the model's names, the limits)
READERS = {
    "bars": lambda v, m, lim: _bars(v, lim.max_bars),
    "min_bars": lambda v, m, lim: _whole("min_bars", v, 1, lim.max_bars),
    "temperature": lambda v, m, lim: _temperature(v, lim.max_temperature),
    "top_k": lambda v, m, lim: _whole("top_k", v, 0, lim.max_top_k),
    "top_p": lambda v, m, lim: _number("top_p", v, 0.0, 1.0, low_open=True),
    "seed": lambda v, m, lim: _whole("seed", v, 0, MAX_SEED),
    "instruments": lambda v, m, lim: _instruments(v, m.instruments),
    "style": lambda v, m, lim: _name("style", v, m.styles, "a style"),
    "primer_bars": lambda v, m, lim: _whole("primer_bars", v, 0, MAX_PRIMER_BARS),
    "keep_primer": lambda v, m, lim: _flag("keep_primer", v),
    "tempo": lambda v, m, lim: _number("tempo", v, MIN_TEMPO, MAX_TEMPO),
    "fill": lambda v, m, lim: _fill(v, m.instruments, lim.max_bars),
}
assert set(READERS) == set(FIELDS), "every sampling setting is a request field"


def read_fields(sent: Mapping, vocab, limits: Limits) -> Settings:
    """Check what a client sent against the model's names and the limits -> its ``Settings``
    (seeded: a fresh seed when none was sent, so the response can say which one it was).

    ``sent`` maps field names to JSON values or form strings (a form's :data:`REPEATED` fields
    may be lists of their values; ``fill.parts`` / ``fill.bars`` are read into ``fill``). A
    missing field, JSON ``null`` or an empty form string takes the record's default.
    """
    sent = fold_fill(sent)
    unknown = sorted(set(sent) - set(FIELDS) - set(FORM_ONLY))
    if unknown:
        raise RequestError(f"unknown field {', '.join(map(_shown, unknown[:5]))}; the fields are: {', '.join(FIELDS)}")
    given = {k: v for k, v in sent.items() if v is not None and v != "" and v != [""] and k in FIELDS}
    return Settings(**{k: READERS[k](v, vocab, limits) for k, v in given.items()}).seeded()


def fold_fill(sent: Mapping) -> Mapping:
    """``fill.parts`` / ``fill.bars`` (a form's, a query's, or JSON's dotted keys) as one ``fill``."""
    dotted = {k.partition(".")[2]: sent[k] for k in FILL_FIELDS if k in sent}
    if not dotted:
        return sent
    if sent.get("fill") not in (None, ""):
        raise RequestError("send fill as one object or as fill.parts / fill.bars, not both")
    return {**{k: v for k, v in sent.items() if k not in FILL_FIELDS}, "fill": dotted}


def describe(vocab, limits: Limits) -> dict:
    """The fields as ``GET /api/model`` announces them: choices, ranges, defaults."""
    return {
        "instruments": list(vocab.instruments),
        "styles": list(vocab.styles),
        "limits": {
            "bars": [1, limits.max_bars],
            "min_bars": [1, limits.max_bars],  # and at most bars
            "temperature": [0.0, limits.max_temperature],
            "greedy_below": GREEDY_BELOW,  # a smaller temperature is read as 0: greedy
            "top_k": [0, limits.max_top_k],
            "top_p": [0.0, 1.0],  # 0 excluded
            "seed": [0, MAX_SEED],
            "primer_bars": [0, MAX_PRIMER_BARS],
            "tempo": [MIN_TEMPO, MAX_TEMPO],
            "fill_bars": [1, limits.max_bars],  # bars one fill writes (fill.bars: first and last, from 1)
            "fill_candidates": [1, MAX_FILL_CANDIDATES],  # fills written to draw one from (fill.candidates)
            "body_bytes": limits.body_bytes,
            "primer_bytes": limits.primer_bytes,
        },
        "defaults": DEFAULTS,
    }
