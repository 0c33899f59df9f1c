"""The demo's request limit counts requests being served, not open sockets: silent connections and
idle keep-alive ones never turn a legitimate request away (uvicorn's limit_concurrency did)."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from digits.demo.app import Limits, RequestsInFlight, server_config

LIMITS = Limits(
    max_upload_bytes=1000, max_pixels=1000, max_decodes=1, queue_timeout_s=1, header_timeout_s=30,
    body_timeout_s=5, keep_alive_s=5, max_connections=2, allowed_hosts=(),
)  # fmt: skip


@pytest.fixture
def server():
    """A uvicorn server as the demo's (its protocol and settings), serving a page and a slow page."""
    import uvicorn

    async def page(request):
        return PlainTextResponse("ok")

    async def slow(request):
        await asyncio.sleep(1.5)
        return PlainTextResponse("slow")

    app = RequestsInFlight(Starlette(routes=[Route("/", page), Route("/slow", slow)]), LIMITS.max_connections)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runner = uvicorn.Server(server_config(app, LIMITS))
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not runner.started:
        time.sleep(0.01)
    yield sock.getsockname()[1]
    runner.should_exit = runner.force_exit = True
    thread.join(timeout=10)


def get(port: int, path: str = "/") -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path)
    status = connection.getresponse().status
    connection.close()
    return status


def test_silent_sockets_do_not_shut_out_a_request(server):
    port = server
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
    try:
        assert [get(port) for _ in range(3)] == [200, 200, 200]
    finally:
        for connection in silent:
            connection.close()


def test_requests_beyond_the_limit_in_flight_get_503(server):
    port = server
    slow = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(LIMITS.max_connections)]
    for connection in slow:
        connection.request("GET", "/slow")
    time.sleep(0.5)  # both are being served
    assert get(port) == 503
