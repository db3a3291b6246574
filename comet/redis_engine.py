"""Several processes, one chat and one ticker: the two policies shared through Redis.

One Tornado process holds many clients, but a site behind a load balancer runs
several, and a message posted on one of them must reach readers on all of
them. ``--redis=redis://host:port/db`` does that, and no handler changes: each
process keeps its own ``BoundedEventQueue`` and ``StateStream``, the handlers
read those as always, and Redis is the source of truth that keeps every
process's copy, its *mirror*, the same.

- The chat. ``RedisHistory.post()`` runs one Lua script that numbers the
  message (a counter), keeps it (a list trimmed to ``--history``) and
  publishes it. Redis runs a script alone, so the numbers are dense, they go
  out in the order they were given, and nothing is ever stored half-way.
  Every process subscribes and appends what it hears to its mirror; one that
  missed something (it just started, or lost Redis for a while) reads the
  missing messages back from the list.
- The ticker. ``RedisTicker``: one process at a time holds a lease (a key
  that expires unless renewed) and only that one moves the price; K and the
  price live in a hash and are published. When the holder dies its lease
  runs out, and another process takes over from the K and price in Redis.
- Redis away. A post gets ``Unavailable`` (the handler answers 503), and a
  post that reaches Redis after its poster gave up is refused, so a 503 never
  hides a message stored late; streams keep their readers with keep-alives,
  which their handlers send anyway; the engine retries in the background and
  catches up once Redis is back. A Redis that comes back empty (it keeps
  nothing on disk) is refilled from the mirrors, so message numbers and K
  never go back.

This is the only module that imports redis-py: the in-memory path never does.
It needs Redis 5 or later (a script that reads the clock, then writes).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from urllib.parse import urlsplit

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from comet.policies import BoundedEventQueue, StateStream, Unavailable, new_epoch
from comet.walk import RandomWalk

log = logging.getLogger(__name__)

CHAT_NEXT = "comet:chat:next"  # the number the next message gets
CHAT_MESSAGES = "comet:chat:messages"  # the newest messages, oldest first
CHAT_EPOCH = "comet:chat:epoch"  # the name of this history; a new one only when it is lost
CHAT_CHANNEL = "comet:chat"  # "<epoch> <number> <message>" for each post
TICKER_LEASE = "comet:ticker:lease"  # who moves the price, while it lasts
TICKER_STATE = "comet:ticker:state"  # {"id": K, "price": "101.25"}
TICKER_CHANNEL = "comet:ticker"  # "<K> <price>" for each move

KEYS = [CHAT_NEXT, CHAT_MESSAGES, CHAT_EPOCH]  # every chat script's keys, in this order

LEASE_SECONDS = 3.0  # a dead holder's lease runs out after this
BEAT_SECONDS = 1.0  # the most time between two renewals of the lease
RETRY_SECONDS = 0.5  # between two attempts to reach Redis again
PING_SECONDS = 2.0  # a quiet subscription is pinged this often,
SILENT_SECONDS = 6.0  # and given up for lost after this much silence
START_SECONDS = 3.0  # start() says it is still waiting for Redis after this long
ANSWER_SECONDS = 2.0  # how long any command waits for Redis's answer
POST_SECONDS = 1.5  # a post reaching Redis later than this is refused: its poster is about to give up

# Numbers, keeps and publishes one message. Refused, with nothing stored:
# -2 past the deadline ARGV[5] (ms, Redis's clock): the poster stopped waiting
# and answered 503, so a post held up on the way (a hung Redis, a network
# that heals) must not be stored late; -1 when the counter is below ARGV[3],
# the poster's count, or the epoch is not ARGV[6], the poster's: Redis lost
# its data, or holds another history, and the number would clash.
POST = """
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + tonumber(now[2]) / 1000 > tonumber(ARGV[5]) then return -2 end
if redis.call('GET', KEYS[3]) ~= ARGV[6] then return -1 end
local number = tonumber(redis.call('GET', KEYS[1]) or '0')
if number < tonumber(ARGV[3]) then return -1 end
redis.call('INCR', KEYS[1])
redis.call('RPUSH', KEYS[2], ARGV[1])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call('PUBLISH', ARGV[4], ARGV[6] .. ' ' .. string.format('%d', number) .. ' ' .. ARGV[1])
return number
"""

# The epoch, the counter, then the kept messages from number ARGV[2] on (at
# most ARGV[1] of them; all of them when the epoch is not ARGV[3], the
# caller's), as {epoch or false, next, number of the first returned, messages}.
LOAD = """
local epoch = redis.call('GET', KEYS[3])
local next = tonumber(redis.call('GET', KEYS[1]) or '0')
local from = tonumber(ARGV[2])
if epoch ~= ARGV[3] then from = 0 end
local kept = redis.call('LLEN', KEYS[2])
local first = math.max(next - kept, next - tonumber(ARGV[1]), from)
if first >= next then return {epoch, next, next, {}} end
return {epoch, next, first, redis.call('LRANGE', KEYS[2], first - next, -1)}
"""

# Refills a Redis that lost the chat from a mirror (epoch ARGV[1], count
# ARGV[2], then its messages): 1. Names the history without touching its
# messages when Redis has no epoch but is not behind (a brand-new history):
# 2. Does nothing (0) when Redis holds another history (the newer one: the
# mirror follows it), or this one, not behind (another process refilled it).
SEED = """
local epoch = redis.call('GET', KEYS[3])
local next = tonumber(redis.call('GET', KEYS[1]) or '0')
if epoch and (epoch ~= ARGV[1] or next >= tonumber(ARGV[2])) then return 0 end
redis.call('SET', KEYS[3], ARGV[1])
if next >= tonumber(ARGV[2]) then return 2 end
redis.call('DEL', KEYS[2])
for i = 3, #ARGV do redis.call('RPUSH', KEYS[2], ARGV[i]) end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""

# Renews the lease if this process (token ARGV[1]) holds it, takes it if it is
# free; answers {held, K, price}. A new holder of an empty store starts it from
# its own mirror (ARGV[3], ARGV[4]), so K goes on from where it was.
LEASE = """
local held = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    held = 1
elseif redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    held = 1
    redis.call('HSETNX', KEYS[2], 'id', ARGV[3])
    redis.call('HSETNX', KEYS[2], 'price', ARGV[4])
end
local state = redis.call('HMGET', KEYS[2], 'id', 'price')
return {held, state[1], state[2]}
"""

# One move, only by the lease holder: K+1 and the new price, published.
MOVE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return false end
local id = redis.call('HINCRBY', KEYS[2], 'id', 1)
redis.call('HSET', KEYS[2], 'price', ARGV[2])
redis.call('PUBLISH', ARGV[3], string.format('%d', id) .. ' ' .. ARGV[2])
return id
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisHistory(BoundedEventQueue):
    """The chat history, numbered and kept by Redis. This object is the
    process's mirror of it: the handlers read it like any history."""

    def __init__(self, client: redis.Redis, capacity: int, where: str) -> None:
        super().__init__(capacity)
        self.epoch = None  # unknown until read from Redis: never one made up here
        self.capacity = capacity
        self.where = where
        self.clock_offset = 0.0  # Redis's clock minus ours, in seconds: read_clock()
        self.redis = client
        self._post_script = client.register_script(POST)
        self._load = client.register_script(LOAD)
        self._seed = client.register_script(SEED)

    async def post(self, data: str) -> int:
        """Number, keep and publish ``data`` in Redis; return its number once
        this mirror holds it, so that ``/chat/get/N`` right after answers."""
        try:
            number = await self._store(data)
            if number == -1:  # Redis came back empty, or holds a newer history
                await self.catch_up()
                number = await self._store(data)
        except RedisError as error:
            raise Unavailable(f"Redis at {self.where} did not take it ({error}); try again in a moment") from error
        if number == -2:
            raise Unavailable(f"Redis at {self.where} answered too slowly; try again in a moment")
        if number < 0:
            raise Unavailable(f"Redis at {self.where} lost the chat history; try again in a moment")
        if not self.take(number, data):
            # Messages posted just before, elsewhere, are still on their way
            # here: read them back now. If that fails, the post still stands
            # and the subscription brings them.
            try:
                await self.catch_up()
            except RedisError:
                pass
        return number

    async def read_clock(self) -> None:
        """Measure Redis's clock against ours: post deadlines are written in
        Redis's time, so that a post held up on the way is refused there."""
        before = time.time()
        seconds, microseconds = await self.redis.time()
        self.clock_offset = seconds + microseconds / 1e6 - (before + time.time()) / 2

    async def _store(self, data: str) -> int:
        deadline_ms = int((time.time() + self.clock_offset + POST_SECONDS) * 1000)
        args = [data, self.capacity, self.count, CHAT_CHANNEL, deadline_ms, self.epoch]
        return await self._post_script(keys=KEYS, args=args)

    def take(self, number: int, data: str) -> bool:
        """Mirror message ``number``: appended if it is the next one, skipped
        if already held. False when messages before it are missing."""
        if number > self.count:
            return False
        if number == self.count:
            self.append(data)
        return True

    async def receive(self, payload: str) -> None:
        """A message published by any process, this one included."""
        epoch, number, data = payload.split(" ", 2)
        if epoch != self.epoch or not self.take(int(number), data):
            await self.catch_up()  # some went by unheard, or a new history began

    async def catch_up(self) -> None:
        """Make the mirror hold what Redis holds: append what it missed, jump
        ahead if that has aged out of Redis too, follow a newer history, and
        refill a Redis that lost this one (or name a new one)."""
        args = [self.capacity, self.count, self.epoch or ""]
        epoch, next_number, first, events = await self._load(keys=KEYS, args=args)
        if not epoch or (epoch == self.epoch and next_number < self.count):
            await self.seed()
            return
        # Another catch-up may have appended meanwhile: look at the count again.
        if self.epoch is None:
            log.info("serving the chat's history in Redis at %s: epoch %s, messages %d to %d",
                     self.where, epoch, first, next_number - 1)
            self.restart_at(first, events, epoch=epoch)
        elif epoch != self.epoch:
            log.warning("the chat's history in Redis at %s is a new one (epoch %s): this one, %s, was lost",
                        self.where, epoch, self.epoch)
            self.restart_at(first, events, epoch=epoch)
        elif first > self.count:
            self.restart_at(first, events)
        else:
            for data in events[self.count - first:]:
                self.append(data)

    async def look_again(self) -> None:
        """A reader is ahead of this mirror: another process's mirror heard a
        message first and served it. Read Redis before telling the reader
        its id does not fit; if Redis does not answer, the mirror is all
        there is to go by."""
        try:
            await self.catch_up()
        except RedisError:
            pass

    async def seed(self) -> None:
        """Refill a Redis that lost the chat (restarted with nothing on disk)
        from this mirror, with its epoch, unless another process already did;
        then follow whatever Redis holds. A process that holds no history yet
        names a new one, the only place an epoch is made."""
        epoch = self.epoch or new_epoch()
        seeded = await self._seed(keys=KEYS, args=[epoch, self.count, *self.since(self.first)])
        if seeded and self.epoch is None:
            log.info("Redis at %s holds no chat history: a new one begins (epoch %s)", self.where, epoch)
            self.epoch = epoch
            await self.catch_up()  # messages kept without an epoch, if any
        elif seeded == 1:
            log.warning("Redis at %s had lost the chat; refilled it up to message %d", self.where, self.count - 1)
        elif not seeded:
            await self.catch_up()  # follow what Redis holds


class RedisTicker:
    """Moves the shared price where this process holds the lease, and
    mirrors it into ``prices`` in every process."""

    def __init__(self, client: redis.Redis, prices: StateStream, walk: RandomWalk, interval: float) -> None:
        self.prices = prices
        self.walk = walk
        self.interval = interval
        # Unique per process; host and pid say who holds the lease.
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.next_move = 0.0
        self.redis = client
        self._lease = client.register_script(LEASE)
        self._move = client.register_script(MOVE)
        self._release = client.register_script(RELEASE)

    def receive(self, payload: str) -> None:
        """A move published by the lease holder."""
        event_id, _, price = payload.partition(" ")
        self.mirror(int(event_id), price)

    def mirror(self, event_id: int, price: str) -> None:
        # Forward only: an answer read just before a newer move was heard
        # must not take it back.
        if event_id > self.prices.id:
            self.prices.publish(event_id, price)

    async def catch_up(self) -> None:
        event_id, price = await self.redis.hmget(TICKER_STATE, "id", "price")
        if event_id is not None:
            self.mirror(int(event_id), price)

    async def beat(self) -> None:
        """Renew or take the lease; the holder moves the price when it is due."""
        keys = [TICKER_LEASE, TICKER_STATE]
        lease_ms = int(LEASE_SECONDS * 1000)
        mine = [self.token, lease_ms, self.prices.id, self.prices.data]
        held, event_id, price = await self._lease(keys=keys, args=mine)
        if event_id is None:
            return
        self.mirror(int(event_id), price)
        now = asyncio.get_running_loop().time()
        if not held or now < self.next_move:
            return
        self.walk.price = float(price)  # on from the shared price, whoever set it
        moved = await self._move(keys=keys, args=[self.token, self.walk.step(), TICKER_CHANNEL])
        if moved is not None:
            self.mirror(moved, self.walk.formatted())
        self.next_move = now + self.interval

    async def release(self) -> None:
        """Give the lease up at shutdown, so another process moves at once."""
        await self._release(keys=[TICKER_LEASE], args=[self.token])


class RedisEngine:
    """Connects the mirrors to Redis and keeps them in step: one subscription
    for both channels, the ticker's beat, and retries while Redis is away.

    The same interface as ``comet.engine.MemoryEngine``: ``history`` and
    ``prices`` are what ``make_app`` hands to the handlers, and ``start()``
    and ``stop()`` are called by ``main()``.
    """

    def __init__(self, url: str, capacity: int, walk: RandomWalk, tick_interval: float) -> None:
        parts = urlsplit(url)
        self.where = parts.netloc.rpartition("@")[2] or parts.path  # no password in messages
        # No silent resend: a post whose answer was lost must not be stored
        # twice. Each loop below retries on its own schedule instead.
        self.redis = redis.from_url(
            url, decode_responses=True, socket_connect_timeout=ANSWER_SECONDS, socket_timeout=ANSWER_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
        self.history = RedisHistory(self.redis, capacity, self.where)
        self.prices = StateStream(walk.formatted())
        self.ticker = RedisTicker(self.redis, self.prices, walk, tick_interval)
        self.reachable = True
        self.stopping = False
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        """Subscribe and catch up, then keep going in the background.

        Returns only once the mirror holds what Redis holds, however long
        Redis takes to answer: the process does not listen until then, so
        no client is ever served an empty history under a made-up epoch. A
        Redis that is down at start is retried, not fatal: it is a service
        of its own, often started alongside (or after) the app, and a
        process that waits becomes ready the moment it answers, where one
        that exits needs a supervisor to start it again."""
        synced = asyncio.Event()
        self._tasks = [asyncio.create_task(self._follow(synced)), asyncio.create_task(self._beat())]
        try:
            await asyncio.wait_for(synced.wait(), START_SECONDS)
        except asyncio.TimeoutError:
            log.warning("Redis at %s has not answered for %.0f s; not listening until it does", self.where,
                        START_SECONDS)
            await synced.wait()

    async def stop(self) -> None:
        # The flag too, not only cancel(): redis-py may turn a cancellation
        # that meets one of its timeouts into an error, which a loop survives.
        self.stopping = True
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=ANSWER_SECONDS)
        try:
            await asyncio.wait_for(self.ticker.release(), 1.0)
        except (RedisError, OSError, asyncio.TimeoutError):
            pass  # the lease runs out by itself
        await self.redis.aclose()

    async def _follow(self, synced: asyncio.Event) -> None:
        """Subscribe to both channels, catch up, then apply each message as
        it comes; after any failure, start over."""
        while not self.stopping:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHAT_CHANNEL, TICKER_CHANNEL)
                # Subscribed first, read second: nothing published in between
                # is missed, and what arrives twice is skipped by its number.
                await self.history.catch_up()
                await self.ticker.catch_up()
                self._regained()
                synced.set()
                await self._listen(pubsub)
            except (RedisError, OSError) as error:
                self._lost(error)
            except Exception:
                log.exception("the Redis subscription failed; starting over")
            finally:
                await pubsub.aclose()
            await asyncio.sleep(RETRY_SECONDS)

    async def _listen(self, pubsub) -> None:
        loop = asyncio.get_running_loop()
        heard = loop.time()
        while not self.stopping:
            message = await pubsub.get_message(timeout=PING_SECONDS)
            now = loop.time()
            if message is not None:
                heard = now
                if message["channel"] == CHAT_CHANNEL:
                    await self.history.receive(message["data"])
                elif message["channel"] == TICKER_CHANNEL:
                    self.ticker.receive(message["data"])
            elif now - heard > SILENT_SECONDS:
                raise ConnectionError(f"no answer for {SILENT_SECONDS:.0f} s")
            elif now - heard > PING_SECONDS:
                await pubsub.ping()  # its pong counts as heard

    async def _beat(self) -> None:
        """The ticker's lease and moves, at least once a second; and the
        offset of Redis's clock, which post deadlines are written in."""
        while not self.stopping:
            try:
                await self.history.read_clock()
                await self.ticker.beat()
            except (RedisError, OSError) as error:
                self._lost(error)
            except Exception:
                log.exception("the ticker's beat failed")
            await asyncio.sleep(min(self.ticker.interval, BEAT_SECONDS))

    def _lost(self, error: Exception) -> None:
        if self.reachable:
            log.warning("Redis at %s is unreachable (%s); retrying", self.where, error)
        self.reachable = False

    def _regained(self) -> None:
        if not self.reachable:
            log.warning("Redis at %s is back", self.where)
        self.reachable = True
