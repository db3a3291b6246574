"""Peer: the ticker with aiohttp + aiohttp-sse, the long-poll chat with aiohttp.

The ticker is written the way aiohttp-sse's own chat example broadcasts (one
``asyncio.Queue`` per subscriber, ``sse_response`` as a context manager),
with default settings except the ping interval, set to our keep-alive (15 s).

The chat holds a request the way aiohttp's examples wait for something: one
future per held GET, which a post completes; a ``call_later`` per poll ends
it at ``--poll-timeout`` (as ours does: ``asyncio.timeout`` costs more). It answers as ours does (docs/protocol.md §1): message
N at once if kept, held if N is the next one (204 after ``--poll-timeout``),
404 past the end, 410 aged out of the bounded history, the same headers.

    python bench/peers/aiohttp_app.py --port 0 --tick-interval 1.0

Routes: GET /ticker, POST /chat/post, GET /chat/get/{n}, GET /status.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import math
import random
import secrets
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
    """A bounded history and the futures of the held polls."""

    def __init__(self, history: int) -> None:
        self.messages: collections.deque[str] = collections.deque(maxlen=history)
        self.count = 0
        self.waiters: set[asyncio.Future] = set()
        self.epoch = secrets.token_urlsafe(6)

    @property
    def first(self) -> int:
        return self.count - len(self.messages)

    def post(self, message: str) -> int:
        self.messages.append(message)
        self.count += 1
        waiters, self.waiters = self.waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        return self.count - 1


ticker_key = web.AppKey("ticker", Ticker)
chat_key = web.AppKey("chat", Chat)
ping_key = web.AppKey("ping", float)
poll_timeout_key = web.AppKey("poll_timeout", float)


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


TIMEOUT = "timeout"


def expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(TIMEOUT)


def chat_headers(chat: Chat, **more: str) -> dict:
    return {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "X-Chat-Epoch": chat.epoch, **more}


async def chat_post(request: web.Request) -> web.Response:
    chat = request.app[chat_key]
    form = await request.post()
    message = form.get("message")
    if not message:
        raise web.HTTPBadRequest(text="message is missing", headers=chat_headers(chat))
    return web.json_response({"id": chat.post(message)}, headers=chat_headers(chat))


async def chat_get(request: web.Request) -> web.Response:
    chat = request.app[chat_key]
    number = int(request.match_info["number"])
    if number == chat.count:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        chat.waiters.add(waiter)
        timer = loop.call_later(request.app[poll_timeout_key], expire, waiter)
        try:
            if await waiter is TIMEOUT:
                return web.Response(status=204, headers=chat_headers(chat))
        finally:
            timer.cancel()
            chat.waiters.discard(waiter)
    if chat.first <= number < chat.count:
        return web.Response(text=chat.messages[number - chat.first], headers=chat_headers(chat))
    where = chat_headers(chat, **{"X-First-Message": str(chat.first), "X-Next-Message": str(chat.count)})
    if number > chat.count:
        raise web.HTTPNotFound(text=f"message {number} has not been posted yet", headers=where)
    raise web.HTTPGone(text=f"message {number} is no longer kept", headers=where)


async def status(request: web.Request) -> web.Response:
    chat, ticker = request.app[chat_key], request.app[ticker_key]
    return web.json_response({
        "chat": {"messages": chat.count, "first": chat.first, "waiting": len(chat.waiters)},
        "ticker": {"id": ticker.id, "streams": len(ticker.subscribers)},
    })


def build(tick_interval: float, ping: float, history: int, poll_timeout: float) -> web.Application:
    app = web.Application()
    app[ticker_key], app[chat_key], app[ping_key] = Ticker(), Chat(history), ping
    app[poll_timeout_key] = poll_timeout

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
    parser.add_argument("--history", type=int, default=1000, help="chat messages kept")
    parser.add_argument("--poll-timeout", type=float, default=25.0, help="seconds a poll is held before 204")
    args = parser.parse_args()
    # Bound and listening before the URL is printed (128 is aiohttp's default
    # backlog), so the load generator's first connection queues.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.address, args.port))
    sock.listen(128)
    print(f"http://{args.address}:{sock.getsockname()[1]}/", flush=True)
    web.run_app(build(args.tick_interval, args.ping, args.history, args.poll_timeout), sock=sock)


if __name__ == "__main__":
    main()
