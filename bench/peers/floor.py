"""The floor: a bare ``asyncio.Protocol`` server, no framework at all.

It answers just enough HTTP/1.1 for the benchmark and, at each tick, writes
one pre-encoded frame to every stream's transport; a chat post writes one
pre-encoded response to every held poll. No per-reader coroutine, future,
timer or buffer: this is about as little as Python can do per event, so it is
the line the other servers are measured against.

The chat answers as ours does (docs/protocol.md §1), with the same headers:
message N at once if kept, held if N is the next one, 404 past the end, 410
aged out of the bounded history (``--history``). The poll timeout (204 after
``--poll-timeout``) costs no timer per poll: polls wait in arrival order, so
one sweep a second answers those whose time is up.

    python bench/peers/floor.py --port 0 --tick-interval 1.0

Routes: GET /ticker, POST /chat/post, GET /chat/get/N, GET /status.
Not a server to copy: no validation, no flow control, no keep-alive timer.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import random
import secrets
import socket
import time
from urllib.parse import parse_qs

STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"X-Accel-Buffering: no\r\n"
    b"\r\n"
    b"retry: 2000\n\n"
)


def response(status: str, body: bytes, content_type: bytes = b"text/plain; charset=UTF-8", more: bytes = b"") -> bytes:
    return (b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-cache\r\n"
            b"X-Content-Type-Options: nosniff\r\nX-Chat-Epoch: %s\r\n%s\r\n%s") % (
        status.encode(), content_type, len(body), EPOCH, more, body)


EPOCH = secrets.token_urlsafe(6).encode()
NO_CONTENT = b"HTTP/1.1 204 No Content\r\nCache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nX-Chat-Epoch: %s\r\n\r\n" % EPOCH


class State:
    def __init__(self, history: int, poll_timeout: float) -> None:
        self.id, self.price = 1, 100.0
        self.random = random.Random()
        self.frame = self.encode()
        self.streams: set[asyncio.Transport] = set()
        self.messages: collections.deque[bytes] = collections.deque(maxlen=history)
        self.count = 0
        self.poll_timeout = poll_timeout
        self.waiting: collections.deque[tuple[float, asyncio.Transport]] = collections.deque()

    @property
    def first(self) -> int:
        return self.count - len(self.messages)

    def encode(self) -> bytes:
        return b"id: %d\ndata: %.2f\n\n" % (self.id, self.price)

    def tick(self) -> None:
        self.price = max(0.01, self.price * math.exp(self.random.gauss(0.0, 0.01)))
        self.id += 1
        self.frame = frame = self.encode()
        for transport in self.streams:
            transport.write(frame)

    def post(self, message: bytes) -> int:
        self.messages.append(message)
        self.count += 1
        answer = response("200 OK", message)
        waiting, self.waiting = self.waiting, collections.deque()
        for _, transport in waiting:
            transport.write(answer)
        return self.count - 1

    def sweep(self) -> None:
        """204 to every poll held for --poll-timeout (the oldest are first)."""
        now = time.monotonic()
        while self.waiting and self.waiting[0][0] <= now:
            self.waiting.popleft()[1].write(NO_CONTENT)


class Connection(asyncio.Protocol):
    def __init__(self, state: State) -> None:
        self.state = state
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.state.streams.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            method, path, _ = head[0].split(" ", 2)
            self.handle(method, path, body)

    def handle(self, method: str, path: str, body: bytes) -> None:
        state, transport = self.state, self.transport
        if method == "GET" and path.split("?")[0] == "/ticker":
            transport.write(STREAM_HEAD + state.frame)
            state.streams.add(transport)
        elif method == "GET" and path.startswith("/chat/get/") and path[10:].isdigit():
            number = int(path[10:])
            if number == state.count:
                state.waiting.append((time.monotonic() + state.poll_timeout, transport))
            elif state.first <= number < state.count:
                transport.write(response("200 OK", state.messages[number - state.first]))
            else:
                where = b"X-First-Message: %d\r\nX-Next-Message: %d\r\n" % (state.first, state.count)
                transport.write(response("404 Not Found", b"not yet", more=where) if number > state.count
                                else response("410 Gone", b"no longer kept", more=where))
        elif method == "POST" and path == "/chat/post":
            message = parse_qs(body.decode()).get("message", [""])[0].encode()
            number = state.post(message)
            transport.write(response("200 OK", b'{"id": %d}' % number, b"application/json"))
        elif method == "GET" and path == "/status":
            status = {"chat": {"messages": state.count, "first": state.first, "waiting": len(state.waiting)},
                      "ticker": {"id": state.id, "streams": len(state.streams)}}
            transport.write(response("200 OK", json.dumps(status).encode(), b"application/json"))
        else:
            transport.write(response("404 Not Found", b"no such page"))


async def serve(address: str, port: int, tick_interval: float, history: int, poll_timeout: float) -> None:
    loop = asyncio.get_running_loop()
    state = State(history, poll_timeout)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    server = await loop.create_server(lambda: Connection(state), sock=sock, backlog=128)
    print(f"http://{address}:{sock.getsockname()[1]}/", flush=True)
    next_sweep = time.monotonic() + 1.0
    async with server:
        while True:
            await asyncio.sleep(tick_interval)
            state.tick()
            if time.monotonic() >= next_sweep:
                state.sweep()
                next_sweep = time.monotonic() + 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tick-interval", type=float, default=1.0)
    parser.add_argument("--history", type=int, default=1000, help="chat messages kept")
    parser.add_argument("--poll-timeout", type=float, default=25.0, help="seconds a poll is held before 204")
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.address, args.port, args.tick_interval, args.history, args.poll_timeout))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
