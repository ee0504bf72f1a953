"""What keeps ``serve.py`` answering under abuse at the connection level: how many connections,
how long one may idle or take to send its headers, and which Host names it answers to.

uvicorn has keep-alive and concurrency limits, but no timer on a connection that never sends a
request, none on headers sent a byte a second, and its concurrency limit answers in plain text.
:class:`GuardedProtocol` is uvicorn's own HTTP/1.1 protocol (h11) with those added: the idle
timer armed from the start, a header timer armed whenever the connection waits for a request
(cancelled when a request's headers are complete, so a long request is never cut), and
connections past ``max_connections`` answered 503 ``{"error"}``. The body has its own timeout
where it is read (:func:`deeporb.serve.app.read_body`), which calls :func:`trim_soon` after a
large one.

:class:`HostCheck` is Starlette's ``TrustedHostMiddleware`` answering in the project's shape.
Checking Host is what stops DNS rebinding: a page on another site whose name is made to
resolve to this machine sends its own name as Host, and is refused.
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import json
import socket
import time
from collections.abc import Sequence

import h11
from starlette.datastructures import Headers
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from deeporb.errors import UserError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
BAD_HTTP = ("the request is not HTTP/1.1 this server can read (a malformed request line or header, an HTTP/1.1 "
            "request without Host, or headers over 16 kB)")
_PASSED = "deeporb.host_passed"  # set in the scope when the Host check let a request through


def guarded_protocol(header_timeout: float, max_connections: int) -> type[H11Protocol]:
    """:class:`GuardedProtocol` with these limits (uvicorn builds one protocol per connection)."""
    return type("GuardedProtocol", (GuardedProtocol,),
                {"header_timeout": float(header_timeout), "max_connections": int(max_connections)})


class GuardedProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus the idle timer from the start, the header timer and the
    connection limit (made by :func:`guarded_protocol`)."""

    header_timeout = 10.0  # s from waiting for a request to its headers complete
    max_connections = 200
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.app = _too_many(self.max_connections)  # answered as soon as its headers are in
        # uvicorn arms its keep-alive timer only after a response: a connection that never sends
        # anything waits as long as an idle one between requests
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self._close)
        self._arm_header_timer()

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()
        if self.cycle is not cycle:  # a request's headers are complete
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        self._arm_header_timer()  # before: uvicorn goes on to a pipelined request from here
        super().on_response_complete()
        if self.transport.is_closing():
            self._cancel_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes h11 cannot read as a request, in the project's shape."""
        body = json.dumps({"error": BAD_HTTP}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"), h11.Data(data=body),
                      h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._close)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


def _too_many(limit: int) -> ASGIApp:
    """The answer to a connection past the limit (uvicorn's own ``limit_concurrency`` answers in plain text)."""
    return JSONResponse({"error": f"the server has its {limit} connections open (max_connections); retry in a moment"},
                        status_code=503, headers={"connection": "close"})


_LIBC = ctypes.CDLL(None)
_TRIM = getattr(_LIBC, "malloc_trim", None)  # glibc's; elsewhere nothing to do
_next_trim = 0.0


def trim_soon(delay: float = 1.0) -> None:
    """Hand the heap pages of freed request bodies back to the system, ``delay`` s from now (once
    the request that held one is over), at most once per ``delay``. glibc keeps them otherwise:
    1,200 connections holding 1.9 MB bodies left the server 200 MB larger after they closed;
    with this, it went back to where it started (``benchmarks/serve_abuse.py``)."""
    global _next_trim
    now = time.monotonic()
    if _TRIM is None or now < _next_trim:
        return
    _next_trim = now + delay
    asyncio.get_running_loop().call_later(delay, _TRIM, 0)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def host_names(host: str, allowed: Sequence[str] | None) -> list[str]:
    """The Host header names to answer to: ``allowed`` when set (``*``: any); bound to loopback,
    the loopback names; bound beyond, the bind host's own names (the machine's name and
    addresses when bound to every interface) and the loopback names."""
    if allowed is not None:
        for name in allowed:  # TrustedHostMiddleware's rule, checked here for one line instead of an assert
            if "*" in name[1:] or (name.startswith("*") and name != "*" and not name.startswith("*.")):
                raise UserError(f"allowed_hosts: {name!r} is not a host name; use NAME, *.DOMAIN or *")
        return [str(name).lower() for name in allowed]
    names = list(LOOPBACK_NAMES)
    if is_loopback(host):
        return list(dict.fromkeys(names + [_bracketed(host).lower()]))
    own = [host]
    if host in ("", "0.0.0.0", "::"):
        own = [socket.gethostname(), socket.getfqdn()]
        try:
            own += [info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None)]
        except OSError:
            pass
    return list(dict.fromkeys(names + [_bracketed(name).lower() for name in own if name]))


def _bracketed(host: str) -> str:
    """An IPv6 address as a Host header writes it."""
    return f"[{host.strip('[]')}]" if ":" in host else host


class HostCheck:
    """Starlette's ``TrustedHostMiddleware``, refusing with 400 ``{"error"}``: it answers a wrong
    Host in plain text of its own, so that answer is replaced here (its check is kept as is)."""

    def __init__(self, app: ASGIApp, allowed: Sequence[str]) -> None:
        self.app, self.allowed = app, list(allowed)
        self.check = TrustedHostMiddleware(self._passed, allowed_hosts=self.allowed, www_redirect=False)

    async def _passed(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_PASSED] = True
        await self.app(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def answer(message) -> None:
            if scope.get(_PASSED):
                await send(message)
            elif message["type"] == "http.response.start":  # the middleware's own refusal
                host = Headers(scope=scope).get("host")
                said = f"Host {host[:100]!r}" if host else "a request without a Host header"
                refusal = JSONResponse({"error": f"{said} is not a name of this server; it answers to "
                                                 f"{', '.join(self.allowed)} (allowed_hosts)"}, status_code=400)
                await refusal(scope, receive, send)

        await self.check(scope, receive, answer)
