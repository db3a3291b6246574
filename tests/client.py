"""The one raw HTTP/1.x client of the tests, to see the exact bytes.

Tornado's HTTP client hides what an event stream promises: which bytes
arrive, in which chunk, and whether anything arrives at all before an event.
This module shows them, in three layers:

- ``Response`` and ``EventStream`` only parse (no I/O): fed the bytes of one
  response as they come, they keep its status line and headers, its body
  framed by Content-Length, by chunks (each chunk as the server cut it) or by
  the end of the connection, and the events in that body read by the WHATWG
  event-stream rules. ``Cursor`` remembers how much of it a test has taken.
- ``Client`` sends a request on a blocking socket and reads the answer, every
  read with a deadline, so a server that says nothing fails the test instead
  of hanging it. ``Crowd`` reads thousands of them with one selector.
- ``AsyncClient`` is the same on asyncio, for in-process tests: their server
  runs on the test's own IOLoop, which a blocking read would stop.

    client = Client(port, "/chat/events", headers=FALLBACK)   # a fallback poll
    response = client.finish()                                # read to its end
    assert response.status == 200 and response.events[-1]["data"] == "hello"

Every wait raises AssertionError with what had arrived when its deadline
passes. Here too live the constants every layer of the tests shares: HOST,
FALLBACK, PRICE, and free_port() and wait_until().
"""

from __future__ import annotations

import asyncio
import bisect
import codecs
import re
import selectors
import socket
import struct
import time
import zlib
from typing import Callable, Iterable, Mapping, Optional, TypeVar, Union

from tornado.httputil import HTTPHeaders

HOST = "127.0.0.1"
# The header a fallback poll carries (docs/protocol.md section 2).
FALLBACK = {"X-Event-Source-Simulate": "Long-Polling"}
# A price as the ticker sends it: two decimals, no sign, no exponent.
PRICE = re.compile(r"^[0-9]+\.[0-9]{2}$")
READ_TIMEOUT = 3.0  # seconds any wait for the server may take, unless told
STALLED_RCVBUF = 1024  # a receive buffer as small as the kernel allows
RESUMED_RCVBUF = 1 << 22
LINGER_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a RST

Headers = Union[Mapping[str, str], Iterable[tuple[str, str]]]
T = TypeVar("T")


def chat_number(event_id: str) -> int:
    """The number in a chat event's id, ``EPOCH:N`` (docs/protocol.md §2): the
    next /chat/get cursor."""
    return int(event_id.rpartition(":")[2])


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_until(condition: Callable[[], T], timeout: float = READ_TIMEOUT, step: float = 0.02) -> T:
    """Call ``condition`` every ``step`` s until it returns something true,
    for at most ``timeout`` s; its last value (so ``assert wait_until(...)``)."""
    deadline = time.monotonic() + timeout
    while not (result := condition()) and time.monotonic() < deadline:
        time.sleep(step)
    return result


async def wait_until_async(condition: Callable[[], T], timeout: float = READ_TIMEOUT, step: float = 0.02) -> T:
    """``wait_until`` for a test on the IOLoop: it sleeps without blocking the server."""
    deadline = time.monotonic() + timeout
    while not (result := condition()) and time.monotonic() < deadline:
        await asyncio.sleep(step)
    return result


def largest_send_buffer() -> int:
    """The most a kernel send buffer grows to here: a piece twice this size
    cannot be taken in one send()."""
    try:
        with open("/proc/sys/net/ipv4/tcp_wmem") as limits:
            return int(limits.read().split()[2])
    except (OSError, ValueError, IndexError):
        return 4 << 20


def head_lines(response: "Response") -> list[bytes]:
    """The status line and header lines as sent, the Date's value blanked."""
    head = response.received.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    return [b"Date: -" if line.startswith(b"Date: ") else line for line in head]


# A line of an event stream as this server writes it: a field, a comment, or
# the blank line that ends an event. A chunk size ("14") is none of these.
EVENT_STREAM_LINE = re.compile(r"(|:.*|(event|data|id|retry): ?.*)")


def assert_event_stream_lines(body: bytes) -> None:
    text = body.decode("utf-8")
    assert text.endswith("\n\n"), text[-200:]
    for line in text.split("\n"):
        assert "\r" not in line and EVENT_STREAM_LINE.fullmatch(line), f"not an event-stream line: {line!r}"


def header_pairs(headers: Headers) -> list[tuple[str, str]]:
    return list(headers.items()) if isinstance(headers, Mapping) else list(headers)


def request_bytes(method: str, path: str, headers: Headers = (), body: bytes = b"", *,
                  version: str = "HTTP/1.1", host: str = HOST) -> bytes:
    """A request as sent: ``Host`` and ``Content-Length`` are added unless
    ``headers`` has them (or says the body is chunked)."""
    pairs = header_pairs(headers)
    names = {name.lower() for name, _ in pairs}
    lines = [f"{method} {path} {version}"]
    if "host" not in names:
        lines.append(f"Host: {host}")
    lines += [f"{name}: {value}" for name, value in pairs]
    if body and not names & {"content-length", "transfer-encoding"}:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# --- parsing, no I/O ----------------------------------------------------------------------


class EventStream:
    """A text/event-stream body read by the WHATWG rules, fed as it arrives.

    ``events``: each dispatched event as ``{"event", "data", "id"}``: "event"
    is "message" unless named, "id" the last event ID, which carries over to
    the events after it. ``retry``: the last valid reconnection time.
    ``comments``: the text of each comment line. ``lines`` and ``blocks``
    (the lines up to each blank line) are raw, as the server wrote them;
    ``block_events[i]`` is the event ``blocks[i]`` dispatched, or None.
    """

    LINE_END = re.compile(r"\r\n|\r|\n")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")  # one BOM is dropped
        self._partial = ""  # a line not yet ended
        self._after_cr = False  # the last line ended in CR: an LF first in the next data belongs to it
        self._block: list[str] = []
        self._type = ""
        self._data: list[str] = []
        self._id = ""
        self.last_event_id = ""
        self.retry: Optional[int] = None
        self.lines: list[str] = []
        self.blocks: list[list[str]] = []
        self.block_events: list[Optional[dict]] = []
        self.comments: list[str] = []
        self.events: list[dict] = []

    def feed(self, data: bytes) -> list[dict]:
        """Take the next bytes of the body; the events they complete."""
        text = self._decoder.decode(data)
        if text:
            if self._after_cr and text.startswith("\n"):
                text = text[1:]
            self._after_cr = False
        buffer, start, dispatched = self._partial + text, 0, []
        for match in self.LINE_END.finditer(buffer):
            self._line(buffer[start:match.start()], dispatched)
            start = match.end()
        self._partial = buffer[start:]
        self._after_cr = buffer.endswith("\r")
        return dispatched

    def _line(self, line: str, dispatched: list[dict]) -> None:
        self.lines.append(line)
        if not line:
            event = self._dispatch()
            if event is not None:
                dispatched.append(event)
                self.events.append(event)
            if self._block:  # an event's block has lines: blank lines alone dispatch nothing
                self.blocks.append(self._block)
                self.block_events.append(event)
                self._block = []
            return
        self._block.append(line)
        name, colon, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if not name:
            self.comments.append(value)
        elif name == "event":
            self._type = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)

    def _dispatch(self) -> Optional[dict]:
        self.last_event_id = self._id
        if not self._data:
            self._type = ""
            return None
        event = {"event": self._type or "message", "data": "\n".join(self._data), "id": self.last_event_id}
        self._type, self._data = "", []
        return event


class Response:
    """One HTTP/1.x response, parsed from whatever bytes are fed to it.

    ``version``, ``status``, ``reason`` and ``headers`` (case-insensitive)
    once the head is in; ``body``, decoded so far (gunzipped if need be);
    ``chunks``, a chunked body as cut, ``b""`` the last; ``complete`` once the
    framing says the response is over; ``closed`` (and ``reset``, for a RST)
    once the connection ended; ``received``, every byte as it came;
    ``events`` and ``stream``, the body as an event stream.
    """

    STATUS_LINE = re.compile(r"^(HTTP/1\.[01]) ([0-9]{3})(?: (.*))?$")

    def __init__(self, method: str = "GET") -> None:
        self.method = method.upper()
        self.version: Optional[str] = None
        self.status: Optional[int] = None
        self.reason = ""
        self.headers = HTTPHeaders()
        self.chunks: list[bytes] = []
        self.chunk_ends: list[int] = []  # where each non-empty chunk ends in the body
        self.complete = False
        self.closed = False
        self.reset = False
        self.stream = EventStream()
        self._received = bytearray()
        self._unparsed = bytearray()
        self._body = bytearray()
        self._framing = ""  # "none", "chunked", "length" or "close", once the head is in
        self._remaining = 0  # body bytes still owed, framed by Content-Length
        self._trailers = False  # the last chunk came: trailer lines up to a blank one
        self._gunzip = None

    @property
    def body(self) -> bytes:
        return bytes(self._body)

    @property
    def received(self) -> bytes:
        return bytes(self._received)

    @property
    def events(self) -> list[dict]:
        return self.stream.events

    @property
    def chunked(self) -> bool:
        return self._framing == "chunked"

    def feed(self, data: bytes) -> None:
        self._received += data
        self._unparsed += data
        if self.status is None:
            self._head()
        if self.status is not None and not self.complete:
            self._frame()

    def feed_eof(self, reset: bool = False) -> None:
        """The connection ended: with a FIN, or a RST if ``reset``."""
        self.closed, self.reset = True, reset
        if self._framing == "close" and not reset:
            self.complete = True

    def _head(self) -> None:
        end = self._unparsed.find(b"\r\n\r\n")
        if end < 0:
            return
        status_line, _, header_text = self._unparsed[:end].decode("latin-1").partition("\r\n")
        del self._unparsed[:end + 4]
        match = self.STATUS_LINE.match(status_line)
        assert match, f"not an HTTP/1.x status line: {status_line!r}"
        self.version, self.status, self.reason = match.group(1), int(match.group(2)), match.group(3) or ""
        self.headers = HTTPHeaders.parse(header_text)
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            self._gunzip = zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self.method == "HEAD" or self.status < 200 or self.status in (204, 304):
            self._framing, self.complete = "none", True
        elif "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._framing = "chunked"
        elif "Content-Length" in self.headers:
            self._framing, self._remaining = "length", int(self.headers["Content-Length"])
            self.complete = self._remaining == 0
        else:
            self._framing = "close"  # HTTP/1.0 style: the body ends with the connection

    def _frame(self) -> None:
        if self._framing == "length":
            piece = bytes(self._unparsed[:self._remaining])
            del self._unparsed[:len(piece)]
            self._remaining -= len(piece)
            self._add_body(piece)
            self.complete = self._remaining == 0
        elif self._framing == "close":
            piece = bytes(self._unparsed)
            self._unparsed.clear()
            self._add_body(piece)
        else:
            self._dechunk()

    def _dechunk(self) -> None:
        while not self.complete and (line_end := self._unparsed.find(b"\r\n")) >= 0:
            if self._trailers:
                self.complete = line_end == 0
                del self._unparsed[:line_end + 2]
                continue
            size = int(self._unparsed[:line_end].split(b";")[0], 16)
            if size == 0:
                del self._unparsed[:line_end + 2]
                self.chunks.append(b"")
                self._trailers = True
                continue
            start = line_end + 2
            if len(self._unparsed) < start + size + 2:
                return
            assert self._unparsed[start + size:start + size + 2] == b"\r\n", "a chunk not ended by CRLF"
            chunk = bytes(self._unparsed[start:start + size])
            del self._unparsed[:start + size + 2]
            self.chunks.append(chunk)
            self._add_body(chunk)
            self.chunk_ends.append(len(self._body))

    def _add_body(self, data: bytes) -> None:
        if self._gunzip is not None:
            data = self._gunzip.decompress(data)
        self._body += data
        self.stream.feed(data)

    def __repr__(self) -> str:
        return (f"<Response {self.version} {self.status} complete={self.complete} closed={self.closed} "
                f"reset={self.reset} body[-300:]={bytes(self._body[-300:])!r}>")


class Cursor:
    """How much of a Response a test has taken: body bytes (``take``,
    ``chunk``), or blocks of the event stream (``block``, and ``events``,
    which passes over blocks that are no event). Each method returns None
    while not enough has arrived; the clients wait until it does not."""

    def __init__(self, response: Response) -> None:
        self.response = response
        self.offset = 0  # body bytes taken
        self.taken_blocks = 0

    def head(self) -> Optional[Response]:
        return self.response if self.response.status is not None else None

    def complete(self) -> Optional[Response]:
        return self.response if self.response.complete else None

    def chunk(self) -> Optional[bytes]:
        """The rest of the chunk at the offset, as the server cut it (the
        whole next chunk, unless ``take`` took part of it); b"" at the end."""
        response = self.response
        if response.status is None:
            return None
        assert response.chunked, f"not a chunked response: {dict(response.headers)}"
        assert "Content-Encoding" not in response.headers, "chunk() reads an identity-coded body"
        index = bisect.bisect_right(response.chunk_ends, self.offset)
        if index < len(response.chunk_ends):
            start, self.offset = self.offset, response.chunk_ends[index]
            return bytes(response._body[start:self.offset])
        return b"" if response.complete else None

    def take(self, size: int) -> Optional[bytes]:
        """The next ``size`` body bytes, however they were cut."""
        body = self.response._body
        if len(body) < self.offset + size:
            return None
        start, self.offset = self.offset, self.offset + size
        return bytes(body[start:self.offset])

    def events(self, count: int) -> Optional[list[dict]]:
        """The next ``count`` events (comments and the like passed over)."""
        if count <= 0:
            return []
        found, block_events = [], self.response.stream.block_events
        for index in range(self.taken_blocks, len(block_events)):
            if block_events[index] is not None:
                found.append(block_events[index])
                if len(found) == count:
                    self.taken_blocks = index + 1
                    return found
        return None

    def block(self) -> Optional[list[str]]:
        """The raw lines of the next block; [] once the stream has ended."""
        blocks = self.response.stream.blocks
        if self.taken_blocks < len(blocks):
            self.taken_blocks += 1
            return blocks[self.taken_blocks - 1]
        return [] if self.response.closed or self.response.complete else None


def ended_early(response: Response, what: str) -> AssertionError:
    return AssertionError(f"the connection ended before {what}: {response!r}")


def too_late(response: Response, what: str, timeout: float) -> AssertionError:
    return AssertionError(f"{what} did not come within {timeout} s: {response!r}")


# --- blocking sockets ---------------------------------------------------------------------


class Client:
    """A connection to ``HOST:port`` and the request sent on it (unless
    ``path`` is None: then ``request()`` or ``send()`` does), read as it comes.

    ``stalled``: the receive buffer is as small as the kernel allows, so the
    server's writes soon block while the test reads nothing; ``resume()``
    makes it large again. ``source`` binds the client to that address.
    ``arrivals`` records (seconds since the request, event) for each event.
    """

    def __init__(self, port: int, path: Optional[str] = None, *, method: str = "GET", headers: Headers = (),
                 body: bytes = b"", version: str = "HTTP/1.1", stalled: bool = False,
                 source: Optional[str] = None, connect_timeout: float = 5.0) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if stalled:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
            if source is not None:
                self.sock.bind((source, 0))
            self.sock.settimeout(connect_timeout)
            self.sock.connect((HOST, port))
        except BaseException:
            self.sock.close()
            raise
        self.response = Response(method)
        self.taken = Cursor(self.response)
        self.started = time.monotonic()
        self.arrivals: list[tuple[float, dict]] = []
        if path is not None:
            self.request(method, path, headers, body, version)

    def request(self, method: str, path: str, headers: Headers = (), body: bytes = b"",
                version: str = "HTTP/1.1") -> None:
        """Send a request; on a connection already used, once the answer
        before it is complete (one at a time, no pipelining)."""
        if self.response.received:
            assert self.response.complete and not self.response.closed, f"the previous answer: {self.response!r}"
        self.response = Response(method)
        self.taken = Cursor(self.response)
        self.started = time.monotonic()
        self.arrivals = []
        self.send(request_bytes(method, path, headers, body, version=version, host=f"{HOST}:{self.port}"))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self, timeout: float) -> bool:
        """One recv, waiting at most ``timeout`` s: False if nothing came."""
        if self.response.closed:
            return False
        self.sock.settimeout(max(timeout, 0.0))
        try:
            data = self.sock.recv(1 << 16)
        except (socket.timeout, BlockingIOError):
            return False
        except ConnectionResetError:
            self.response.feed_eof(reset=True)
            return True
        if not data:
            self.response.feed_eof()
            return True
        known = len(self.response.events)
        self.response.feed(data)
        elapsed = time.monotonic() - self.started
        self.arrivals += [(elapsed, event) for event in self.response.events[known:]]
        return True

    def _wait(self, attempt: Callable[[], Optional[T]], timeout: float, what: str) -> T:
        deadline = time.monotonic() + timeout
        while (result := attempt()) is None:
            if self.response.closed:
                raise ended_early(self.response, what)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise too_late(self.response, what, timeout)
            self.read(remaining)
        return result

    def head(self, timeout: float = READ_TIMEOUT) -> Response:
        return self._wait(self.taken.head, timeout, "the response head")

    def finish(self, timeout: float = READ_TIMEOUT) -> Response:
        """Read to the end of the response."""
        return self._wait(self.taken.complete, timeout, "the end of the response")

    def wait(self, condition: Callable[[Response], object], timeout: float = READ_TIMEOUT) -> Response:
        """Read until ``condition(response)`` holds (tried once the head is in)."""
        response = self.response
        return self._wait(lambda: response if response.status is not None and condition(response) else None,
                          timeout, "what the test waits for")

    def until(self, marker: bytes, timeout: float = READ_TIMEOUT) -> Response:
        """Read until the body holds ``marker``."""
        return self.wait(lambda response: marker in response.body, timeout)

    def chunk(self, timeout: float = READ_TIMEOUT) -> bytes:
        return self._wait(self.taken.chunk, timeout, "the next chunk")

    def take(self, size: int, timeout: float = READ_TIMEOUT) -> bytes:
        return self._wait(lambda: self.taken.take(size), timeout, f"{size} more body bytes")

    def events(self, count: int = 1, timeout: float = READ_TIMEOUT) -> list[dict]:
        """The next ``count`` events of the stream."""
        return self._wait(lambda: self.taken.events(count), timeout, f"{count} more events")

    def block(self, timeout: float = READ_TIMEOUT) -> list[str]:
        """The raw lines of the next block; [] once the stream has ended."""
        return self._wait(self.taken.block, timeout, "the next block")

    def silent(self, within: float) -> bool:
        """True when not one byte (nor the end) arrives within ``within`` s."""
        return not self.response.closed and not self.read(within)

    def closed_by_server(self, timeout: float = READ_TIMEOUT) -> bool:
        """Read on until the server ends the connection; whether it did
        within ``timeout`` s (``response.reset`` says if with a RST)."""
        deadline = time.monotonic() + timeout
        while not self.response.closed and (remaining := deadline - time.monotonic()) > 0:
            self.read(remaining)
        return self.response.closed

    def resume(self) -> None:
        """A stalled client reads at full speed again."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RESUMED_RCVBUF)

    def shutdown_write(self) -> None:
        """Half-close: a FIN, and still listening."""
        self.sock.shutdown(socket.SHUT_WR)

    def abort(self) -> None:
        """Close with a RST instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        self.sock.close()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Client :{self.port} {self.response!r}>"


def fetch(port: int, path: str, method: str = "GET", body: bytes = b"", headers: Headers = (),
          timeout: float = 5.0) -> tuple[int, HTTPHeaders, bytes]:
    """(status, headers, body) of one request answered in full within
    ``timeout`` s: a stream let in by mistake fails instead of hanging."""
    with Client(port, path, method=method, headers=headers, body=body) as client:
        response = client.finish(timeout)
    return response.status, response.headers, response.body


class Crowd:
    """Many Clients at once, read by one selector (not a thread each)."""

    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.members: list[Client] = []

    def add(self, client: Client) -> Client:
        client.sock.setblocking(False)
        self.selector.register(client.sock, selectors.EVENT_READ, client)
        self.members.append(client)
        return client

    def open(self, port: int, path: str, headers: Headers = ()) -> Client:
        return self.add(Client(port, path, headers=headers))

    def open_paced(self, port: int, requests: list[tuple[str, Headers]], held: Callable[[], int],
                   batch: int = 100, timeout: float = 10.0) -> None:
        """Open every (path, headers), a batch at a time, each once ``held()``
        (how many requests the server holds) counts the batch before. The
        server listens with a backlog of 1024; pacing keeps a batch well
        inside it, where a SYN that found the queue full would wait a second."""
        base = held()
        for start in range(0, len(requests), batch):
            for path, headers in requests[start:start + batch]:
                self.open(port, path, headers)
            expected = base + min(start + batch, len(requests))
            deadline = time.monotonic() + timeout
            while (count := held()) != expected:
                assert time.monotonic() < deadline, f"the server holds {count}, wanted {expected}"
                self.pump(0.01)

    def pump(self, seconds: float, until: Callable[[], bool] = lambda: False) -> bool:
        """Read whatever arrives for ``seconds`` or until ``until()``."""
        deadline = time.monotonic() + seconds
        while not until():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return until()
            for key, _ in self.selector.select(min(remaining, 0.05)):
                self._read(key.data)
        return True

    def _read(self, client: Client) -> None:
        client.read(0)
        if client.response.closed:
            self.forget(client)

    def drain(self, client: Client) -> None:
        """Take what has arrived, so that a close() sends a FIN, not a RST."""
        while client.read(0):
            pass
        if client.response.closed:
            self.forget(client)

    def forget(self, client: Client) -> None:
        """Stop reading ``client`` (it is closing, or has ended)."""
        if client.sock.fileno() >= 0 and client.sock in self.selector.get_map():
            self.selector.unregister(client.sock)

    def close(self) -> None:
        """Close every member, and the selector."""
        for client in self.members:
            self.forget(client)
            client.close()
        self.members.clear()
        self.selector.close()

    def __enter__(self) -> "Crowd":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# --- asyncio --------------------------------------------------------------------------------


class AsyncClient:
    """``Client`` on asyncio streams, for a test whose server runs on the
    same IOLoop. ``await AsyncClient.open(port, path, ...)``; a ``stalled``
    one is not read at all (its socket is not even handed to asyncio) until
    ``await resume()``."""

    def __init__(self, sock: socket.socket, port: int) -> None:
        self.sock = sock
        self.port = port
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None
        self.response = Response()
        self.taken = Cursor(self.response)

    @classmethod
    async def open(cls, port: int, path: Optional[str] = None, *, method: str = "GET", headers: Headers = (),
                   body: bytes = b"", version: str = "HTTP/1.1", stalled: bool = False,
                   source: Optional[str] = None) -> "AsyncClient":
        """``source``: the address to connect from, as for ``Client``."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if stalled:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
        sock.setblocking(False)
        try:
            if source is not None:
                sock.bind((source, 0))
            await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
        except BaseException:
            sock.close()
            raise
        client = cls(sock, port)
        if path is not None:
            await client.request(method, path, headers, body, version)
        if not stalled:
            await client.resume()
        return client

    async def request(self, method: str, path: str, headers: Headers = (), body: bytes = b"",
                      version: str = "HTTP/1.1") -> None:
        if self.response.received:
            assert self.response.complete and not self.response.closed, f"the previous answer: {self.response!r}"
        self.response = Response(method)
        self.taken = Cursor(self.response)
        await self.send(request_bytes(method, path, headers, body, version=version, host=f"{HOST}:{self.port}"))

    async def send(self, data: bytes) -> None:
        if self.writer is None:
            await asyncio.get_running_loop().sock_sendall(self.sock, data)
        else:
            self.writer.write(data)
            await self.writer.drain()

    async def resume(self, limit: int = 1 << 24) -> None:
        """Start reading, at full speed: a stalled socket's buffer is made large first."""
        if self.reader is None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RESUMED_RCVBUF)
            self.reader, self.writer = await asyncio.open_connection(sock=self.sock, limit=limit)

    def drain(self) -> int:
        """A stalled client takes what its socket holds now, without waiting
        and without letting the IOLoop run meanwhile (it stays stalled: its
        buffer stays small); returns how many bytes it took."""
        assert self.reader is None, "drain() is for a stalled client"
        taken = 0
        while not self.response.closed:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                break
            if data:
                self.response.feed(data)
                taken += len(data)
            else:
                self.response.feed_eof()
        return taken

    async def read(self, timeout: float) -> bool:
        """One read, waiting at most ``timeout`` s: False if nothing came."""
        assert self.reader is not None, "a stalled client reads only after resume()"
        if self.response.closed:
            return False
        try:
            data = await asyncio.wait_for(self.reader.read(1 << 16), max(timeout, 0.0))
        except asyncio.TimeoutError:
            return False
        except ConnectionError:
            self.response.feed_eof(reset=True)
            return True
        if data:
            self.response.feed(data)
        else:
            self.response.feed_eof()
        return True

    async def _wait(self, attempt: Callable[[], Optional[T]], timeout: float, what: str) -> T:
        deadline = time.monotonic() + timeout
        while (result := attempt()) is None:
            if self.response.closed:
                raise ended_early(self.response, what)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise too_late(self.response, what, timeout)
            await self.read(remaining)
        return result

    async def head(self, timeout: float = READ_TIMEOUT) -> Response:
        return await self._wait(self.taken.head, timeout, "the response head")

    async def finish(self, timeout: float = READ_TIMEOUT) -> Response:
        return await self._wait(self.taken.complete, timeout, "the end of the response")

    async def wait(self, condition: Callable[[Response], object], timeout: float = READ_TIMEOUT) -> Response:
        response = self.response
        return await self._wait(lambda: response if response.status is not None and condition(response) else None,
                                timeout, "what the test waits for")

    async def until(self, marker: bytes, timeout: float = READ_TIMEOUT) -> Response:
        return await self.wait(lambda response: marker in response.body, timeout)

    async def chunk(self, timeout: float = READ_TIMEOUT) -> bytes:
        return await self._wait(self.taken.chunk, timeout, "the next chunk")

    async def take(self, size: int, timeout: float = READ_TIMEOUT) -> bytes:
        return await self._wait(lambda: self.taken.take(size), timeout, f"{size} more body bytes")

    async def events(self, count: int = 1, timeout: float = READ_TIMEOUT) -> list[dict]:
        return await self._wait(lambda: self.taken.events(count), timeout, f"{count} more events")

    async def block(self, timeout: float = READ_TIMEOUT) -> list[str]:
        return await self._wait(self.taken.block, timeout, "the next block")

    async def silent(self, within: float) -> bool:
        return not self.response.closed and not await self.read(within)

    async def closed_by_server(self, timeout: float = READ_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while not self.response.closed and (remaining := deadline - time.monotonic()) > 0:
            await self.read(remaining)
        return self.response.closed

    def abort(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RESET)
        if self.writer is not None:
            self.writer.transport.abort()
        else:
            self.sock.close()

    async def close(self) -> None:
        if self.writer is None:
            self.sock.close()
            return
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass

    def __repr__(self) -> str:
        return f"<AsyncClient :{self.port} {self.response!r}>"
