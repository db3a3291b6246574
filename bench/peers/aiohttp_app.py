"""Peer: the ticker and the long-poll chat with aiohttp + aiohttp-sse.

Written the way aiohttp-sse's own chat example broadcasts (one
``asyncio.Queue`` per subscriber, ``sse_response`` as a context manager),
with default settings except the ping interval, set to our keep-alive (15 s).

    python bench/peers/aiohttp_app.py --port 0 --tick-interval 1.0

Routes: GET /ticker, POST /chat/post, GET /chat/get/{n}, GET /status.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import socket

from aiohttp import web
from aiohttp_sse import sse_response


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


ticker_key = web.AppKey("ticker", Ticker)
chat_key = web.AppKey("chat", Chat)
ping_key = web.AppKey("ping", float)


async def ticker_stream(request: web.Request) -> web.StreamResponse:
    ticker = request.app[ticker_key]
    queue: asyncio.Queue = asyncio.Queue(maxsize=1)
    queue.put_nowait((ticker.id, f"{ticker.price:.2f}"))
    ticker.subscribers.add(queue)
    try:
        async with sse_response(request, ping_interval=request.app[ping_key]) as response:
            while response.is_connected():
                event_id, price = await queue.get()
                await response.send(price, id=str(event_id))
    finally:
        ticker.subscribers.discard(queue)
    return response


async def chat_post(request: web.Request) -> web.Response:
    form = await request.post()
    message = form.get("message")
    if not message:
        raise web.HTTPBadRequest(text="message is missing")
    return web.json_response({"id": request.app[chat_key].post(message)})


async def chat_get(request: web.Request) -> web.Response:
    chat = request.app[chat_key]
    number = int(request.match_info["number"])
    chat.waiting += 1
    try:
        while number == len(chat.messages):
            await chat.new_message.wait()
    finally:
        chat.waiting -= 1
    if number > len(chat.messages):
        raise web.HTTPNotFound(text="not yet")
    return web.Response(text=chat.messages[number])


async def status(request: web.Request) -> web.Response:
    chat, ticker = request.app[chat_key], request.app[ticker_key]
    return web.json_response({
        "chat": {"messages": len(chat.messages), "waiting": chat.waiting},
        "ticker": {"id": ticker.id, "streams": len(ticker.subscribers)},
    })


def build(tick_interval: float, ping: float) -> web.Application:
    app = web.Application()
    app[ticker_key], app[chat_key], app[ping_key] = Ticker(), Chat(), ping

    async def run_ticker(app: web.Application):
        task = asyncio.create_task(app[ticker_key].run(tick_interval))
        yield
        task.cancel()

    app.cleanup_ctx.append(run_ticker)
    app.router.add_get("/ticker", ticker_stream)
    app.router.add_post("/chat/post", chat_post)
    app.router.add_get(r"/chat/get/{number:\d+}", chat_get)
    app.router.add_get("/status", status)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tick-interval", type=float, default=1.0)
    parser.add_argument("--ping", type=float, default=15.0)
    args = parser.parse_args()
    # Bound and listening before the URL is printed (128 is aiohttp's default
    # backlog), so the load generator's first connection queues.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.address, args.port))
    sock.listen(128)
    print(f"http://{args.address}:{sock.getsockname()[1]}/", flush=True)
    web.run_app(build(args.tick_interval, args.ping), sock=sock)


if __name__ == "__main__":
    main()
