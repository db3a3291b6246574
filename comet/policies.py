"""The two event-source policies of CppCMS's ``sse`` contrib, as plain classes.

A policy owns the events and answers one question for every reader: given the
id you hold, what are you owed now? The event-source handler asks, writes the
answer, and is called back (``subscribe``) when the policy changes. Neither
class knows about HTTP, so both are tested without a server.

- ``BoundedEventQueue`` keeps the last N events (the chat). A reader is owed
  every event after its id, and a reader whose id no longer fits (aged out,
  or of another epoch: a history since replaced) is told so with a
  ``reset`` event.
- ``StateStream`` keeps only the newest state (the ticker). A reader is owed
  the current state when its id differs, never a backlog: a slow reader
  costs no memory.

Frames are encoded once, when the event is published, not once per reader.
"""

from __future__ import annotations

import logging
import re
import secrets
import sys
import time
from collections import deque
from typing import Callable, Optional, Union

log = logging.getLogger(__name__)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
EPOCH = re.compile(r"[A-Za-z0-9_-]{1,64}")


def encode_event(data: str, event_id: Union[int, str, None] = None, event: Optional[str] = None) -> bytes:
    """One event-stream frame. Line breaks in ``data`` become several
    ``data:`` lines, which the browser joins back with LF. ``event_id`` is
    a number or an ``EPOCH:number``: never a line break or a NUL."""
    if isinstance(event_id, str) and any(c in event_id for c in "\r\n\0"):
        raise ValueError(f"an event id cannot hold CR, LF or NUL: {event_id!r}")
    lines = []
    if event is not None:
        lines.append(f"event: {event}\n")
    if event_id is not None:
        lines.append(f"id: {event_id}\n")
    lines.extend(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    lines.append("\n")
    return "".join(lines).encode("utf-8")


def parse_number(digits: str) -> int:
    """A string of ASCII digits as an int. Past 2**63 every number is as far
    out of range as any other, so a 5000-digit one need not be converted
    (Python refuses to, past 4300 digits)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 19 else sys.maxsize


def parse_event_id(value: Optional[str]) -> Optional[int]:
    """The reader's id, or None. Anything but plain decimal digits is absent."""
    if value is None or not value.isascii() or not value.isdigit():
        return None
    return parse_number(value)


def new_epoch() -> str:
    """A fresh name for a history: letters, digits, ``-`` and ``_``."""
    return secrets.token_urlsafe(6)


class Unavailable(Exception):
    """A shared store (Redis) cannot take the event right now: nothing was
    stored, and the client should try again later."""


# tutorial: changes
class Changes:
    """Tells every subscriber, at once, that the policy changed.

    A subscriber is a callable: a stream's ``push`` or a held poll's
    ``wake``. It runs in the publisher's own call, so the new frame goes
    from here to every socket with no task switch per reader (CppCMS does
    the same with its callbacks).
    """

    def __init__(self) -> None:
        self.readers: set[Callable[[], None]] = set()
        self.handed = 0  # events handed to readers so far (the metrics read it)
        # Called once per change, after the readers, with when it began
        # (time.perf_counter()): the metrics time a publish without any work
        # per reader.
        self.on_notified: Optional[Callable[[float], None]] = None

    def subscribe(self, reader: Callable[[], None]) -> None:
        self.readers.add(reader)

    def unsubscribe(self, reader: Callable[[], None]) -> None:
        self.readers.discard(reader)

    async def look_again(self) -> None:
        """A reader holds an id this copy has not reached. Here the policy is
        the only copy, so the reader is simply ahead; a mirror of a store that
        several processes share (``comet.redis_engine``) reads the store
        first, since another process may have served it what this one has
        not heard yet."""

    def notify(self) -> None:
        started = time.perf_counter()
        readers = tuple(self.readers)  # a reader may unsubscribe meanwhile
        self.handed += len(readers)
        for reader in readers:
            try:
                reader()
            except Exception:  # one broken reader must not starve the others
                log.exception("a reader failed to take an event")
        if self.on_notified is not None:
            self.on_notified(started)
# end tutorial: changes


class BoundedEventQueue(Changes):
    """The last ``capacity`` events, numbered 0, 1, 2, … without gaps.

    ``first`` is the oldest number still kept and ``count`` the number the
    next event will get. The history has an ``epoch``, a name fixed when it
    is created: a number means something only within its epoch, so a reader
    whose id comes from another history (a server since restarted) is told
    so instead of being served the wrong messages.

    Event n goes out with ``id: EPOCH:n+1``: the id a reader holds names the
    next event it wants. A reader's cursor is ``(epoch, number)``.
    """

    def __init__(self, capacity: int = 1000, epoch: Optional[str] = None) -> None:
        super().__init__()
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.epoch = epoch or new_epoch()
        self._events: deque[str] = deque(maxlen=capacity)
        self._frames: deque[bytes] = deque(maxlen=capacity)
        # _ends[i] is the byte offset, in the whole stream ever published,
        # just past frame i; it lets backlog() answer without summing.
        self._ends: deque[int] = deque(maxlen=capacity)
        self.first = 0
        self.count = 0

    async def post(self, data: str) -> int:
        """Store a new event; the seam a shared backend (Redis) replaces."""
        return self.append(data)

    def append(self, data: str) -> int:
        number = self.count
        if len(self._events) == self._events.maxlen:
            self.first += 1
        self._events.append(data)
        frame = encode_event(data, event_id=f"{self.epoch}:{number + 1}")
        self._frames.append(frame)
        self._ends.append((self._ends[-1] if self._ends else 0) + len(frame))
        self.count += 1
        self.notify()
        return number

    def restart_at(self, first: int, events: list[str], epoch: Optional[str] = None) -> None:
        """Forget everything kept and hold ``events``, numbered from ``first``
        (in ``epoch``, when the history itself was replaced).

        For a copy of a history kept elsewhere (Redis) that moved on past the
        end of this one, or that is another history altogether: readers
        whose cursor fell into the gap, or belongs to the old epoch, get a
        ``reset``, as after a restart.
        """
        self._events.clear()
        self._frames.clear()
        self._ends.clear()
        self.epoch = epoch or self.epoch
        self.first = self.count = first
        for data in events:
            self.append(data)
        self.notify()

    def __getitem__(self, number: int) -> str:
        if not self.first <= number < self.count:
            raise IndexError(number)
        return self._events[number - self.first]

    def since(self, number: int) -> list[str]:
        """Every kept event from ``number`` on (``first <= number <= count``)."""
        start = number - self.first
        return [self._events[i] for i in range(start, len(self._events))]

    # tutorial: queue-resume
    def resume(self, last_event_id: Optional[str]) -> tuple[bytes, tuple[str, int]]:
        """Where a new reader starts: (frames it is owed first, its cursor).

        No id (or one that does not parse): from the oldest kept event. An
        id of this epoch, or a bare number, that fits the history: from
        there. Any other (aged out, or from another epoch): a ``reset``
        event naming ``first``, then everything from ``first``.
        """
        epoch, sep, digits = (last_event_id or "").rpartition(":")
        number = parse_event_id(digits)
        if number is None or (sep and not EPOCH.fullmatch(epoch)):
            return b"", (self.epoch, self.first)
        if (not sep or epoch == self.epoch) and self.first <= number <= self.count:
            return b"", (self.epoch, number)
        return self.reset(), (self.epoch, self.first)

    def reset(self) -> bytes:
        return encode_event(str(self.first), event_id=f"{self.epoch}:{self.first}", event="reset")

    def owed(self, cursor: tuple[str, int], limit: Optional[int] = None) -> tuple[bytes, tuple[str, int]]:
        """Frames from ``cursor`` on, and the cursor after them; with a
        ``limit``, about that many bytes (always at least one frame). A cursor
        that has aged out of the history, or is of another epoch, gets a
        ``reset`` first."""
        epoch, number = cursor
        prefix = b""
        if number < self.first or epoch != self.epoch:
            prefix, number = self.reset(), self.first
        frames = []
        size = len(prefix)
        while number < self.count and (limit is None or not frames or size < limit):
            frame = self._frames[number - self.first]
            frames.append(frame)
            size += len(frame)
            number += 1
        return prefix + b"".join(frames), (self.epoch, number)
    # end tutorial: queue-resume

    def backlog(self, cursor: tuple[str, int]) -> int:
        """Bytes published that a reader at ``cursor`` has not been given."""
        epoch, number = cursor
        if (number >= self.count and epoch == self.epoch) or not self._ends:
            return 0
        if number <= self.first or epoch != self.epoch:
            start = self._ends[0] - len(self._frames[0])
        else:
            start = self._ends[number - self.first - 1]
        return self._ends[-1] - start


# tutorial: state-stream
class StateStream(Changes):
    """Only the newest state, numbered K = 1, 2, 3, … one per update."""

    def __init__(self, data: str) -> None:
        super().__init__()
        self.id = 1
        self.data = data
        self._frame = encode_event(data, event_id=self.id)

    def update(self, data: str) -> int:
        """The next state, numbered one past the current one."""
        self.publish(self.id + 1, data)
        return self.id

    def publish(self, event_id: int, data: str) -> None:
        """Take a state numbered elsewhere (the ticker shared through Redis)."""
        self.id = event_id
        self.data = data
        self._frame = encode_event(data, event_id=self.id)
        self.notify()

    def resume(self, last_event_id: Optional[str]) -> tuple[bytes, Optional[int]]:
        """The reader's cursor is simply the id it holds: a number, or None."""
        return b"", parse_event_id(last_event_id)

    def owed(self, cursor: Optional[int], limit: Optional[int] = None) -> tuple[bytes, Optional[int]]:
        """The article's rule: a reader holding K waits; any other id, none
        included, gets K now."""
        if cursor == self.id:
            return b"", cursor
        return self._frame, self.id

    def backlog(self, cursor: Optional[int]) -> int:
        return 0  # never a queue: a reader that falls behind skips to the newest
# end tutorial: state-stream
