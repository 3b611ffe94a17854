"""A real HTTP server over the test container, for what only a socket shows."""

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn

from conveyor.api.app import create_app
from conveyor.wiring import Container


@dataclass(frozen=True)
class LiveServer:
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@pytest.fixture
def live_server(container: Container) -> Iterator[LiveServer]:
    """uvicorn (h11) serving the app on 127.0.0.1 and a free port, stopped after.

    The socket listens before the server starts, so a client may connect at once: the
    connection waits in the backlog until uvicorn accepts it, no polling needed."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    config = uvicorn.Config(
        create_app(container), http="h11", lifespan="on", log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        host, port = sock.getsockname()
        yield LiveServer(host, port)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    assert not thread.is_alive(), "uvicorn did not stop"
