"""Peer: plain Tornado, the ticker and the long-poll chat as its docs show them.

The baseline of what Tornado's own request machinery costs per held poll and
per event stream, with none of our optimisations: ``tornado.web.Application``,
``RequestHandler`` subclasses, default ``HTTPServer`` settings (its listen
backlog is 128, as the aiohttp peer's), the state on an ``Application``
subclass (as Tornado's ``demos/blog`` keeps it).
Every waiter waits as Tornado's ``demos/chat`` does, on a
``tornado.locks.Condition`` that the producer notifies, the future kept so
that ``on_connection_close`` can cancel it.

The ticker writes each event with ``self.write(frame); await self.flush()``
per stream; a ``PeriodicCallback`` per stream sends a comment every ``--ping``
seconds (aiohttp-sse's ping task, 15 s). The chat answers as the aiohttp peer
does (docs/protocol.md §1): message N at once if kept, held if N is the next
one (204 after ``--poll-timeout``), 404 past the end, 410 aged out of the
bounded history, the same headers; an answer is ``self.write()`` and return.

    python bench/peers/tornado_bare.py --port 0 --tick-interval 1.0 [--uvloop]

Routes: GET /ticker, POST /chat/post, GET /chat/get/N, GET /status.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import math
import random
import secrets

import tornado.httpserver
import tornado.ioloop
import tornado.locks
import tornado.netutil
import tornado.web
from tornado.iostream import StreamClosedError


class Ticker:
    """The price as a state: a reader gets the newest one, never a backlog."""

    def __init__(self) -> None:
        self.id, self.price = 1, 100.0
        self.random = random.Random()
        self.changed = tornado.locks.Condition()
        self.streams: set[tornado.web.RequestHandler] = set()

    def step(self) -> None:
        self.price = max(0.01, self.price * math.exp(self.random.gauss(0.0, 0.01)))
        self.id += 1
        self.changed.notify_all()


class Chat:
    """A bounded history and a condition the held polls wait on."""

    def __init__(self, history: int) -> None:
        self.messages: collections.deque[str] = collections.deque(maxlen=history)
        self.count = 0
        self.changed = tornado.locks.Condition()
        self.waiters: set[tornado.web.RequestHandler] = set()
        self.epoch = secrets.token_urlsafe(6)

    @property
    def first(self) -> int:
        return self.count - len(self.messages)

    def post(self, message: str) -> int:
        self.messages.append(message)
        self.count += 1
        self.changed.notify_all()
        return self.count - 1


class TickerHandler(tornado.web.RequestHandler):
    """GET /ticker: the current price at once, then each new one; waits on
    the ticker's condition between them, until the client goes."""

    wait_future = None

    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        ticker = self.application.ticker
        ticker.streams.add(self)
        pinger = tornado.ioloop.PeriodicCallback(self.send_ping, self.application.ping * 1000)
        pinger.start()
        try:
            sent = None
            while True:
                if sent != ticker.id:
                    sent = ticker.id
                    self.write(f"id: {ticker.id}\ndata: {ticker.price:.2f}\n\n")
                    await self.flush()
                # An event that came during the flush was not waited for:
                # the check above sends it before waiting again.
                if sent == ticker.id:
                    self.wait_future = ticker.changed.wait()
                    await self.wait_future
        except (StreamClosedError, asyncio.CancelledError):
            pass
        finally:
            pinger.stop()
            ticker.streams.discard(self)

    def send_ping(self) -> None:
        self.write(": ping\n\n")
        self.flush()

    def on_connection_close(self) -> None:
        self.application.ticker.streams.discard(self)
        if self.wait_future is not None:
            self.wait_future.cancel()


class ChatHandler(tornado.web.RequestHandler):
    """The chat's headers on every answer, errors included."""

    def set_default_headers(self) -> None:
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("X-Chat-Epoch", self.application.chat.epoch)


class PostHandler(ChatHandler):
    """POST /chat/post: appends ``message`` and wakes every held poll."""

    def post(self) -> None:
        message = self.get_body_argument("message", None)
        if not message:
            self.set_status(400)
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.write("message is missing")
            return
        self.write({"id": self.application.chat.post(message)})


class GetHandler(ChatHandler):
    """GET /chat/get/N: message N; if N is the next one, waits on the chat's
    condition until it is posted (204 after --poll-timeout)."""

    wait_future = None

    async def get(self, number: str) -> None:
        chat, wanted = self.application.chat, int(number)
        if wanted == chat.count:
            chat.waiters.add(self)
            self.wait_future = chat.changed.wait(timeout=self.application.poll_timeout)
            try:
                woken = await self.wait_future
            except asyncio.CancelledError:
                return  # the client went (on_connection_close)
            finally:
                chat.waiters.discard(self)
            if not woken:
                self.set_status(204)
                return
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        if chat.first <= wanted < chat.count:
            self.write(chat.messages[wanted - chat.first])
            return
        self.set_header("X-First-Message", str(chat.first))
        self.set_header("X-Next-Message", str(chat.count))
        if wanted > chat.count:
            self.set_status(404)
            self.write(f"message {wanted} has not been posted yet")
        else:
            self.set_status(410)
            self.write(f"message {wanted} is no longer kept")

    def on_connection_close(self) -> None:
        if self.wait_future is not None:
            self.wait_future.cancel()


class StatusHandler(tornado.web.RequestHandler):
    """GET /status: what the load generator watches."""

    def get(self) -> None:
        chat, ticker = self.application.chat, self.application.ticker
        self.write({
            "chat": {"messages": chat.count, "first": chat.first, "waiting": len(chat.waiters)},
            "ticker": {"id": ticker.id, "streams": len(ticker.streams)},
        })


class BareApp(tornado.web.Application):
    """The routes, and the ticker and chat every handler reaches through
    ``self.application``."""

    def __init__(self, history: int, ping: float, poll_timeout: float) -> None:
        self.ticker, self.chat = Ticker(), Chat(history)
        self.ping, self.poll_timeout = ping, datetime.timedelta(seconds=poll_timeout)
        super().__init__([
            (r"/ticker", TickerHandler),
            (r"/chat/post", PostHandler),
            (r"/chat/get/(\d+)", GetHandler),
            (r"/status", StatusHandler),
        ])


async def serve(args: argparse.Namespace) -> None:
    app = BareApp(args.history, args.ping, args.poll_timeout)
    # Bound and listening before the URL is printed, so the load generator's
    # first connection queues.
    sockets = tornado.netutil.bind_sockets(args.port, args.address)
    server = tornado.httpserver.HTTPServer(app)
    server.add_sockets(sockets)
    print(f"http://{args.address}:{sockets[0].getsockname()[1]}/", flush=True)
    tornado.ioloop.PeriodicCallback(app.ticker.step, args.tick_interval * 1000).start()
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tick-interval", type=float, default=1.0)
    parser.add_argument("--ping", type=float, default=15.0)
    parser.add_argument("--history", type=int, default=1000, help="chat messages kept")
    parser.add_argument("--poll-timeout", type=float, default=25.0, help="seconds a poll is held before 204")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (as ours is benchmarked)")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
