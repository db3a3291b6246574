"""Comet on Tornado: a long-polling chat and a Server-Sent Events ticker.

``make_app()`` builds the application and the shared state its handlers are
given; ``main()`` reads the flags, starts the engine, listens, and shuts
down cleanly on SIGINT or SIGTERM. Run ``python app.py --help`` for the flags.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import resource
import signal
import socket
import sys
from typing import Optional

import tornado.netutil
import tornado.web
from tornado.httpserver import HTTPServer
from tornado.options import define, options, parse_command_line

from comet.clients import Clients
from comet.engine import Engine, StoreError, open_engine
from comet.metrics import Metrics
from comet.ratelimit import PostRate
from handlers.base import log_request
from handlers.chat import ChatNotFoundHandler, EventsHandler, GetHandler, PostHandler, SinceHandler
from handlers.eventsource import StreamConfig
from handlers.metrics import metrics_app
from handlers.pages import NotFoundHandler, PageHandler, StaticFiles, StatusHandler
from handlers.ticker import TickerHandler
from handlers.writer import PlainWriter, choose_writer

HERE = os.path.dirname(os.path.abspath(__file__))

# Where the server listens: main() reads these.
define("port", default=8888, help="port to listen on; 0 picks a free one", group="server")
define("address", default="127.0.0.1", help="address to listen on", group="server")
define("uvloop", default=False, help="run on uvloop, a faster event loop (pip install uvloop)", group="server")
define("metrics_port", default=0, help="serve GET /metrics (Prometheus) on 127.0.0.1 at this port (0: not at all)", group="server")
define("drain", default=1.0, help="at SIGTERM, seconds over which open streams and polls are ended, a few at a time", group="server")
define("xheaders", default=False, help="behind a proxy: take the client's address from its X-Real-IP / X-Forwarded-For", group="server")
define("writer", default="fast", help="how held responses reach the socket: plain (Tornado's public API, what the "
       "tutorial teaches) or fast (handlers/fast_writer.py; plain where this Tornado lacks what it needs)",
       group="server")
# What make_app() is built from: Config.from_options(); tests replace any of them.
define("debug", default=False, help="reload on change, tracebacks in error pages", group="app")
define("poll_timeout", default=25.0, help="seconds a long poll is held before 204 / an empty batch", group="app")
define("history", default=1000, help="chat messages kept", group="app")
define("max_message", default=2000, help="longest chat message, in characters", group="app")
define("max_body", default=64 * 1024, help="largest request body, in bytes", group="app")
define("retry", default=2000, help="reconnection delay sent to EventSource clients, in ms", group="app")
define("retry_jitter", default=2000, help="up to this many ms added at random to each stream's retry (0: none)", group="app")
define("keepalive", default=15.0, help="seconds between keep-alive comments on an idle stream", group="app")
define("tick_interval", default=1.0, help="seconds between price moves", group="app")
define("max_clients", default=10000, help="open streams plus held polls; past it, 503", group="app")
# A browser's tabs share one connection per stream, so a browser holds one or
# two; 2500 lets an office of a thousand behind one NAT address in with room
# to spare, while one address (a script in a loop) gets a quarter of the
# default --max-clients, never every slot. docs/deployment.md says more.
define("max_clients_per_address", default=2500, help="open streams plus held polls from one address; past it, 503 (0: no cap)", group="app")
define("max_backlog", default=256 * 1024, help="bytes a stuck chat stream may fall behind before it is dropped", group="app")
define("gzip", default=False, help="compress pages (never event streams or polls)", group="app")
define("db", default="", help="the SQLite file that keeps the chat's history (default: instance/chat.db beside app.py; "
       ":memory: keeps it in this process only)", group="app")
define("drain_retry", default=0, help="at SIGTERM, the retry: in ms (at most, drawn at random) ended streams are told, for a process with others beside it behind a proxy (0: their own)", group="app")
define("post_rate", default=5.0, help="posts a second one address may make, on average (0: no limit); past it, 429", group="app")
define("post_burst", default=20, help="posts one address may make at once before --post-rate applies (0: no limit)", group="app")
define("redis", default="", help="redis://host:port/db: share the chat and the ticker with other processes", group="app")


# tutorial: page-gzip
class PageGZip(tornado.web.OutputTransform):
    """Pages only. Tornado's gzip takes every ``text/*`` type, event streams
    included. A stream stays plain: a 30-byte event gains nothing, each
    stream would keep its own zlib state (256 KiB allocated, ~90 KiB touched at
    first), and a buffering proxy
    would sit on the compressed bytes. So a response goes through Tornado's
    own ``GZipContentEncoding`` only when its type is a page's."""

    PAGE_TYPES = {"text/html", "text/css", "application/javascript", "application/json", "image/svg+xml"}

    def __init__(self, request) -> None:
        self.gzip: Optional[tornado.web.GZipContentEncoding] = tornado.web.GZipContentEncoding(request)

    def transform_first_chunk(self, status_code, headers, chunk, finishing):
        if headers.get("Content-Type", "").split(";")[0] not in self.PAGE_TYPES:
            self.gzip = None
            return status_code, headers, chunk
        return self.gzip.transform_first_chunk(status_code, headers, chunk, finishing)

    def transform_chunk(self, chunk: bytes, finishing: bool) -> bytes:
        return chunk if self.gzip is None else self.gzip.transform_chunk(chunk, finishing)
# end tutorial: page-gzip


@dataclasses.dataclass(frozen=True)
class Config:
    """The application's own flags (group "app" above), as they were at start."""

    debug: bool
    poll_timeout: float
    history: int
    max_message: int
    max_body: int
    retry: int
    retry_jitter: int
    keepalive: float
    tick_interval: float
    max_clients: int
    max_clients_per_address: int
    max_backlog: int
    gzip: bool
    drain_retry: int
    post_rate: float
    post_burst: int
    db: str
    redis: str

    @classmethod
    def from_options(cls, **changes) -> "Config":
        """The flags as parsed, with ``changes`` (tests use them)."""
        return dataclasses.replace(cls(**options.group_dict("app")), **changes)

    def stream(self) -> StreamConfig:
        """What an event source is told."""
        return StreamConfig(retry=self.retry, retry_jitter=self.retry_jitter, keepalive=self.keepalive,
                            poll_timeout=self.poll_timeout, max_backlog=self.max_backlog,
                            drain_retry=self.drain_retry)


class CometApp(tornado.web.Application):
    """The application and the state its handlers share: the ``engine``
    (``history``, the chat; ``prices``, the ticker), ``clients``, the
    requests being held, and the ``writer`` their answers go through. The
    route table shows what each handler is handed."""

    def __init__(self, config: Config, writer: PlainWriter) -> None:
        self.config = config
        self.writer = writer
        self.engine = open_engine(config.redis, config.db, config.history, config.tick_interval)
        self.history, self.prices = self.engine.history, self.engine.prices
        self.clients = Clients(config.max_clients, config.max_clients_per_address)
        self.post_rate = PostRate(config.post_rate, config.post_burst)
        self.metrics = Metrics(self.clients, self.history, self.prices, self.post_rate)
        history, prices, clients, stream = self.history, self.prices, self.clients, config.stream()
        timers = dict(keepalive=config.keepalive, poll_timeout=config.poll_timeout)
        super().__init__(
            [
                (r"/", PageHandler, dict(template="index.html") | timers),
                (r"/chat", PageHandler, dict(template="chat.html") | timers),
                (r"/stock", PageHandler, dict(template="stock.html") | timers),
                (r"/status", StatusHandler, dict(history=history, prices=prices, clients=clients)),
                (r"/chat/post", PostHandler,
                 dict(history=history, max_body=config.max_body, max_message=config.max_message,
                      post_rate=self.post_rate)),
                (r"/chat/get/([0-9]+)", GetHandler,
                 dict(history=history, clients=clients, writer=writer, poll_timeout=config.poll_timeout)),
                (r"/chat/since/([0-9]+)", SinceHandler, dict(history=history)),
                (r"/chat/events", EventsHandler,
                 dict(source=history, kind="chat.streams", clients=clients, writer=writer, config=stream)),
                (r"/ticker", TickerHandler,
                 dict(source=prices, kind="ticker.streams", clients=clients, writer=writer, config=stream)),
                (r"/chat/.*", ChatNotFoundHandler, dict(history=history)),  # /chat/get/abc too: not cached
            ],
            default_handler_class=NotFoundHandler,
            # A POST from another site's page is refused with a 403: Go's
            # CrossOriginProtection rule (Sec-Fetch-Site, else Origin vs Host).
            cross_origin_protection=True,
            template_path=os.path.join(HERE, "templates"),
            static_path=os.path.join(HERE, "static"),
            static_handler_class=StaticFiles,
            log_function=log_request,
            debug=config.debug,
        )
        if config.gzip:
            self.add_transform(PageGZip)

    def log_request(self, handler: tornado.web.RequestHandler) -> None:
        """Every answered request is counted for the metrics, then logged."""
        self.metrics.count(handler)
        super().log_request(handler)


def make_app(config: Optional[Config] = None, writer: Optional[PlainWriter] = None) -> CometApp:
    """The application, from the flags (or ``config``), writing through
    ``writer`` (the plain one unless told)."""
    return CometApp(config or Config.from_options(), writer or PlainWriter())


# tutorial: held-sockets
def hold_long(listeners: list[socket.socket]) -> None:
    """Two TCP options for connections that are held open for long, set on
    the listening sockets: Linux gives every connection a listener accepts
    the listener's TCP options (tests/unit/test_hold_long.py checks it)."""
    for sock in listeners:
        # Unsent bytes the kernel keeps per socket: past this a send() takes
        # less, so a stuck reader stops being fed at once (one write in
        # flight) instead of parking megabytes of stale frames in the kernel.
        if hasattr(socket, "TCP_NOTSENT_LOWAT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT, 16 * 1024)
        # A peer that vanished without a FIN is found when a write (a
        # keep-alive) goes unacknowledged for 30 s, not after ~15 minutes of
        # retransmissions.
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 30_000)


def raise_open_file_limit() -> int:
    """Each client is a socket: lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass  # not allowed here (a container): keep the soft limit
    return soft
# end tutorial: held-sockets


async def start_engine(engine: Engine, stop: asyncio.Event) -> bool:
    """Start ``engine``: False if SIGINT or SIGTERM came first (an engine may
    wait for Redis for as long as Redis takes to answer)."""
    starting = asyncio.ensure_future(engine.start())
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if starting.done():
        starting.result()  # a StoreError, if the store cannot be used
        return True
    starting.cancel()
    await engine.stop()
    return False


async def main() -> None:
    """Serve until SIGINT or SIGTERM (the flags are parsed already)."""
    # Each held client is a few hundred long-lived objects; a full collection
    # walks all of them, and by default one runs after every 10 collections
    # of the middle generation while they grow. Ten times rarer: young
    # cycles are still found at once by the first two generations. (Under
    # either --writer: it is the held clients' cost, not the writer's.)
    gc.set_threshold(700, 10, 100)
    raise_open_file_limit()
    writer, fallback = choose_writer(options.writer)
    if fallback:
        print(fallback, file=sys.stderr, flush=True)

    # tutorial: shutdown
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # The history (and the price) first, the port second: a request served
    # before the engine has loaded would see an empty history, and a reader
    # holding a good id would be told to start again.
    try:
        app = make_app(writer=writer)
        if not await start_engine(app.engine, stop):
            return
    except StoreError as error:
        sys.exit(f"app.py: {error}")  # one line, no traceback: the store is the user's to fix
    # idle_connection_timeout: idle keep-alive connections only; a held request is not idle.
    server = HTTPServer(app, xheaders=options.xheaders, max_body_size=options.max_body, idle_connection_timeout=60)
    # A burst of thousands of reconnecting clients overflows Tornado's default 128.
    sockets = tornado.netutil.bind_sockets(options.port, options.address, backlog=1024)
    hold_long(sockets)
    server.add_sockets(sockets)
    if options.metrics_port:  # loopback only: the metrics are not for every visitor
        metrics = HTTPServer(metrics_app(app.metrics.registry))
        metrics.listen(options.metrics_port, "127.0.0.1")
    # Ready: scripts and tests that wait for this line wait for readiness.
    print(f"http://{options.address}:{sockets[0].getsockname()[1]}/", flush=True)
    await stop.wait()

    # Stop taking connections (behind a proxy, new requests go to the other
    # processes), tell every held request to finish its response, a few at a
    # time over --drain seconds, give them a moment to go out, then close
    # what is left.
    server.stop()
    await app.clients.release_all(timeout=1.5, spread=options.drain)
    await app.engine.stop()
    try:
        await asyncio.wait_for(server.close_all_connections(), timeout=1.0)
    except asyncio.TimeoutError:
        pass
    # end tutorial: shutdown


if __name__ == "__main__":
    parse_command_line()
    if options.writer not in ("plain", "fast"):
        sys.exit(f"--writer={options.writer}: choose plain or fast")
    if options.uvloop:  # a faster event loop; Tornado runs on it unchanged
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
