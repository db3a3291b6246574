"""The chat of the CppCMS tutorial "Implementing Chat", over long polling.

The client posts to ``/chat/post`` and asks ``/chat/get/N`` for message N.
When N is the next message to be written, the request is held until someone
posts it. ``/chat/since/N`` is the bulk catch-up the tutorial calls "easily
fixed", and ``/chat/events`` serves the same history as an event stream.

Every handler shares one ``BoundedEventQueue``, the ``history``.
"""

from __future__ import annotations

import json
import time
from typing import Optional

import tornado.httputil
import tornado.web

from comet.clients import GONE, WOKEN
from comet.policies import BoundedEventQueue, Unavailable, parse_number
from comet.ratelimit import PostRate
from handlers import past_tornado
from handlers.base import HoldingHandler, RetryLater, UncachedHandler
from handlers.eventsource import EventSourceHandler


class ChatHandler(UncachedHandler):
    """What /chat/get and /chat/since share: the history, its bounds and
    its epoch."""

    def initialize(self, history: BoundedEventQueue, **kwargs) -> None:
        self.history = history
        super().initialize(**kwargs)
        self.set_header("X-Chat-Epoch", history.epoch)

    # tutorial: check-cursor
    def check_cursor(self, number: int, epoch: str) -> None:
        """410 when ``epoch`` is not the history's (the cursor belongs to
        another history), 404 past the end, 410 aged out; ``write_error``
        says where the history is."""
        if epoch != self.history.epoch:
            raise tornado.web.HTTPError(410, "the cursor belongs to epoch %r, not to this history", epoch)
        if self.history.first <= number <= self.history.count:
            return
        if number > self.history.count:
            raise tornado.web.HTTPError(404, "message %d has not been posted yet", number)
        raise tornado.web.HTTPError(410, "message %d is no longer kept", number)
    # end tutorial: check-cursor

    def asked_epoch(self) -> str:
        """The epoch the client's cursor belongs to (``?epoch=``), or the
        current one when it names none."""
        epoch = self.query("epoch")
        return self.history.epoch if epoch is None else epoch

    def write_error(self, status_code: int, **kwargs) -> None:
        # Here, not where the error is raised: send_error() clears headers
        # first (and set_default_headers puts Cache-Control back).
        self.set_header("X-Chat-Epoch", self.history.epoch)
        if status_code in (404, 410):
            self.set_header("X-First-Message", str(self.history.first))
            self.set_header("X-Next-Message", str(self.history.count))
        super().write_error(status_code, **kwargs)


@tornado.web.stream_request_body
class PostHandler(ChatHandler):
    """POST /chat/post: stores the form field ``message``, wakes every waiter.

    The body is read as it arrives, so an oversized post is refused with 413
    as soon as it passes ``--max-body``, without being kept in memory.
    """

    FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

    def initialize(self, post_rate: PostRate, **kwargs) -> None:
        self.post_rate = post_rate
        super().initialize(**kwargs)

    def prepare(self) -> None:
        # A post from another site's page was refused (403) before this, by
        # the application's cross_origin_protection.
        self.body: Optional[bytearray] = None  # None: refused, the rest is not read
        # Before anything is read: past its rate an address is refused (429).
        wait = self.post_rate.take(self.request.remote_ip or "")
        if wait:
            raise RetryLater(429, self.post_rate.retry_after(wait),
                             "more than %g posts a second from one address; try again in %d s",
                             self.post_rate.rate, self.post_rate.retry_after(wait))
        limit = self.settings["max_body"]
        length = self.request.headers.get("Content-Length")
        if length is None:
            # Chunked: the size is known only as it arrives (data_received).
            self.request.connection.set_max_body_size(1 << 40)
        elif not length.isdigit():
            raise tornado.web.HTTPError(400, "Content-Length is not a number")
        elif int(length) > limit:
            # Let Tornado start on the body instead of answering a bare 400;
            # it closes the connection once our 413 is out, unread.
            self.request.connection.set_max_body_size(int(length))
            raise tornado.web.HTTPError(413, "the body is over %d bytes", limit)
        else:
            self.request.connection.set_max_body_size(limit)
        self.body = bytearray()

    def data_received(self, chunk: bytes) -> None:
        if self.body is None:
            return
        self.body += chunk
        if len(self.body) > self.settings["max_body"]:
            self.body = None
            self.send_error(413, message=f"the body is over {self.settings['max_body']} bytes")

    # tutorial: chat-post
    async def post(self) -> None:
        raw = self.read_form().get("message", [b""])[0]
        try:
            message = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise tornado.web.HTTPError(400, "message is not valid UTF-8")
        if not message:
            raise tornado.web.HTTPError(400, "message is missing or empty")
        if len(message) > self.settings["max_message"]:
            raise tornado.web.HTTPError(413, "message is over %d characters", self.settings["max_message"])
        try:
            number = await self.history.post(message)
        except Unavailable as error:
            raise tornado.web.HTTPError(503, "the chat store is unavailable: %s", error)
        self.write({"id": number})
    # end tutorial: chat-post

    def read_form(self) -> dict[str, list[bytes]]:
        """The fields of the body, which must be a well-formed form of its
        declared type, or a 400 saying what is wrong with it. Tornado's parser
        raises on any flaw (a multipart body without its boundary,
        unterminated, a part without headers or name, a compressed body);
        before Tornado 6.5 it logged a warning and kept the parts it had read."""
        kind, _, parameters = self.request.headers.get("Content-Type", "").partition(";")
        kind = kind.strip().lower()  # media types are case-insensitive; Tornado's test is not
        if kind not in self.FORM_TYPES:
            raise tornado.web.HTTPError(400, "the body is not a form (%s)", " or ".join(self.FORM_TYPES))
        fields: dict[str, list[bytes]] = {}
        try:
            tornado.httputil.parse_body_arguments(
                f"{kind};{parameters}", bytes(self.body), fields, {}, self.request.headers
            )
        except tornado.httputil.HTTPInputError as error:
            raise tornado.web.HTTPError(400, "%s", error) from None
        return fields


class ChatNotFoundHandler(ChatHandler):
    """Any other path under /chat/ (``/chat/get/abc``, ``/chat/get/-1``):
    a 404 that is not cached either, like every answer under /chat/."""

    def prepare(self) -> None:
        raise tornado.web.HTTPError(404, "no such chat resource")


class SharedAnswer:
    """The answer every waiter of one message gets: one post wakes thousands
    of polls, and within a second (the ``Date`` header's) they all get the
    same bytes, so those are formatted once."""

    def __init__(self) -> None:
        self.key: tuple = ()
        self.response = b""

    def get(self, handler: "GetHandler", number: int) -> bytes:
        key = (handler.history.epoch, number, int(time.time()))
        if key != self.key:
            body = handler.history[number].encode("utf-8")
            self.key, self.response = key, past_tornado.whole_response(handler, body)
        return self.response


class GetHandler(ChatHandler, HoldingHandler):
    """GET /chat/get/N: message N at once if it exists; if N is the next
    message, waits until it is posted, the poll times out (204), or the
    client goes away (forgotten at once)."""

    def initialize(self, answer: SharedAnswer, **kwargs) -> None:
        self.shared = answer
        super().initialize(**kwargs)

    # tutorial: chat-get
    async def get(self, number_text: str) -> None:
        number, epoch = parse_number(number_text), self.asked_epoch()
        self.check_cursor(number, epoch)
        woke = None
        if number == self.history.count:
            with self.holding("chat.waiting"):
                woke = await self.hold(self.history, timeout=self.settings["poll_timeout"])
            if woke is GONE:
                return
            # A burst may have pushed it out already, or (with Redis) the
            # history may have been replaced meanwhile.
            self.check_cursor(number, epoch)
            if number == self.history.count:  # timed out, or the server is closing
                self.set_status(204)
                return
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        if woke is WOKEN and past_tornado.can_answer(self.request):
            # One of thousands woken by the same post (issue 15).
            past_tornado.answer(self, self.shared.get(self, number))
            return
        self.write(self.history[number].encode("utf-8"))
    # end tutorial: chat-get


class SinceHandler(ChatHandler):
    """GET /chat/since/N: every kept message from N on, at once, never held."""

    # tutorial: chat-since
    def get(self, number_text: str) -> None:
        number = parse_number(number_text)
        self.check_cursor(number, self.asked_epoch())
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({
            "epoch": self.history.epoch,
            "first": self.history.first,
            "next": self.history.count,
            "messages": self.history.since(number),
        }))
    # end tutorial: chat-since


class EventsHandler(EventSourceHandler):
    """GET /chat/events: the history as an event stream (bounded queue)."""
