"""The floor: a bare ``asyncio.Protocol`` server, no framework at all.

It answers just enough HTTP/1.1 for the benchmark and, at each tick, writes
one pre-encoded frame to every stream's transport; a chat post writes one
pre-encoded response to every held poll. No per-reader coroutine, future,
timer or buffer: this is about as little as Python can do per event, so it is
the line the other servers are measured against.

    python bench/peers/floor.py --port 0 --tick-interval 1.0

Routes: GET /ticker, POST /chat/post, GET /chat/get/N, GET /status.
Not a server to copy: no validation, no flow control, no keep-alive timer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import socket
from urllib.parse import parse_qs

STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"X-Accel-Buffering: no\r\n"
    b"\r\n"
    b"retry: 2000\n\n"
)


def response(status: str, body: bytes, content_type: bytes = b"text/plain; charset=UTF-8") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-cache\r\n\r\n%s" % (
        status.encode(), content_type, len(body), body)


class State:
    def __init__(self) -> None:
        self.id, self.price = 1, 100.0
        self.random = random.Random()
        self.frame = self.encode()
        self.streams: set[asyncio.Transport] = set()
        self.messages: list[bytes] = []
        self.waiting: list[asyncio.Transport] = []

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
        answer = response("200 OK", message)
        waiting, self.waiting = self.waiting, []
        for transport in waiting:
            transport.write(answer)
        return len(self.messages) - 1


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
            if number < len(state.messages):
                transport.write(response("200 OK", state.messages[number]))
            elif number == len(state.messages):
                state.waiting.append(transport)
            else:
                transport.write(response("404 Not Found", b"not yet"))
        elif method == "POST" and path == "/chat/post":
            message = parse_qs(body.decode()).get("message", [""])[0].encode()
            number = state.post(message)
            transport.write(response("200 OK", b'{"id": %d}' % number, b"application/json"))
        elif method == "GET" and path == "/status":
            status = {"chat": {"messages": len(state.messages), "waiting": len(state.waiting)},
                      "ticker": {"id": state.id, "streams": len(state.streams)}}
            transport.write(response("200 OK", json.dumps(status).encode(), b"application/json"))
        else:
            transport.write(response("404 Not Found", b"no such page"))


async def serve(address: str, port: int, tick_interval: float) -> None:
    loop = asyncio.get_running_loop()
    state = State()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    server = await loop.create_server(lambda: Connection(state), sock=sock, backlog=128)
    print(f"http://{address}:{sock.getsockname()[1]}/", flush=True)
    async with server:
        while True:
            await asyncio.sleep(tick_interval)
            state.tick()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tick-interval", type=float, default=1.0)
    args = parser.parse_args()
    try:
        asyncio.run(serve(args.address, args.port, args.tick_interval))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
