"""HTTP/1.1 spoken by hand on a socket, for tests about the exact bytes.

Tornado's HTTP client hides what an event stream promises: which bytes
arrive, in which chunk, and whether anything arrives at all before an event.
``Wire`` sends one GET to the test server on 127.0.0.1 and reads its answer
piece by piece, every read bounded by a timeout so that a server that says
nothing fails the test instead of hanging it.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Callable, Optional

from tornado.httputil import HTTPHeaders

HOST = "127.0.0.1"
READ_TIMEOUT = 2.0  # seconds any single read may take


async def wait_until(condition: Callable[[], bool], timeout: float = 1.0, step: float = 0.02) -> bool:
    """Poll ``condition`` every ``step`` seconds, at most ``timeout`` seconds."""
    for _ in range(int(timeout / step) + 1):
        if condition():
            return True
        await asyncio.sleep(step)
    return condition()


def request_bytes(port: int, path: str, headers: Optional[dict] = None) -> bytes:
    lines = [f"GET {path} HTTP/1.1", f"Host: {HOST}:{port}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


class Wire:
    """One GET on its own connection, and its response read as it comes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status: Optional[int] = None
        self.headers = HTTPHeaders()
        self._body = bytearray()  # decoded body bytes read but not yet taken

    @classmethod
    async def get(cls, port: int, path: str, headers: Optional[dict] = None) -> "Wire":
        """Send the request; the response is read later, by the caller."""
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(request_bytes(port, path, headers))
        await writer.drain()
        return cls(reader, writer)

    async def _read(self, coroutine, timeout: float) -> bytes:
        try:
            return await asyncio.wait_for(coroutine, timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"the server sent nothing more within {timeout} s") from None

    async def head(self, timeout: float = READ_TIMEOUT) -> "Wire":
        """Read the status line and the headers."""
        raw = await self._read(self.reader.readuntil(b"\r\n\r\n"), timeout)
        status_line, _, header_text = raw.decode("latin-1").partition("\r\n")
        version, code, _reason = (status_line.split(" ", 2) + [""])[:3]
        assert version == "HTTP/1.1", status_line
        self.status = int(code)
        self.headers = HTTPHeaders.parse(header_text)
        return self

    @property
    def chunked(self) -> bool:
        return self.headers.get("Transfer-Encoding", "").lower() == "chunked"

    async def chunk(self, timeout: float = READ_TIMEOUT) -> bytes:
        """The next chunk of a chunked body exactly as the server cut it;
        ``b""`` for the last (zero-length) chunk."""
        assert self.chunked, f"not a chunked response: {dict(self.headers)}"
        size_line = await self._read(self.reader.readuntil(b"\r\n"), timeout)
        size = int(size_line.split(b";")[0], 16)
        data = await self._read(self.reader.readexactly(size + 2), timeout)
        assert data.endswith(b"\r\n"), data[-10:]
        return data[:-2]

    async def take(self, size: int, timeout: float = READ_TIMEOUT) -> bytes:
        """Exactly ``size`` bytes of a chunked body, however they were cut."""
        while len(self._body) < size:
            chunk = await self.chunk(timeout)
            assert chunk, f"the stream ended after {bytes(self._body)!r}"
            self._body += chunk
        taken, self._body = bytes(self._body[:size]), self._body[size:]
        return taken

    async def body(self, timeout: float = READ_TIMEOUT) -> bytes:
        """The whole body of a response that ends (Content-Length, chunked,
        or up to the server closing)."""
        if "Content-Length" in self.headers:
            return await self._read(self.reader.readexactly(int(self.headers["Content-Length"])), timeout)
        if self.chunked:
            body = bytearray(self._body)
            while chunk := await self.chunk(timeout):
                body += chunk
            return bytes(body)
        return await self._read(self.reader.read(), timeout)

    async def silent(self, within: float) -> bool:
        """True when not one byte arrives within ``within`` seconds."""
        try:
            await asyncio.wait_for(self.reader.read(1), within)
        except asyncio.TimeoutError:
            return True
        return False  # a byte, or the end of the connection

    async def closed_by_server(self, timeout: float = READ_TIMEOUT) -> bool:
        """True when the server ends the connection within ``timeout``
        (whatever it still sends on the way is skipped)."""
        async def until_end() -> None:
            while await self.reader.read(1 << 16):
                pass

        try:
            await asyncio.wait_for(until_end(), timeout)
        except asyncio.TimeoutError:
            return False
        except ConnectionError:
            return True
        return True

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


async def stalled_get(port: int, path: str, headers: Optional[dict] = None) -> socket.socket:
    """A GET from a client that then stops reading: the socket's receive
    buffer is made as small as the kernel allows, so the server's writes soon
    block. The caller closes the socket, or reads it with ``adopt``."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    sock.setblocking(False)
    await loop.sock_connect(sock, (HOST, port))
    await loop.sock_sendall(sock, request_bytes(port, path, headers))
    return sock


async def adopt(sock: socket.socket, limit: int = 1 << 24) -> Wire:
    """Start reading a socket made by ``stalled_get``, at full speed: its
    receive buffer is first made large again."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    reader, writer = await asyncio.open_connection(sock=sock, limit=limit)
    return Wire(reader, writer)
