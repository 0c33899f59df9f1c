"""The drawing demo: a small Starlette app serving one static page and one JSON endpoint. The server
preprocesses the picture like ``evaluate.py predict=`` and returns every number the page shows
(``digits.demo.lesson.explain``); the page's JavaScript only draws and displays.
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import h11
import torch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from digits.config import check, is_int, is_number
from digits.data import standardize
from digits.demo.lesson import LessonError, explain
from digits.errors import DigitsError
from digits.handwriting import MAX_PIXELS, ImageError, load_image, to_mnist
from digits.module import DigitsModule
from digits.sigmoid import sigmoid_threshold

log = logging.getLogger("digits")
STATIC = Path(__file__).with_name("static")


class DemoError(DigitsError, OSError):
    """The demo cannot listen where it is told (address in use, not this machine's, ...)."""


class UploadTooLargeError(DigitsError, ValueError):
    """A request body larger than ``max_upload_bytes``."""


class UploadTimeoutError(DigitsError, TimeoutError):
    """A request body that did not arrive within ``body_timeout_s``."""


class BusyError(DigitsError, RuntimeError):
    """No turn to decode a picture within ``queue_timeout_s``: ``max_decodes`` pictures are being read."""


DRAIN_FACTOR = 4  # how far over max_upload_bytes a body is still read (and dropped) so its client sees the 413
STATUS = {UploadTooLargeError: 413, UploadTimeoutError: 408, BusyError: 503}  # any other DigitsError: 422


@dataclass(frozen=True)
class Limits:
    """What one request, and all of them together, may cost (configs/demo.yaml explains each)."""

    max_upload_bytes: int
    max_pixels: int
    max_decodes: int
    queue_timeout_s: float
    header_timeout_s: float
    body_timeout_s: float
    keep_alive_s: float
    max_connections: int
    allowed_hosts: tuple[str, ...]

    @classmethod
    def from_config(cls, cfg: Any) -> Limits:
        return cls(
            **{name: cfg[name] for name in cls.__dataclass_fields__ if name != "allowed_hosts"},
            allowed_hosts=tuple(cfg.allowed_hosts),
        )


class Demo:
    """One loaded network and what the page asks of it."""

    def __init__(self, module: DigitsModule, checkpoint: Path, max_upload_bytes: int, scratch: Path) -> None:
        self.module = module.eval()
        self.checkpoint = checkpoint
        self.max_upload_bytes = max_upload_bytes
        self.scratch = scratch  # the run folder: each picture lives there only while it is read

    @torch.no_grad()
    def logits(self, picture: torch.Tensor) -> torch.Tensor:
        """The network's (C,) logits for one (1, 28, 28) picture in [0, 1], normalised like MNIST."""
        device = next(self.module.parameters()).device
        return self.module(standardize(picture)[None].to(device))[0].float().cpu()

    def analyse(
        self, data: bytes, target: int | None, temperature: float, max_pixels: int = MAX_PIXELS
    ) -> dict[str, Any]:
        """Image bytes -> the picture the network receives -> logits -> the lesson's numbers."""
        started = time.perf_counter()
        # load_image reads files (its size checks need one): a temporary file, deleted at once.
        with tempfile.NamedTemporaryFile(dir=self.scratch, prefix="picture-") as file:
            file.write(data)
            file.flush()
            try:
                image = load_image(file.name, max_pixels)
            except ImageError as error:  # its message names the temporary file: name the upload instead
                raise ImageError(str(error).replace(file.name, "the picture")) from error
        picture, notes = to_mnist(image)
        preprocessed = time.perf_counter()
        result = explain(self.logits(picture), target, temperature, sigmoid_threshold(self.module.loss_fn))
        result["picture"] = picture[0].tolist()
        result["notes"] = notes
        finished = time.perf_counter()
        result["server_ms"] = (finished - started) * 1000
        result["preprocessing_ms"] = (preprocessed - started) * 1000
        return result

    def warm_up(self) -> None:
        """One picture through the whole path before the URL is printed, so the first stroke does not pay
        torch's and PIL's lazy initialisation."""
        from PIL import Image, ImageDraw

        image = Image.new("L", (280, 280), 255)
        ImageDraw.Draw(image).line([(140, 40), (140, 240)], fill=0, width=20)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        self.analyse(buffer.getvalue(), None, 1.0)


def parse_settings(query: dict[str, str]) -> tuple[int | None, float]:
    """``target`` (a digit, or empty for the prediction) and ``temperature`` from the query string."""
    raw_target, raw_temperature = query.get("target", ""), query.get("temperature", "1")
    try:
        target = None if raw_target in ("", "auto") else int(raw_target)
    except ValueError:
        raise LessonError(f"target={raw_target!r} is not a digit: pick 0-9 or leave it empty") from None
    try:
        temperature = float(raw_temperature)
    except ValueError:
        raise LessonError(f"temperature={raw_temperature!r} is not a number") from None
    return target, temperature


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body, refused past ``limit`` bytes (never held beyond it) or ``timeout`` seconds. A body
    up to ``DRAIN_FACTOR`` times the limit is read to its end first: a client still sending when the server
    answers and closes would get a broken pipe instead of the message."""
    too_large = UploadTooLargeError(
        f"the image is larger than the demo accepts ({limit / 1e6:.1f} MB, "
        "the config value max_upload_bytes): send a smaller PNG or JPEG"
    )
    drain_limit = DRAIN_FACTOR * limit
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > drain_limit:
        raise too_large
    chunks, size = [], 0
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > drain_limit:
                    raise too_large
                if size <= limit:
                    chunks.append(chunk)
    except TimeoutError:
        raise UploadTimeoutError(
            f"the picture did not arrive within {timeout:g} s (the config value body_timeout_s)"
        ) from None
    if size > limit:
        raise too_large
    return b"".join(chunks)


class LocalOnly:
    """Answers only requests whose ``Host`` is a name it listens on, and refuses cross-origin POSTs (as
    Jupyter does): a page on another site can make its host name resolve to 127.0.0.1 (DNS rebinding)."""

    def __init__(self, app: ASGIApp, hosts: set[str]) -> None:
        self.app, self.hosts = app, {host.lower() for host in hosts}
        self.origins = {f"http://{host}" for host in self.hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            host, origin = headers.get("host", "").lower(), headers.get("origin")
            refusal = None
            if host not in self.hosts:
                refusal = f"Host {host!r} is not a name this demo listens on (config value allowed_hosts)"
            elif origin is not None and scope["method"] not in ("GET", "HEAD") and origin.lower() not in self.origins:
                refusal = f"cross-origin request from {origin!r} refused"
            if refusal is not None:
                log.warning("demo: %s", refusal)
                await PlainTextResponse(refusal, status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def host_names(sock: socket.socket, allowed: tuple[str, ...]) -> set[str]:
    """``name:port`` for each name the demo answers to: the loopback names, the address it listens
    on, and ``allowed`` (port 80: the bare names too, as browsers send them)."""
    address, port = sock.getsockname()[:2]
    names = {"127.0.0.1", "localhost", "[::1]", f"[{address}]" if ":" in address else address}
    names |= {f"[{name}]" if ":" in name and not name.startswith("[") else name for name in allowed}
    return {f"{name}:{port}" for name in names} | (names if port == 80 else set())


class RequestsInFlight:
    """At most ``limit`` requests served at once; one more is answered 503. It counts requests, not sockets:
    uvicorn's ``limit_concurrency`` counts connections, so idle sockets turned every real request away."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit, self.active = app, limit, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            busy = f"the demo is serving {self.limit} requests (the config value max_connections): try again"
            await JSONResponse({"error": busy, "kind": "busy"}, status_code=503)(scope, receive, send)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


def build_app(demo: Demo, limits: Limits, hosts: set[str]) -> Starlette:
    decoding = anyio.Semaphore(limits.max_decodes)  # pictures decoded at once: each may cost 4 bytes a pixel

    async def index(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    async def info(request: Request) -> JSONResponse:
        return JSONResponse({"checkpoint": demo.checkpoint.name})

    async def decode_in_turn(data: bytes, target: int | None, temperature: float) -> dict[str, Any]:
        try:
            with anyio.fail_after(limits.queue_timeout_s):
                await decoding.acquire()
        except TimeoutError:
            raise BusyError(
                f"the demo is reading {limits.max_decodes} other picture(s) (the config value max_decodes) "
                f"and none finished within {limits.queue_timeout_s:g} s: try again"
            ) from None
        try:
            return await run_in_threadpool(demo.analyse, data, target, temperature, limits.max_pixels)
        finally:
            decoding.release()

    async def analyse(request: Request) -> Response:
        try:
            target, temperature = parse_settings(dict(request.query_params))
            data = await read_body(request, limits.max_upload_bytes, limits.body_timeout_s)
            result = await decode_in_turn(data, target, temperature)
        except ClientDisconnect:  # the client left mid-upload: nobody to answer, nothing to debug
            log.info("demo: a client disconnected before its picture arrived")
            return Response(status_code=400)
        except DigitsError as error:  # the user's input: say what is wrong with it
            return JSONResponse(
                {"error": str(error), "kind": type(error).__name__},
                status_code=STATUS.get(type(error), 422),
                headers={"Connection": "close"} if isinstance(error, UploadTimeoutError) else None,
            )
        except Exception as error:  # a bug: keep the traceback in the server's log, not on the page
            log.exception("demo: unexpected error on a request")
            failed = f"the server failed on this input ({type(error).__name__}); the traceback is in the demo's log"
            return JSONResponse({"error": failed, "kind": "internal"}, status_code=500)
        return JSONResponse(result)

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/info", info),
            Route("/api/analyse", analyse, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )
    app.add_middleware(LocalOnly, hosts=hosts)
    app.add_middleware(RequestsInFlight, limit=limits.max_connections)  # outermost: counted before anything else
    return app


def validate_demo_config(cfg: Any) -> None:
    """Each knob of configs/demo.yaml, checked before the checkpoint is loaded."""
    check(isinstance(cfg.host, str) and bool(cfg.host), "host", cfg.host, "a host name or address, e.g. 127.0.0.1")
    check(
        is_int(cfg.port) and 0 <= cfg.port <= 65535, "port", cfg.port, "an integer in [0, 65535] (0 picks a free port)"
    )
    check(is_int(cfg.threads) and cfg.threads >= 1, "threads", cfg.threads, "an integer >= 1")
    for key in ("max_upload_bytes", "max_pixels", "max_decodes", "max_connections"):
        check(is_int(cfg[key]) and cfg[key] >= 1, key, cfg[key], "an integer >= 1")
    for key in ("queue_timeout_s", "header_timeout_s", "body_timeout_s", "keep_alive_s"):
        # NaN and inf fail the range too
        check(is_number(cfg[key]) and 0 < cfg[key] <= 3600, key, cfg[key], "a number of seconds in (0, 3600]")
    hosts = cfg.allowed_hosts
    is_list = isinstance(hosts, Sequence) and not isinstance(hosts, str)
    ok = is_list and all(isinstance(h, str) and h for h in hosts)
    check(ok, "allowed_hosts", hosts, "a list of host names, e.g. [myhost.local]")


def open_socket(host: str, port: int) -> socket.socket:
    """A listening socket on exactly ``host`` (port 0: a free one), so the URL can be printed first."""
    sock = None
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        if sock is not None:
            sock.close()
        raise DemoError(f"cannot listen on {host}:{port}: {error} (another port? port=0 picks a free one)") from error
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class HeadDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's head: uvicorn closes an idle keep-alive
    connection, but not one that sends nothing, or its headers a byte at a time."""

    head_timeout_s = 10.0  # set per server by ``serve``
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._await_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        self._head_deadline = self.loop.call_later(self.head_timeout_s, self._head_overdue)

    def _head_overdue(self) -> None:
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():  # no whole head yet
            self.transport.close()


def serve(demo: Demo, sock: socket.socket, cfg: Any) -> None:
    """Serve until interrupted (Ctrl-C), within the limits of configs/demo.yaml (validated)."""
    import uvicorn

    limits = Limits.from_config(cfg)
    config = server_config(build_app(demo, limits, host_names(sock, limits.allowed_hosts)), limits)
    uvicorn.Server(config).run(sockets=[sock])


def server_config(app: ASGIApp, limits: Limits) -> Any:
    """uvicorn's settings: the header deadline and keep-alive; no ``limit_concurrency`` (RequestsInFlight)."""
    import uvicorn

    protocol = type("Protocol", (HeadDeadlineProtocol,), {"head_timeout_s": limits.header_timeout_s})
    return uvicorn.Config(
        app,
        http=protocol,
        timeout_keep_alive=limits.keep_alive_s,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
