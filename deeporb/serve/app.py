"""The HTTP side of ``serve.py``: settings, routes, error answers, and running uvicorn.

FastAPI on uvicorn: an ASGI stack that is small, widely used and kept up, with async
handlers (so a slow client or a queued request holds no thread) and a thread pool for the
little blocking work a handler does (reading a primer). The model runs on one worker thread
(:mod:`deeporb.serve.batcher`); handlers only await its futures.

Every error a client can cause is a 4xx (503 when the queue is full) with the body
``{"error": "one clear line"}``; an unexpected failure is a 500 with the same shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import tempfile
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from hydra.core.config_store import ConfigStore
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from deeporb.checkpoints import load_generator
from deeporb.errors import UserError
from deeporb.render.audio import check_audio
from deeporb.serve.batcher import Batcher, QueueFull
from deeporb.serve.fields import FIELDS, Limits, RequestError, describe, read_fields
from deeporb.serve.pieces import KINDS, PieceStore
from deeporb.serve.service import Composer
from deeporb.stages.sample import RenderConfig, SampleConfig

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("page.html")


@dataclass
class ServeConfig:
    """``python serve.py ckpt_path=RUN_OR_CKPT KEY=VALUE ...``: every setting of the server.

    A request's own defaults (bars, temperature, top_k, top_p) are sample.py's
    (:class:`deeporb.stages.sample.SampleConfig`), so the page and ``sample.py`` agree.
    """

    ckpt_path: str | None = None  # a .ckpt file, or a training run folder
    host: str = "127.0.0.1"  # 0.0.0.0 to be reachable from other machines
    port: int = 8000  # 0: any free port (the printed URL says which)
    device: str = "cpu"  # or cuda
    out_dir: str = "outputs/serve/${now:%Y-%m-%d}/${now:%H-%M-%S}"  # the run folder of the pieces
    keep_pieces: int = 500  # older pieces' files are deleted past this count
    max_bars: int = 64  # longest piece a request may ask for (primer bars not counted)
    max_temperature: float = 5.0
    max_queue: int = 64  # requests waiting for the model; one more is answered 503
    max_batch_rows: int = 64  # sampler rows generated together (tracks view: one per instrument)
    batch_window_ms: float = 10.0  # the worker waits this long for requests sent together, again while more come
    max_body_bytes: int = 2_000_000  # a larger request body is answered 413
    max_primer_bytes: int = 1_000_000  # a larger primer is answered 413
    render: RenderConfig = field(default_factory=RenderConfig)  # synth, soundfont, sample_rate of the WAVs


ConfigStore.instance().store(name="serve_schema", node=ServeConfig)


def no_nan(text: str):
    raise RequestError(f"{text} is not a number JSON allows")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused past ``limit`` bytes whether or not it declared its length."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"request body is {int(declared):,} bytes, over the limit of {limit:,}", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"request body is over the limit of {limit:,} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request, body: bytes, primer_limit: int) -> tuple[dict, UploadFile | None]:
    """Multipart fields (a field sent several times keeps every value) and the ``primer`` file."""

    async def stream():
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=1, max_fields=len(FIELDS) * 8,
                                     max_part_size=primer_limit).parse()
    except MultiPartException as e:
        raise RequestError(f"unreadable multipart body: {e.message}") from None
    sent: dict = {}
    primer = None
    for name, value in form.multi_items():
        if isinstance(value, UploadFile):
            if name != "primer":
                raise RequestError(f"unexpected file field {name!r}; the one file field is primer")
            primer = value
        elif name == "primer":
            raise RequestError("primer must be a file upload (a MIDI file), not a text field")
        elif name == "instruments":
            sent.setdefault(name, []).append(value)
        else:
            sent[name] = value
    return sent, primer


def create_app(cfg: ServeConfig, model) -> FastAPI:
    """The app around a loaded model; its batcher's worker thread stops when the app shuts down."""
    defaults = SampleConfig()
    request_defaults = {"instruments": None, "style": None, "bars": defaults.bars, "temperature": defaults.temperature,
                        "top_k": defaults.top_k, "top_p": defaults.top_p, "seed": None}
    vocab = model.vocab
    limits = Limits(cfg.max_bars, cfg.max_temperature, len(vocab), cfg.max_body_bytes, cfg.max_primer_bytes)
    store = PieceStore(cfg.out_dir, cfg.keep_pieces)
    composer = Composer(model, store, cfg.render, defaults.primer_bars)
    batcher = Batcher(composer.run_batch, cfg.max_queue, cfg.max_batch_rows, cfg.batch_window_ms / 1000)
    session = composer.session
    model_info = {
        "checkpoint": Path(str(getattr(model, "checkpoint_path", "model"))).name,
        "view": session.view,
        "meters": sorted(session.time_signatures, key=lambda m: -int(session.time_signatures[m])),
        "default_meter": "{}/{}".format(*session.meter().signatures[0]),
        "qpm": session.qpm_median,
        "primer_bars": defaults.primer_bars,
        **describe(vocab.instruments, vocab.styles, limits, request_defaults),
    }
    model_info["limits"] |= {"queue": cfg.max_queue, "batch_rows": cfg.max_batch_rows, "keep_pieces": cfg.keep_pieces}

    @asynccontextmanager
    async def lifespan(_):
        yield
        await asyncio.to_thread(batcher.close)  # answer what is queued, then stop the worker

    app = FastAPI(title="DeepOrb", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.batcher, app.state.store = batcher, store

    @app.exception_handler(RequestError)
    async def request_error(_, e: RequestError):
        return JSONResponse({"error": str(e)}, status_code=e.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException):
        message = {404: f"no such page or file: {request.url.path}",
                   405: f"{request.method} is not allowed on {request.url.path}"}.get(e.status_code, str(e.detail))
        return JSONResponse({"error": message}, status_code=e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(_, e: Exception):
        log.exception("internal error")
        return JSONResponse({"error": f"internal error ({type(e).__name__}); see the server's log"}, status_code=500)

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(PAGE.read_text())

    @app.get("/api/model")
    async def about_model():
        return model_info

    @app.get("/api/status")
    async def status():
        """How busy the server is, and how well it batches (requests per batch run so far)."""
        runs = list(batcher.batches)
        return {"waiting": batcher.waiting, "batches": len(runs), "requests": sum(runs),
                "largest_batch": max(runs, default=0), "pieces": len(store)}

    @app.post("/api/generate")
    async def generate(request: Request):
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in ("application/json", "multipart/form-data"):
            raise RequestError(f"send application/json or multipart/form-data (got {kind or 'no content type'!r})", 415)
        body = await read_body(request, cfg.max_body_bytes)
        primer = None
        if kind == "application/json":
            try:
                sent = json.loads(body or b"{}", parse_constant=no_nan)
            except (ValueError, UnicodeDecodeError) as e:
                raise RequestError(f"the body is not valid JSON: {str(e).splitlines()[0]}") from None
            if not isinstance(sent, dict):
                raise RequestError(f"the body must be a JSON object of fields, not {type(sent).__name__}")
        else:
            sent, primer = await read_form(request, body, cfg.max_primer_bytes)
        fresh = int(np.random.SeedSequence().entropy % (2**31))
        piece_request = read_fields(sent, vocab.instruments, vocab.styles, limits, request_defaults, fresh)
        if primer is None:
            plan = await run_in_threadpool(composer.plan, piece_request, None)
        else:
            data = await primer.read()
            name = Path(primer.filename or "primer.mid").name
            if not data:
                raise RequestError(f"primer {name!r} is empty; upload a MIDI file")
            if len(data) > cfg.max_primer_bytes:
                raise RequestError(f"primer {name!r} is {len(data):,} bytes, over the limit of {cfg.max_primer_bytes:,}", 413)
            with tempfile.TemporaryDirectory(prefix="deeporb-primer-") as tmp:
                path = Path(tmp) / "primer.mid"
                path.write_bytes(data)
                plan = await run_in_threadpool(composer.plan, piece_request, path, name)
        try:
            future = batcher.submit(composer.job(plan))
        except QueueFull as e:
            raise RequestError(f"the server is busy ({e}); retry in a moment", 503) from None
        piece = await asyncio.wrap_future(future)
        base, made = f"/api/pieces/{piece.id}", piece.composition
        return {
            "id": piece.id,
            "midi_url": f"{base}.mid",
            "png_url": f"{base}.png",
            "wav_url": f"{base}.wav",
            "seconds": made.seconds,
            "notes": piece.notes,
            "instruments": made.instruments,
            "played": made.played,  # the instruments that hold at least one note
            "seed": piece.seed,
            "style": made.style,
            "bars": made.bars,
            "time_signature": made.time_signature,
            "qpm": made.tempos[0][1],
        }

    @app.get("/api/pieces/{name}")
    async def piece_file(name: str):
        piece_id, _, ext = name.partition(".")
        if ext not in KINDS:
            raise RequestError(f"no such file: {name} (a piece has .mid, .png and .wav)", 404)
        path = await run_in_threadpool(composer.render, piece_id, ext)
        if path is None:
            raise RequestError(f"no piece {piece_id!r} here (unknown, or pruned past the newest {cfg.keep_pieces})", 404)
        filename = f"deeporb-{piece_id[:8]}.{ext}"
        return FileResponse(path, media_type=KINDS[ext], filename=filename if ext == "mid" else None)

    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), so the printed URL is the real one."""
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port} ({e.strerror or e}); pass another port= "
                        "(0: any free port) or host=") from None


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def run(cfg: ServeConfig) -> None:
    """What ``python serve.py`` does: load the model, bind, print the URL, serve until Ctrl-C."""
    import uvicorn

    check_audio(cfg.render.synth, cfg.render.soundfont, cfg.render.fluidsynth)  # fail before loading
    model = load_generator(cfg.ckpt_path, cfg.device)
    app = create_app(cfg, model)
    sock = bind(cfg.host, cfg.port)
    print(f"serving {model.checkpoint_path} at {url_of(sock)}  (pieces in {cfg.out_dir})", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
