"""The page helper's recovery, run in Chromium with its clock, its random
source and its probe injected: the backoff schedule (full jitter, doubling
to a cap, Retry-After on top, reset once a connection delivered) and the
watchdog (buffered, silent, buffered twice switches to the fallback unless
pinned).

``keepOpen()`` from static/js/page.js runs here against fake attempts: each
records the id it was opened with and hands the test its ``report``, so the
test plays what a transport would do (open, deliver, fail), fires the fake
clock's timers one by one, reading the delay each was set for, and answers
the probe ("does the server answer a plain request?") as it likes.
"""

from __future__ import annotations

import pytest


KEEPALIVE = 15  # seconds: the watchdog waits 5 s for a first heartbeat, 37.5 s for the next
BUFFERED_MS, SILENT_MS = 5000, 37500

HARNESS = """
// A clock that only moves when the test fires a timer.
const clock = {
  time: 0, timers: new Map(), last: 0,
  now() { return this.time; },
  setTimeout(callback, ms) { this.timers.set(++this.last, { at: this.time + ms, ms, callback }); return this.last; },
  clearTimeout(id) { this.timers.delete(id); },
};
const h = window.__h = { clock, attempts: [], emits: [], probes: [] };
const values = arguments[0].slice();
const attempt = (transport) => (lastEventId, report) => {
  const entry = { transport, lastEventId, report, closed: false };
  h.attempts.push(entry);
  return () => { entry.closed = true; };
};
const emit = {};
for (const kind of ['event', 'status', 'transport', 'notice']) {
  emit[kind] = (value) => h.emits.push([kind, kind === 'event' ? value.data : value]);
}
sessionStorage.clear();
const open = keepOpen({
  attempts: { eventsource: attempt('eventsource'), longpoll: attempt('longpoll') },
  transport: 'eventsource', pinned: arguments[1], stream: '/numbers', keepalive: arguments[2],
  clock, random: () => values.length > 1 ? values.shift() : values[0],
  probe: () => new Promise((resolve) => h.probes.push(resolve)),
});
h.close = open(arguments[3], emit);
"""

# The pending timers' delays, soonest first.
PENDING = "return [...window.__h.clock.timers.values()].map((t) => t.ms).sort((a, b) => a - b);"

# Fire the soonest timer; returns the delay it was set for.
FIRE = """
const { clock } = window.__h;
const [id, timer] = [...clock.timers.entries()].sort((a, b) => a[1].at - b[1].at)[0];
clock.timers.delete(id);
clock.time = timer.at;
timer.callback();
return timer.ms;
"""

# The attempts so far: (transport, lastEventId, closed).
ATTEMPTS = "return window.__h.attempts.map((a) => [a.transport, a.lastEventId, a.closed]);"


@pytest.fixture
def page(driver, scripted):
    driver.get(scripted.url)
    yield driver


class Factory:
    """keepOpen()'s connection factory, opened in the page with fake attempts."""

    def __init__(self, driver, random=(0.5,), pinned=False, keepalive=KEEPALIVE, last_event_id=""):
        self.driver = driver
        driver.execute_script(HARNESS, list(random), pinned, keepalive, last_event_id)
        self.seen = 0

    def report(self, call: str, *args) -> None:
        """Play ``report.call(*args)`` on the latest attempt."""
        self.driver.execute_script(
            "const [call, args] = arguments; window.__h.attempts.at(-1).report[call](...args);", call, list(args)
        )

    def fire(self) -> float:
        return self.driver.execute_script(FIRE)

    def probes(self) -> int:
        """How many probes wait for an answer."""
        return self.driver.execute_script("return window.__h.probes.length;")

    def answer(self, answered: bool) -> None:
        """Answer the oldest probe: the server answered a plain request, or not."""
        self.driver.execute_script("window.__h.probes.shift()(arguments[0]);", answered)

    def pending(self) -> list[float]:
        return self.driver.execute_script(PENDING)

    def attempts(self) -> list[list]:
        return self.driver.execute_script(ATTEMPTS)

    def emitted(self) -> list[list]:
        """What the factory emitted since the last call."""
        emits = self.driver.execute_script("return window.__h.emits;")
        new, self.seen = emits[self.seen:], len(emits)
        return new

    def close(self) -> None:
        self.driver.execute_script("window.__h.close();")


# --- Backoff by itself -------------------------------------------------------

SCHEDULE = """
const [values, retryAfters] = arguments;
const backoff = new Backoff({ random: () => values.shift() });
return retryAfters.map((retryAfter) => retryAfter === 'reset' ? (backoff.reset(), null) : backoff.next(retryAfter));
"""

# mulberry32, a seeded random source small enough to write twice.
SEEDED = """
function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6D2B79F5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const [seed, count] = arguments;
const backoff = new Backoff({ random: mulberry32(seed) });
const again = mulberry32(seed);
return Array.from({ length: count }, () => [backoff.next(), again()]);
"""


def test_the_window_doubles_from_one_second_to_thirty(page):
    # With the random source at its middle, each wait is half its window.
    waits = page.execute_script(SCHEDULE, [0.5] * 8, [0] * 8)

    assert waits == [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]


def test_full_jitter_draws_from_zero_to_the_window(page):
    # The random source's extremes reach both ends of each window.
    assert page.execute_script(SCHEDULE, [0, 0.999999, 0, 0.999999], [0] * 4) == pytest.approx(
        [0, 2000, 0, 8000], abs=0.1
    )


def test_a_seeded_schedule_is_the_random_source_times_the_window(page):
    for seed in (1, 42, 2024):
        drawn = page.execute_script(SEEDED, seed, 10)
        windows = [min(30000, 1000 * 2**n) for n in range(10)]
        assert [wait for wait, _ in drawn] == pytest.approx([r * w for (_, r), w in zip(drawn, windows)])
        # Spread out: not two clients of a storm at the same moment.
        assert len({round(wait) for wait, _ in drawn}) == 10


def test_reset_starts_again_from_the_first_window(page):
    waits = page.execute_script(SCHEDULE, [0.5] * 5, [0, 0, 0, "reset", 0])

    assert waits == [500, 1000, 2000, None, 500]


def test_retry_after_is_waited_out_and_the_jitter_comes_on_top(page):
    waits = page.execute_script(SCHEDULE, [0.5, 0.5], [5000, 5000])

    assert waits == [5500, 6000]


@pytest.mark.parametrize(
    "header, expected",
    [
        (None, 0), ("5", 5000), (" 120 ", 120000), ("-3", 0), ("soon", 0), ("1.5", 0),
        ("86400", 300000),  # cut to five minutes
        ("Thu, 01 Jan 1970 00:00:10 GMT", 4000),  # an HTTP date, 4 s after `now` below
        ("Thu, 01 Jan 1970 00:00:01 GMT", 0),  # already past
    ],
)
def test_retry_after_header(page, header, expected):
    assert page.execute_script("return retryAfterMs(arguments[0], 6000);", header) == expected


# --- keepOpen: recovery ---------------------------------------------------------


def test_a_failed_transport_is_opened_again_after_the_backoff_by_its_id(page):
    factory = Factory(page)
    assert factory.attempts() == [["eventsource", "", False]]
    assert factory.emitted() == [["transport", "eventsource"], ["status", "connecting"]]

    factory.report("opened")
    factory.report("delivered", {"type": "message", "data": "a", "lastEventId": "E:1"})
    assert factory.emitted() == [["status", "connected"], ["event", "a"]]

    factory.report("failed", None)  # a 502 from a proxy, say
    assert factory.emitted() == [["status", "connecting"]]
    assert factory.attempts() == [["eventsource", "", True]]
    assert factory.pending() == [500]  # the first window, 1 s, times 0.5

    assert factory.fire() == 500
    assert factory.attempts()[-1] == ["eventsource", "E:1", False]
    assert factory.emitted() == [["status", "connecting"]]

    # Failing again, without having delivered: the window doubles, on top
    # of a Retry-After.
    factory.report("failed", "3")
    assert factory.pending() == [3000 + 1000]
    factory.fire()
    factory.report("failed", None)
    assert factory.pending() == [2000]
    factory.fire()

    # Delivering resets the schedule.
    factory.report("opened")
    factory.report("delivered", None)  # a heartbeat
    factory.report("failed", None)
    assert factory.pending() == [500]
    factory.fire()
    assert [a[1] for a in factory.attempts()] == ["", "E:1", "E:1", "E:1", "E:1"]
    assert "closed" not in [value for _, value in factory.emitted()]


def test_the_backoff_caps_at_thirty_seconds(page):
    factory = Factory(page, random=(0.999999,))
    waits = []
    for _ in range(8):
        factory.report("failed", None)
        waits.append(round(factory.fire()))
    assert waits == [1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]


def test_a_new_leader_resumes_by_the_id_it_is_given(page):
    factory = Factory(page, last_event_id="E:41")

    assert factory.attempts() == [["eventsource", "E:41", False]]


def test_a_transport_retrying_by_itself_shows_connecting_and_keeps_its_backoff(page):
    factory = Factory(page)
    factory.report("opened")
    factory.report("delivered", None)
    factory.emitted()

    factory.report("retrying")  # a native EventSource after a network error

    assert factory.emitted() == [["status", "connecting"]]
    assert len(factory.attempts()) == 1  # it reconnects itself: no second source
    factory.report("opened")
    factory.report("delivered", None)
    assert factory.emitted() == [["status", "connected"]]


def test_close_stops_everything(page):
    factory = Factory(page)
    factory.report("failed", None)
    assert factory.pending() == [500]

    factory.close()

    assert factory.pending() == []
    assert factory.attempts() == [["eventsource", "", True]]


# --- keepOpen: the watchdog -------------------------------------------------------


def found_buffered(factory: Factory, opened: bool = True) -> None:
    """The latest attempt opens (or not), shows nothing in time, and the
    probe finds the server answering."""
    if opened:
        factory.report("opened")
    assert factory.pending() == [BUFFERED_MS]
    assert factory.fire() == BUFFERED_MS
    assert factory.probes() == 1
    factory.answer(True)


def test_a_stream_that_opens_but_delivers_nothing_is_reopened(page):
    factory = Factory(page)

    found_buffered(factory)

    assert factory.attempts() == [["eventsource", "", True]]
    assert factory.pending() == [500]  # a reconnection waits its turn in the backoff
    factory.fire()
    assert factory.attempts()[-1] == ["eventsource", "", False]
    assert ["status", "connected"] not in factory.emitted()


def test_a_stream_found_buffered_twice_switches_to_long_polling_for_the_session(page):
    factory = Factory(page)
    factory.report("delivered", {"type": "message", "data": "a", "lastEventId": "E:1"})
    factory.report("failed", None)  # (now it has an id to resume by)
    factory.fire()
    factory.emitted()

    found_buffered(factory, opened=False)  # a proxy that holds back the headers too
    factory.fire()
    found_buffered(factory)

    assert factory.attempts()[-1] == ["longpoll", "E:1", False]
    [transport, notice, status] = factory.emitted()[-3:]
    assert transport == ["transport", "longpoll"]
    assert notice[0] == "notice" and "long polling" in notice[1]
    assert status == ["status", "connecting"]
    assert page.execute_script("return sessionStorage.getItem('comet.fallback:/numbers');") == "longpoll"
    # The long-poll transport is not watched: an answered poll is enough.
    factory.report("delivered", None)
    assert factory.pending() == []
    assert factory.emitted() == [["status", "connected"]]

    # The next factory of this tab (a reload, or this tab taking over as
    # leader) starts on the fallback and says why; sessionStorage ends with
    # the tab, so a later visit tries EventSource again.
    page.execute_script("window.__h.close();")
    again = page.execute_script(
        "const emits = []; const emit = {};"
        "for (const kind of ['event', 'status', 'transport', 'notice']) emit[kind] = (v) => emits.push([kind, v]);"
        "const attempts = []; const attempt = (t) => (id) => { attempts.push([t, id]); return () => {}; };"
        "keepOpen({ attempts: { eventsource: attempt('eventsource'), longpoll: attempt('longpoll') },"
        "  transport: 'eventsource', pinned: false, stream: '/numbers', keepalive: 15 })('E:9', emit)();"
        "return [attempts, emits.map((e) => e[0])];"
    )
    assert again == [[["longpoll", "E:9"]], ["notice", "transport", "status"]]


def test_a_server_that_does_not_answer_is_not_a_buffering_proxy(page):
    # A paused or unreachable server: the stream shows nothing, and nor
    # does a plain request. The page keeps trying EventSource, backing off.
    factory = Factory(page)
    waits = []
    for _ in range(4):
        factory.report("opened")
        factory.fire()
        factory.answer(False)
        waits.append(factory.fire())

    assert waits == [500, 1000, 2000, 4000]
    assert {a[0] for a in factory.attempts()} == {"eventsource"}


def test_buffered_once_then_live_does_not_count_towards_the_switch(page):
    factory = Factory(page)
    found_buffered(factory)
    factory.fire()  # backoff
    factory.report("opened")
    factory.report("delivered", None)  # live after all
    factory.report("failed", None)
    factory.fire()
    found_buffered(factory)  # buffered again, but not twice in a row
    factory.fire()

    assert {a[0] for a in factory.attempts()} == {"eventsource"}


def test_a_pinned_stream_found_buffered_keeps_trying_event_source(page):
    factory = Factory(page, pinned=True)
    waits = []
    for _ in range(4):
        found_buffered(factory)
        waits.append(factory.fire())

    assert {a[0] for a in factory.attempts()} == {"eventsource"}
    assert waits == [500, 1000, 2000, 4000]  # buffered counts as a failure in the backoff
    assert ["status", "connected"] not in factory.emitted()
    assert not any(kind == "transport" and value == "longpoll" for kind, value in factory.emitted())


def test_closing_while_probing_ends_it_all(page):
    factory = Factory(page)
    factory.report("opened")
    factory.fire()

    factory.close()
    factory.answer(True)

    assert factory.pending() == []
    assert len(factory.attempts()) == 1


def test_a_stream_silent_for_two_and_a_half_keepalive_periods_is_reopened_by_its_id(page):
    factory = Factory(page)
    factory.report("opened")
    factory.report("delivered", None)
    factory.report("delivered", {"type": "message", "data": "a", "lastEventId": "E:5"})
    assert factory.pending() == [SILENT_MS]  # each delivery starts it again
    factory.emitted()

    assert factory.fire() == SILENT_MS
    assert factory.emitted() == [["status", "connecting"]]
    assert factory.probes() == 0  # it was live: silence is not buffering
    factory.fire()

    assert factory.attempts() == [["eventsource", "", True], ["eventsource", "E:5", False]]


@pytest.mark.parametrize("keepalive, buffered, silent", [(15, 5000, 37500), (2, 2000, 5000), (1, 2000, 2500), (60, 5000, 150000)])
def test_the_timeouts_follow_the_keepalive(page, keepalive, buffered, silent):
    assert page.execute_script("return watchdogTimes(arguments[0]);", keepalive) == {
        "bufferedMs": buffered, "silentMs": silent,
    }
