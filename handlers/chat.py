"""The chat of the CppCMS tutorial "Implementing Chat", over long polling.

The client posts to ``/chat/post`` and asks ``/chat/get/N`` for message N.
When N is the next message to be written, the request is held until someone
posts it. ``/chat/since/N`` is the bulk catch-up the tutorial calls "easily
fixed", and ``/chat/events`` serves the same history as an event stream.

Every handler shares one ``BoundedEventQueue``, the ``history``.
"""

from __future__ import annotations

import json
from typing import Optional

import tornado.httputil
import tornado.web

from comet.clients import GONE, Clients
from comet.policies import BoundedEventQueue, Unavailable, parse_number
from comet.ratelimit import PostRate
from handlers.base import BaseHandler, HoldingHandler, RetryLater, UncachedHandler
from handlers.eventsource import EventSourceHandler
from handlers.writer import PlainWriter


# tutorial: check-cursor
def check_cursor(history: BoundedEventQueue, number: int, epoch: str) -> None:
    """410 when ``epoch`` is not the history's (the cursor belongs to another
    history), 404 past the end, 410 aged out; ``where_the_history_is()``
    adds the headers that say where the history is."""
    if epoch != history.epoch:
        raise tornado.web.HTTPError(410, "the cursor belongs to epoch %r, not to this history", epoch)
    if history.first <= number <= history.count:
        return
    if number > history.count:
        raise tornado.web.HTTPError(404, "message %d has not been posted yet", number)
    raise tornado.web.HTTPError(410, "message %d is no longer kept", number)
# end tutorial: check-cursor


def asked_epoch(handler: BaseHandler, history: BoundedEventQueue) -> str:
    """The epoch the client's cursor belongs to (``?epoch=``), or the
    current one when it names none."""
    epoch = handler.query("epoch")
    return history.epoch if epoch is None else epoch


def where_the_history_is(handler: BaseHandler, history: BoundedEventQueue, status_code: int) -> None:
    """The headers an error under /chat/ carries: the epoch, and after a 404
    or a 410 the first and next message, so the client can resynchronise.
    Set in ``write_error``, not where the error is raised: ``send_error()``
    clears the headers first."""
    handler.set_header("X-Chat-Epoch", history.epoch)
    if status_code in (404, 410):
        handler.set_header("X-First-Message", str(history.first))
        handler.set_header("X-Next-Message", str(history.count))


class ChatHandler(UncachedHandler):
    """What /chat/post, /chat/since and the 404s under /chat/ share: the
    history, and its epoch on every answer."""

    def initialize(self, history: BoundedEventQueue) -> None:
        self.history = history
        self.set_header("X-Chat-Epoch", history.epoch)

    def write_error(self, status_code: int, **kwargs) -> None:
        where_the_history_is(self, self.history, status_code)
        super().write_error(status_code, **kwargs)


@tornado.web.stream_request_body
class PostHandler(ChatHandler):
    """POST /chat/post: stores the form field ``message``, wakes every waiter.

    The body is read as it arrives, so an oversized post is refused with 413
    as soon as it passes ``--max-body``, without being kept in memory.
    """

    FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")

    def initialize(self, history: BoundedEventQueue, max_body: int, max_message: int,
                   post_rate: PostRate) -> None:
        super().initialize(history)
        self.max_body = max_body
        self.max_message = max_message
        self.post_rate = post_rate

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
        limit = self.max_body
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
        if len(self.body) > self.max_body:
            self.body = None
            self.send_error(413, message=f"the body is over {self.max_body} bytes")

    # tutorial: chat-post
    async def post(self) -> None:
        raw = self.read_form().get("message", [b""])[0]
        try:
            message = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise tornado.web.HTTPError(400, "message is not valid UTF-8")
        if not message:
            raise tornado.web.HTTPError(400, "message is missing or empty")
        if len(message) > self.max_message:
            raise tornado.web.HTTPError(413, "message is over %d characters", self.max_message)
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


class GetHandler(HoldingHandler):
    """GET /chat/get/N: message N at once if it exists; if N is the next
    message, waits until it is posted, the poll times out (204), or the
    client goes away (forgotten at once)."""

    def initialize(self, history: BoundedEventQueue, clients: Clients, writer: PlainWriter,
                   poll_timeout: float) -> None:
        super().initialize(clients, writer)
        self.history = history
        self.poll_timeout = poll_timeout
        self.set_header("X-Chat-Epoch", history.epoch)

    # tutorial: chat-get
    async def get(self, number_text: str) -> None:
        number, epoch = parse_number(number_text), asked_epoch(self, self.history)
        if number > self.history.count:  # ahead of this copy of the history?
            await self.history.look_again()
        check_cursor(self.history, number, epoch)
        if number == self.history.count:
            with self.holding("chat.waiting"):
                woke = await self.hold(self.history, timeout=self.poll_timeout)
            if woke is GONE:
                return
            # A burst may have pushed it out already, or (with Redis) the
            # history may have been replaced meanwhile.
            check_cursor(self.history, number, epoch)
            if number == self.history.count:  # timed out, or the server is closing
                self.set_status(204)
                return
        self.set_header("Content-Type", "text/plain; charset=UTF-8")
        # One post wakes every waiter of message N with the same answer.
        message = self.history[number].encode("utf-8")
        self.writer.finish(self, message, same_as=(self.history.epoch, number))
    # end tutorial: chat-get

    def write_error(self, status_code: int, **kwargs) -> None:
        where_the_history_is(self, self.history, status_code)
        super().write_error(status_code, **kwargs)


class SinceHandler(ChatHandler):
    """GET /chat/since/N: every kept message from N on, at once, never held."""

    # tutorial: chat-since
    async def get(self, number_text: str) -> None:
        number = parse_number(number_text)
        if number > self.history.count:  # ahead of this copy of the history?
            await self.history.look_again()
        check_cursor(self.history, number, asked_epoch(self, self.history))
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
