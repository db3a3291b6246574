"""Fixtures of the in-process tests: the app (tests/conftest.py) served by
pytest-tornado on the test's own IOLoop, reached by Tornado's HTTP client
(``url``) or by the raw client, to see the exact bytes (``get``)."""

from __future__ import annotations

from typing import Awaitable, Callable, Iterator, Optional

import pytest

from tests.client import HOST, AsyncClient


@pytest.fixture
def url(http_server, http_port) -> Callable[[str], str]:
    """The test server's URL for ``path``, on 127.0.0.1 only."""
    return lambda path: f"http://{HOST}:{http_port}{path}"


@pytest.fixture
def get(http_server, http_port) -> Iterator[Callable[..., Awaitable[AsyncClient]]]:
    """``await get(path, headers, stalled=False)``: a raw GET to the test
    server, ``Connection: close``, whose answer the test reads itself;
    closed after the test."""
    clients: list[AsyncClient] = []

    async def open_get(path: str, headers: Optional[dict] = None, stalled: bool = False) -> AsyncClient:
        client = await AsyncClient.open(http_port, path, headers={"Connection": "close"} | (headers or {}),
                                        stalled=stalled)
        clients.append(client)
        return client

    yield open_get
    for client in clients:  # a FIN, as a browser leaving; the IOLoop sends it
        client.writer.close() if client.writer else client.sock.close()
