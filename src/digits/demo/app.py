"""The drawing demo: a small Starlette app serving one static page and one JSON endpoint.

The browser sends the picture (the drawing as a PNG, or the user's uploaded file) and the lesson's
settings; the server preprocesses it exactly like ``evaluate.py predict=`` (``digits.handwriting``),
runs the network and returns every number the page shows (``digits.demo.lesson.explain``). The page's
JavaScript only draws and displays.
"""

from __future__ import annotations

import io
import logging
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from digits.config import ConfigError
from digits.data import standardize
from digits.demo.lesson import LessonError, explain
from digits.errors import DigitsError
from digits.handwriting import ImageError, load_image, to_mnist
from digits.module import DigitsModule
from digits.sigmoid import sigmoid_threshold

log = logging.getLogger("digits")
STATIC = Path(__file__).with_name("static")


class DemoError(DigitsError, OSError):
    """The demo cannot listen where it is told (address in use, not this machine's, ...)."""


class UploadTooLargeError(DigitsError, ValueError):
    """A request body larger than ``max_upload_bytes``."""


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

    def analyse(self, data: bytes, target: int | None, temperature: float) -> dict[str, Any]:
        """Image bytes -> the picture the network receives -> logits -> the lesson's numbers."""
        started = time.perf_counter()
        # load_image reads files (its size checks need one): a temporary file, deleted at once.
        with tempfile.NamedTemporaryFile(dir=self.scratch, prefix="picture-") as file:
            file.write(data)
            file.flush()
            try:
                image = load_image(file.name)
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
        """One picture through the whole path before the URL is printed: the first request's
        one-off costs (lazy initialisation in torch and PIL) are not the user's first stroke's."""
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


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it passes ``limit`` bytes (never held whole)."""
    too_large = UploadTooLargeError(
        f"the image is larger than the demo accepts ({limit / 1e6:.1f} MB, "
        "the config value max_upload_bytes): send a smaller PNG or JPEG"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(demo: Demo) -> Starlette:
    async def index(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html")

    async def info(request: Request) -> JSONResponse:
        return JSONResponse({"checkpoint": demo.checkpoint.name})

    async def analyse(request: Request) -> JSONResponse:
        try:
            target, temperature = parse_settings(dict(request.query_params))
            data = await read_body(request, demo.max_upload_bytes)
            result = await run_in_threadpool(demo.analyse, data, target, temperature)
        except DigitsError as error:  # the user's input: say what is wrong with it
            status = 413 if isinstance(error, UploadTooLargeError) else 422
            return JSONResponse({"error": str(error), "kind": type(error).__name__}, status_code=status)
        except Exception as error:  # a bug: keep the traceback in the server's log, not on the page
            log.exception("demo: unexpected error on a request")
            return JSONResponse(
                {
                    "error": f"the server failed on this input ({type(error).__name__}); "
                    "the traceback is in the demo's log",
                    "kind": "internal",
                },
                status_code=500,
            )
        return JSONResponse(result)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/info", info),
            Route("/api/analyse", analyse, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )


def validate_demo_config(cfg: Any) -> None:
    """Each knob of configs/demo.yaml, checked before the checkpoint is loaded."""

    def check(ok: bool, key: str, allowed: str) -> None:
        if not ok:
            raise ConfigError(f"{key}={cfg.get(key)!r} is not allowed: {allowed}")

    def is_int(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    check(isinstance(cfg.host, str) and bool(cfg.host), "host", "a host name or address, e.g. 127.0.0.1")
    check(is_int(cfg.port) and 0 <= cfg.port <= 65535, "port", "an integer in [0, 65535] (0 picks a free port)")
    check(is_int(cfg.threads) and cfg.threads >= 1, "threads", "an integer >= 1")
    check(is_int(cfg.max_upload_bytes) and cfg.max_upload_bytes >= 1, "max_upload_bytes", "an integer >= 1")


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


def serve(demo: Demo, sock: socket.socket) -> None:
    """Serve until interrupted (Ctrl-C)."""
    import uvicorn

    config = uvicorn.Config(build_app(demo), log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
