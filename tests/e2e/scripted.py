"""A scripted event-stream server, for testing the long-poll client in a
browser against bodies and statuses the real server never sends.

``ScriptedServer`` runs Tornado on its own thread and IOLoop at 127.0.0.1.
It serves

- ``/``: a blank page that loads the repository's
  ``static/js/eventsource-fallback.js`` and a small harness, ``watch(url,
  types)``, which opens ``new LongPollEventSource(url)`` and records every
  event it fires (type, data, lastEventId, and the source's readyState at that
  moment) in ``window.__events``;
- ``/script/NAME``: the answers ``script(NAME, ...)`` lined up, one per
  request, in order. Once they are used up, a request is held until the
  client goes away. Every request's headers are recorded, with its time,
  and so is every held request the client gave up (``abandoned``) and any
  exception a handler raised (``errors``).

Each test scripts its own NAME, so a source left over from another test can
never take its answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
from collections import defaultdict
from typing import Optional

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPHeaders
from tornado.netutil import bind_sockets

STATIC = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "static")
EVENT_STREAM = "text/event-stream; charset=utf-8"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>LongPollEventSource</title>
<link rel="icon" href="data:,">
<script src="/static/js/eventsource-fallback.js"></script>
<script>
window.__events = [];
window.__source = null;
// Open a LongPollEventSource on `url` and record what it fires.
function watch(url, types = []) {
  if (window.__source) window.__source.close();
  const events = window.__events = [];
  const source = window.__source = new LongPollEventSource(url);
  const record = (event) => events.push({
    type: event.type,
    data: event.data === undefined ? null : event.data,
    lastEventId: event.lastEventId === undefined ? null : event.lastEventId,
    readyState: source.readyState,
  });
  for (const type of ['open', 'message', 'error', ...types]) source.addEventListener(type, record);
  return source;
}
</script></head><body></body></html>
"""


@dataclasses.dataclass(frozen=True)
class Answer:
    """One scripted response: ``body`` with ``status`` and ``content_type``,
    or, with ``drop``, the connection closed without any response (what
    ``fetch`` reports as a network error)."""

    body: bytes = b""
    status: int = 200
    content_type: Optional[str] = EVENT_STREAM
    drop: bool = False


def events(text: str, **kwargs) -> Answer:
    """A 200 event-stream answer with ``text`` (UTF-8) as its body."""
    return Answer(body=text.encode("utf-8"), **kwargs)


NETWORK_ERROR = Answer(drop=True)


@dataclasses.dataclass(frozen=True)
class Request:
    """What a request to ``/script/NAME`` carried, and when it came."""

    headers: HTTPHeaders
    time: float

    @property
    def last_event_id(self) -> Optional[str]:
        return self.headers.get("Last-Event-ID")


class ScriptHandler(tornado.web.RequestHandler):
    def initialize(self, server: "ScriptedServer") -> None:
        self.server = server
        self.gone: Optional[asyncio.Future] = None

    def compute_etag(self) -> None:
        return None

    def log_exception(self, *exc_info) -> None:
        # A broken script must fail its test, not pass as a 500 answer.
        self.server.errors.append(f"{self.request.uri}: {exc_info[1]!r}")
        super().log_exception(*exc_info)

    def on_connection_close(self) -> None:
        if self.gone is not None and not self.gone.done():
            self.gone.set_result(None)
            self.server.abandoned[self.path_args[0]] += 1

    async def get(self, name: str) -> None:
        self.server.requests[name].append(Request(self.request.headers.copy(), time.monotonic()))
        lined_up = self.server.answers[name]
        if not lined_up:
            # Script over: hold the poll, as a server with nothing to say.
            self.gone = asyncio.get_running_loop().create_future()
            await self.gone
            return
        answer = lined_up.pop(0)
        if answer.drop:
            self.detach().close()
            return
        self.set_status(answer.status)
        if answer.content_type is not None:
            self.set_header("Content-Type", answer.content_type)
        self.set_header("Cache-Control", "no-cache")
        # So the next poll comes on a new connection: Chrome quietly sends a
        # request again when a reused connection closes without an answer,
        # and a dropped connection must reach the page as a network error.
        self.set_header("Connection", "close")
        if answer.body:
            self.write(answer.body)  # (a 204 must have no body at all)
        self.finish()


class PageHandler(tornado.web.RequestHandler):
    def get(self) -> None:
        self.finish(PAGE)


class ScriptedServer:
    """See the module doc. ``url`` is ``http://127.0.0.1:PORT/``."""

    def __init__(self) -> None:
        self.answers: dict[str, list[Answer]] = defaultdict(list)
        self.requests: dict[str, list[Request]] = defaultdict(list)
        self.abandoned: dict[str, int] = defaultdict(int)
        self.errors: list[str] = []  # exceptions in the handlers, if any
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scripted-server", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the scripted server did not start")
        self.url = f"http://127.0.0.1:{self.port}/"

    def script(self, name: str, *answers: Answer) -> str:
        """Line up ``answers`` for ``/script/NAME``; returns that URL."""
        self.loop.call_soon_threadsafe(self.answers[name].extend, answers)
        return f"{self.url}script/{name}"

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._listen())
        self._started.set()
        self.loop.run_forever()
        self.http_server.stop()
        self.loop.run_until_complete(self.http_server.close_all_connections())
        self.loop.close()

    async def _listen(self) -> None:
        app = tornado.web.Application(
            [(r"/", PageHandler), (r"/script/([\w-]+)", ScriptHandler, dict(server=self))],
            static_path=STATIC,
        )
        sockets = bind_sockets(0, "127.0.0.1")
        self.port = sockets[0].getsockname()[1]
        self.http_server = HTTPServer(app)
        self.http_server.add_sockets(sockets)

    def __enter__(self) -> "ScriptedServer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
