"""The HTTP side of ``serve.py``: settings, routes, error answers, and running uvicorn.

FastAPI on uvicorn: an ASGI stack that is small, widely used and kept up, with async
handlers (so a slow client or a queued request holds no thread) and a thread pool for the
little blocking work a handler does (reading a primer). The model runs on one worker thread
(:mod:`deeporb.serve.batcher`); handlers only await its futures.

``POST /api/generate`` continues a primer, or with ``fill`` rewrites bars and parts of it (the
rest kept note for note): the primer is a multipart upload, or in a JSON body the ``id`` of a
piece this server wrote (``"primer": "q1V..."``), so a client can fill its pieces by id.

Beside its own API it answers the original DeepOrb service's ``GET /generate/midi`` and
``GET /generate/wav``: a new piece by the same path, its file as the body.

Every error a client can cause is a 4xx (503 when the queue is full) with the body
``{"error": "one clear line"}``; an unexpected failure is a 500 with the same shape.

What a request may cost is bounded before it is paid: connections, idle and header time
(:mod:`deeporb.serve.guard`), body time and size (:func:`read_body`), JSON depth
(:func:`read_json`), every field (:mod:`deeporb.serve.fields`), queue length, the WAV's
length and drawing time (:meth:`deeporb.serve.service.Composer.file`), and the folder of
pieces (:class:`deeporb.serve.pieces.PieceStore`). The Host header is checked, so a web page
elsewhere cannot reach a server on this machine by DNS rebinding. There is no authentication:
README, "Running the service safely".
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import tempfile
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from hydra.core.config_store import ConfigStore
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from deeporb.checkpoints import checkpoint_or_default, load_generator
from deeporb.errors import UserError
from deeporb.generation.prompts import MAX_PRIMER_BARS
from deeporb.render.audio import check_audio, check_render_length
from deeporb.serve.batcher import Batcher, QueueFull
from deeporb.serve.fields import FIELDS, REPEATED, Limits, RequestError, describe, read_fields
from deeporb.serve.guard import HostCheck, guarded_protocol, host_names, is_loopback, trim_soon
from deeporb.serve.pieces import KINDS, PieceStore
from deeporb.serve.service import Composer
from deeporb.stages.sample import RenderConfig

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("page.html")


@dataclass
class ServeConfig:
    """``python serve.py ckpt_path=RUN_OR_CKPT KEY=VALUE ...``: every setting of the server.

    A request's fields and their defaults are sample.py's sampling settings
    (:class:`deeporb.generation.compose.Settings`), so the page and ``sample.py`` agree.
    """

    ckpt_path: str | None = None  # a .ckpt file, a training run folder, or pretrained:NAME; None: pretrained:bach_chorales
    host: str = "127.0.0.1"  # 0.0.0.0 to be reachable from other machines (no authentication: see README)
    allowed_hosts: list[str] | None = None  # Host header names answered; None: loopback names, plus the bind
    #   host's own names when bound beyond loopback; ["*"]: any (DNS rebinding then reaches the server)
    port: int = 8000  # 0: any free port (the printed URL says which)
    device: str = "cpu"  # or cuda
    out_dir: str = "outputs/serve/${now:%Y-%m-%d}/${now:%H-%M-%S}"  # the run folder of the pieces
    keep_pieces: int = 500  # older pieces' files are deleted past this count (also those of an earlier run there)
    max_pieces_bytes: int = 1_000_000_000  # ... and past these bytes of files, oldest first
    max_bars: int = 64  # longest piece a request may ask for (primer bars not counted)
    max_temperature: float = 5.0
    max_queue: int = 64  # requests waiting for the model; one more is answered 503
    max_batch_rows: int = 64  # sampler rows generated together (tracks view: one per instrument)
    batch_window_ms: float = 10.0  # the worker waits this long for requests sent together, again while more come
    max_body_bytes: int = 2_000_000  # a larger request body is answered 413
    max_primer_bytes: int = 1_000_000  # a larger primer is answered 413
    max_fill_primer_bars: int = 256  # a longer primer cannot be filled (413): a fill reads all of it and writes
    #   it back whole (at most 1023; the bars it writes anew are at most max_bars)
    max_connections: int = 200  # open connections; one more is answered 503 (bodies held: at most this x max_body_bytes)
    idle_timeout_s: float = 5.0  # a connection with no request in progress is closed after this long idle
    header_timeout_s: float = 10.0  # ... and one whose request headers take longer than this to arrive
    body_timeout_s: float = 30.0  # a request body that takes longer to arrive is answered 408
    render_timeout_s: float = 60.0  # a WAV that takes longer to draw is stopped, answered 503
    max_renders: int = 2  # piano rolls and WAVs drawn at once (WAVs each in a child process)
    render: RenderConfig = field(default_factory=RenderConfig)  # synth, soundfont, sample_rate, max_seconds of the WAVs


ConfigStore.instance().store(name="serve_schema", node=ServeConfig)


def no_nan(text: str):
    raise RequestError(f"{text} is not a number JSON allows")


def read_json(body: bytes) -> dict:
    """The fields of a JSON body; anything else is one line.

    Nesting is capped while parsing: ``json.loads`` counts each level against Python's recursion
    limit and stops with a RecursionError past it (a body of 100,000 ``[`` is refused at the
    first thousand, in milliseconds). A scan before parsing would have to skip strings: with a
    regular expression that took most of a second on a 2 MB string, and longer on some."""
    try:
        sent = json.loads(body or b"{}", parse_constant=no_nan)
    except RecursionError:
        raise RequestError("the body nests arrays or objects too deeply; send an object of fields") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(f"the body is not valid JSON: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(sent, dict):
        raise RequestError(f"the body must be a JSON object of fields, not {type(sent).__name__}")
    return sent


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The body, refused past ``limit`` bytes whether or not it declared its length, and past
    ``timeout`` seconds (a body sent a byte a second holds its connection and its memory). Either
    refusal closes the connection: the rest of the body is not read."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"request body is {int(declared):,} bytes, over the limit of {limit:,}", 413, close=True)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestError(f"request body is over the limit of {limit:,} bytes", 413, close=True)
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError(f"the request body took over {timeout:g} s to arrive ({size:,} bytes came)", 408,
                           close=True) from None
    except ClientDisconnect:  # no one reads this answer; it keeps the log free of tracebacks
        raise RequestError("the client closed the connection before its body arrived", close=True) from None
    finally:
        if size >= 1_000_000:  # a large body, freed when its request is over: give its memory back
            trim_soon()
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
        elif name in REPEATED:  # instruments, fill.parts, fill.bars
            sent.setdefault(name, []).append(value)
        else:
            sent[name] = value
    return sent, primer


def check_limits(cfg: ServeConfig) -> None:
    """One line for a limit that would refuse everything, or nothing."""
    positive = ("max_bars", "max_queue", "max_batch_rows", "max_body_bytes", "max_primer_bytes", "max_connections",
                "idle_timeout_s", "header_timeout_s", "body_timeout_s", "render_timeout_s", "max_renders")
    for name in positive:
        if not getattr(cfg, name) > 0:
            raise UserError(f"{name} must be above 0 (got {getattr(cfg, name)})")
    if not 1 <= cfg.max_fill_primer_bars < MAX_PRIMER_BARS:
        raise UserError(f"max_fill_primer_bars must be between 1 and {MAX_PRIMER_BARS - 1} "
                        f"(got {cfg.max_fill_primer_bars}): the longest primer a fill rewrites, in bars")
    check_render_length(0.0, cfg.render.max_seconds)


def open_store(cfg: ServeConfig) -> PieceStore:
    """The folder of pieces, claimed and pruned (before the model loads: a wrong out_dir fails fast)."""
    return PieceStore(cfg.out_dir, cfg.keep_pieces, cfg.max_pieces_bytes)


def create_app(cfg: ServeConfig, model, store: PieceStore | None = None) -> FastAPI:
    """The app around a loaded model; its batcher's worker thread stops when the app shuts down."""
    check_limits(cfg)
    vocab = model.vocab
    limits = Limits(cfg.max_bars, cfg.max_temperature, len(vocab), cfg.max_body_bytes, cfg.max_primer_bytes)
    store = store if store is not None else open_store(cfg)  # (an empty store is falsy)
    composer = Composer(model, store, cfg.render, cfg.render_timeout_s, cfg.max_renders, cfg.max_bars,
                        cfg.max_fill_primer_bars)
    batcher = Batcher(composer.run_batch, cfg.max_queue, cfg.max_batch_rows, cfg.batch_window_ms / 1000)
    session = composer.session
    model_info = {
        "checkpoint": Path(str(getattr(model, "checkpoint_path", "model"))).name,
        "view": session.view,
        "meters": sorted(session.time_signatures, key=lambda m: -int(session.time_signatures[m])),
        "default_meter": "{}/{}".format(*session.meter().signatures[0]),
        "qpm": session.qpm_median,
        "fills": composer.can_fill,  # whether fill.parts / fill.bars can rewrite part of a primer
        **describe(vocab, limits),
    }
    model_info["limits"] |= {"queue": cfg.max_queue, "batch_rows": cfg.max_batch_rows, "keep_pieces": cfg.keep_pieces,
                             "pieces_bytes": cfg.max_pieces_bytes, "wav_seconds": cfg.render.max_seconds,
                             "fill_primer_bars": composer.max_fill_primer_bars}

    @asynccontextmanager
    async def lifespan(_):
        try:
            yield
        finally:
            await asyncio.to_thread(batcher.close)  # answer what is queued, then stop the worker
            store.close()

    app = FastAPI(title="DeepOrb", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.batcher, app.state.store = batcher, store
    app.add_middleware(HostCheck, allowed=host_names(cfg.host, cfg.allowed_hosts))

    @app.exception_handler(RequestError)
    async def request_error(_, e: RequestError):
        return JSONResponse({"error": str(e)}, status_code=e.status, headers={"connection": "close"} if e.close else None)

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

    async def composed(plan):
        """The piece of a plan, generated in a batch with whatever else is queued."""
        try:
            future = batcher.submit(composer.job(plan))
        except QueueFull as e:
            raise RequestError(f"the server is busy ({e}); retry in a moment", 503) from None
        return await asyncio.wrap_future(future)

    def served_primer(piece_id) -> tuple[str, bytes] | None:
        """A JSON body's ``primer``: the id of a piece this server wrote and keeps -> (name, its MIDI)."""
        if piece_id is None or piece_id == "":  # as a field left out
            return None
        if not isinstance(piece_id, str):
            raise RequestError("primer in a JSON body is the id of a piece this server wrote (an answer's id); "
                               "to upload a MIDI file, send multipart/form-data")
        path = store.find(piece_id, "mid")
        try:
            data = path.read_bytes() if path is not None else None
        except FileNotFoundError:  # pruned since it was found
            data = None
        if data is None:
            raise RequestError(f"no piece {piece_id[:40]!r} here to use as primer (unknown, or pruned: the server "
                               f"keeps the newest {cfg.keep_pieces} pieces); upload its MIDI as multipart/form-data", 404)
        return f"{piece_id}.mid", data

    @app.post("/api/generate")
    async def generate(request: Request):
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in ("application/json", "multipart/form-data"):
            raise RequestError(f"send application/json or multipart/form-data (got {kind or 'no content type'!r})", 415)
        body = await read_body(request, cfg.max_body_bytes, cfg.body_timeout_s)
        if kind == "application/json":
            sent = read_json(body)
            settings = read_fields(sent, vocab, limits)
            primer = served_primer(sent.get("primer"))
        else:
            sent, upload = await read_form(request, body, cfg.max_primer_bytes)
            settings = read_fields(sent, vocab, limits)
            primer = None if upload is None else (Path(upload.filename or "primer.mid").name, await upload.read())
        if primer is None:
            plan = await run_in_threadpool(composer.plan, settings, None)
        else:
            name, data = primer
            if not data:
                raise RequestError(f"primer {name!r} is empty; upload a MIDI file")
            if len(data) > cfg.max_primer_bytes:
                raise RequestError(f"primer {name!r} is {len(data):,} bytes, over the limit of {cfg.max_primer_bytes:,}", 413)
            with tempfile.TemporaryDirectory(prefix="deeporb-primer-") as tmp:
                path = Path(tmp) / "primer.mid"
                path.write_bytes(data)
                plan = await run_in_threadpool(composer.plan, settings, path, name)
        piece = await composed(plan)
        base, made = f"/api/pieces/{piece.id}", piece.composition
        return {
            "id": piece.id,
            "midi_url": f"{base}.mid",
            "png_url": f"{base}.png",
            "wav_url": f"{base}.wav",
            "musicxml_url": f"{base}.musicxml",  # the score, for notation programs
            "seconds": made.seconds,
            "notes": piece.notes,
            "instruments": made.instruments,
            "played": made.played,  # the instruments that hold at least one note
            "seed": piece.seed,
            "style": made.style,
            "bars": made.bars,
            "time_signature": made.time_signature,
            "qpm": made.tempos[0][1],
            "ended": made.ended,  # the model ended it (<eos>) before `bars`
            "settings": asdict(plan.settings),  # the whole record: send it back to get the same piece
        }

    @app.get("/api/pieces/{name}")
    async def piece_file(name: str):
        piece_id, _, ext = name.partition(".")
        if ext not in KINDS:
            raise RequestError(f"no such file: {name} (a piece has .mid, .png, .wav and .musicxml)", 404)
        path = await composer.file(piece_id, ext)
        if path is None:
            raise RequestError(f"no piece {piece_id!r} here (unknown, or pruned: the server keeps the newest "
                               f"{cfg.keep_pieces} pieces, {cfg.max_pieces_bytes:,} bytes)", 404)
        filename = f"deeporb-{piece_id[:8]}.{ext}"
        return FileResponse(path, media_type=KINDS[ext], filename=filename if ext in ("mid", "musicxml") else None)

    async def original_route(request: Request, ext: str) -> FileResponse:
        """``GET /generate/midi`` and ``GET /generate/wav``, the original DeepOrb service's routes: a
        new piece with the defaults of ``POST /api/generate``, answered as the file itself (an
        attachment, as the original sent it). Its query may carry that route's fields (the original
        took none); the piece's id and seed come back as ``X-DeepOrb-Piece`` / ``X-DeepOrb-Seed``."""
        query = request.query_params
        if "primer" in query:
            raise RequestError("primer is an upload: POST it to /api/generate as multipart/form-data")
        sent = {k: query.getlist(k) if k in REPEATED else query[k] for k in query}
        plan = await run_in_threadpool(composer.plan, read_fields(sent, vocab, limits), None)
        piece = await composed(plan)
        path = await composer.file(piece.id, ext)
        if path is None:
            raise RequestError("the piece was pruned before its file was drawn (a busy server); retry", 503)
        return FileResponse(path, media_type=KINDS[ext], filename=f"deeporb-{piece.id[:8]}.{ext}",
                            headers={"x-deeporb-piece": piece.id, "x-deeporb-seed": str(piece.seed)})

    @app.get("/generate/midi")
    async def original_midi(request: Request):
        return await original_route(request, "mid")

    @app.get("/generate/wav")
    async def original_wav(request: Request):
        return await original_route(request, "wav")

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


def server_config(cfg: ServeConfig, app: FastAPI):
    """uvicorn's settings for ``app``: its HTTP/1.1 protocol with the connection limits and timers
    of :mod:`deeporb.serve.guard`, and the idle (keep-alive) timeout."""
    import uvicorn

    protocol = guarded_protocol(cfg.header_timeout_s, cfg.max_connections)
    return uvicorn.Config(app, http=protocol, timeout_keep_alive=cfg.idle_timeout_s, log_level="warning")


def no_authentication_warning(cfg: ServeConfig) -> str | None:
    """One line when the server is reachable beyond this machine, which it serves unauthenticated."""
    if is_loopback(cfg.host):
        return None
    names = ", ".join(host_names(cfg.host, cfg.allowed_hosts))
    return (f"warning: host={cfg.host} serves other machines, with no authentication: anyone who reaches it can use it "
            f"(put it behind a reverse proxy with authentication to expose it); Host names answered: {names} "
            "(allowed_hosts=[...])")


def run(cfg: ServeConfig) -> None:
    """What ``python serve.py`` does: load the model, bind, print the URL, serve until Ctrl-C."""
    import uvicorn

    check_audio(cfg.render.synth, cfg.render.soundfont, cfg.render.fluidsynth)  # fail before loading
    check_limits(cfg)
    store = open_store(cfg)
    model = load_generator(checkpoint_or_default(cfg.ckpt_path), cfg.device)  # none given: the bundled model
    app = create_app(cfg, model, store)
    sock = bind(cfg.host, cfg.port)
    warning = no_authentication_warning(cfg)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    print(f"serving {model.checkpoint_path} at {url_of(sock)}  (pieces in {cfg.out_dir})", flush=True)
    uvicorn.Server(server_config(cfg, app)).run(sockets=[sock])
