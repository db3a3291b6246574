"""Peer: the ticker and the long-poll chat with sse-starlette on uvicorn.

Written the way the library's own examples broadcast (one ``asyncio.Queue``
per subscriber, ``EventSourceResponse`` over an async generator) with default
settings, except the ping interval, set to our keep-alive (15 s), and the
event loop, pinned to asyncio: uvloop is installed in the bench venv for the
load generator and uvicorn's ``loop="auto"`` would otherwise pick it, while
every other server here runs on the stock loop.

    python bench/peers/sse_starlette_app.py --port 0 --tick-interval 1.0

Routes: GET /ticker, POST /chat/post, GET /chat/get/{n}, GET /status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import socket

import uvicorn
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route


class Ticker:
    """The price as a state: a reader gets the newest one, never a backlog."""

    def __init__(self) -> None:
        self.id, self.price = 1, 100.0
        self.random = random.Random()
        self.subscribers: set[asyncio.Queue] = set()

    def step(self) -> None:
        self.price = max(0.01, self.price * math.exp(self.random.gauss(0.0, 0.01)))
        self.id += 1
        for queue in self.subscribers:
            if queue.full():
                queue.get_nowait()  # a slow reader skips to the newest price
            queue.put_nowait((self.id, f"{self.price:.2f}"))

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.step()


class Chat:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.new_message = asyncio.Event()
        self.waiting = 0

    def post(self, message: str) -> int:
        self.messages.append(message)
        self.new_message.set()
        self.new_message = asyncio.Event()
        return len(self.messages) - 1


def build(tick_interval: float, ping: float) -> Starlette:
    ticker, chat = Ticker(), Chat()

    async def ticker_stream(request: Request) -> EventSourceResponse:
        queue: asyncio.Queue = asyncio.Queue(maxsize=1)
        queue.put_nowait((ticker.id, f"{ticker.price:.2f}"))
        ticker.subscribers.add(queue)

        async def events():
            try:
                while True:
                    event_id, price = await queue.get()
                    yield ServerSentEvent(data=price, id=str(event_id))
            finally:
                ticker.subscribers.discard(queue)

        return EventSourceResponse(events(), ping=ping)

    async def chat_post(request: Request) -> JSONResponse:
        form = await request.form()
        message = form.get("message")
        if not message:
            return PlainTextResponse("message is missing", status_code=400)
        return JSONResponse({"id": chat.post(message)})

    async def chat_get(request: Request) -> PlainTextResponse:
        number = request.path_params["number"]
        chat.waiting += 1
        try:
            while number == len(chat.messages):
                await chat.new_message.wait()
        finally:
            chat.waiting -= 1
        if number > len(chat.messages):
            return PlainTextResponse("not yet", status_code=404)
        return PlainTextResponse(chat.messages[number])

    async def status(request: Request) -> JSONResponse:
        return JSONResponse({
            "chat": {"messages": len(chat.messages), "waiting": chat.waiting},
            "ticker": {"id": ticker.id, "streams": len(ticker.subscribers)},
        })

    @contextlib.asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(ticker.run(tick_interval))
        yield
        task.cancel()

    return Starlette(
        routes=[
            Route("/ticker", ticker_stream),
            Route("/chat/post", chat_post, methods=["POST"]),
            Route("/chat/get/{number:int}", chat_get),
            Route("/status", status),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tick-interval", type=float, default=1.0)
    parser.add_argument("--ping", type=float, default=15.0)
    args = parser.parse_args()
    # Bound and listening before the URL is printed, so the load generator's
    # first connection queues instead of being refused; 2048 is uvicorn's
    # default backlog.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.address, args.port))
    sock.listen(2048)
    print(f"http://{args.address}:{sock.getsockname()[1]}/", flush=True)
    config = uvicorn.Config(build(args.tick_interval, args.ping), loop="asyncio")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
