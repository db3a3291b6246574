"""``LongPollEventSource`` in Chromium, against scripted answers.

The page's long-poll client must parse each body by the WHATWG event-stream
rules and reconnect the way a native EventSource does. The real server only
ever sends well-formed streams, so these tests talk to ``ScriptedServer``,
which answers each poll with the next body or status a test lined up and
records the headers of every request.

Each poll the client makes after its script is used up is held open: when
the server has seen ``len(answers) + 1`` requests, every event of the last
answer has been dispatched, and the client asked again at once.
"""

from __future__ import annotations

import re

import pytest
from selenium.common.exceptions import TimeoutException

from tests.e2e.browser import wait_until
from tests.e2e.scripted import NETWORK_ERROR, Answer, ScriptedServer, events

CONNECTING, OPEN, CLOSED = 0, 1, 2


@pytest.fixture
def page(driver, scripted):
    """The harness page, with no source open before or after the test."""
    if driver.current_url != scripted.url:
        driver.get(scripted.url)
    scripted.errors.clear()
    yield driver
    driver.execute_script("if (window.__source) window.__source.close();")
    assert not scripted.errors, "the scripted server failed"


@pytest.fixture
def name(request) -> str:
    """This test's own /script/NAME."""
    return re.sub(r"[^\w-]", "-", request.node.name)


def watch(driver, url: str, *types: str) -> None:
    driver.execute_script("watch(arguments[0], arguments[1]);", url, list(types))


def recorded(driver) -> list[tuple]:
    """(type, data, lastEventId, readyState) of every event so far."""
    return [
        (event["type"], event["data"], event["lastEventId"], event["readyState"])
        for event in driver.execute_script("return window.__events;")
    ]


def message(data: str, last_event_id: str = "", type: str = "message") -> tuple:
    return (type, data, last_event_id, OPEN)


OPENED = ("open", None, None, OPEN)
RETRYING = ("error", None, None, CONNECTING)
FAILED = ("error", None, None, CLOSED)


def wait_for_requests(scripted: ScriptedServer, name: str, count: int) -> list:
    wait_until(
        lambda _: len(scripted.requests[name]) >= count,
        f"the client did not make {count} requests to /script/{name}",
    )
    requests = scripted.requests[name]
    for request in requests:
        assert request.headers.get("X-Event-Source-Simulate", "").lower() == "long-polling"
    return requests


def run(driver, scripted: ScriptedServer, name: str, *answers: Answer, types=()) -> list[tuple]:
    """Play ``answers`` to a new source; its events once it holds a poll
    again. Every answer must be a 200 batch or a network error."""
    watch(driver, scripted.script(name, *answers), *types)
    wait_for_requests(scripted, name, len(answers) + 1)
    return recorded(driver)


def run_until_failed(driver, scripted: ScriptedServer, name: str, *answers: Answer) -> list[tuple]:
    """Play ``answers``, the last of which must close the source; its events
    once it has, after making sure it asks for nothing more."""
    watch(driver, scripted.script(name, *answers))
    wait_until(lambda d: FAILED in recorded(d), "the source was not closed", driver=driver)
    assert driver.execute_script("return window.__source.readyState;") == CLOSED
    assert len(scripted.requests[name]) == len(answers)
    # The first answer said `retry: 50`: a client that wrongly reconnected
    # would be back well within half a second.
    with pytest.raises(TimeoutException):
        wait_until(lambda _: len(scripted.requests[name]) > len(answers), "", timeout=0.5)
    return recorded(driver)


LINE_ENDS = {
    "LF": ("data: one\ndata: two\n\nid: 3\ndata: three\n\n", ["one\ntwo", "three"]),
    "CR": ("data: one\rdata: two\r\rid: 3\rdata: three\r\r", ["one\ntwo", "three"]),
    "CRLF": ("data: one\r\ndata: two\r\n\r\nid: 3\r\ndata: three\r\n\r\n", ["one\ntwo", "three"]),
    "mixed": ("data: one\rdata: two\r\n\nid: 3\r\ndata: three\n\r\n", ["one\ntwo", "three"]),
}


@pytest.mark.parametrize("line_ends", list(LINE_ENDS))
def test_line_ends(page, scripted, name, line_ends):
    body, (first, second) = LINE_ENDS[line_ends]

    assert run(page, scripted, name, events(body)) == [OPENED, message(first), message(second, "3")]


def test_one_leading_bom_is_skipped(page, scripted, name):
    # A BOM starts each body; one later in a body makes its line a field
    # named "\ufeffdata", which is ignored.
    answers = events("\ufeffdata: one\n\n\ufeffdata: two\n\ndata: three\n\n"), events("\ufeffdata: four\n\n")

    assert run(page, scripted, name, *answers) == [OPENED, message("one"), message("three"), message("four")]


def test_comments_and_unknown_fields_are_ignored(page, scripted, name):
    answers = (
        events(": hello\n:\ndata: a\n: between\nData: no\ndata : no\nfoo: bar\ndata: b\n\n"),
        # The real server's empty batch: nothing to dispatch, ask again.
        events("retry: 2000\n\n: keep-alive\n\n"),
        events("data: c\n\n"),
    )

    assert run(page, scripted, name, *answers) == [OPENED, message("a\nb"), message("c")]


def test_multi_line_data(page, scripted, name):
    body = "data: one\ndata:two\ndata:  three\ndata\ndata:\ndata: end\n\ndata\n\n"

    # One leading space is dropped; `data` and `data:` add empty lines; the
    # last trailing LF goes; a lone `data` is an event with empty data.
    assert run(page, scripted, name, events(body)) == [OPENED, message("one\ntwo\n three\n\n\nend"), message("")]


def test_id_persists_and_is_sent_as_last_event_id(page, scripted, name):
    answers = (
        events("id: 7\ndata: a\n\ndata: b\n\n"),
        events("data: c\n\n"),
        events("id: 9\n\n"),  # no data: no event, but the id is taken
        events("id: 1\u00002\ndata: d\n\n"),  # an id with NUL is ignored
    )

    assert run(page, scripted, name, *answers) == [
        OPENED, message("a", "7"), message("b", "7"), message("c", "7"), message("d", "9"),
    ]
    assert [request.last_event_id for request in scripted.requests[name]] == [None, "7", "7", "9", "9"]


def test_empty_id_sends_no_last_event_id(page, scripted, name):
    answers = (
        events("id: 5\ndata: a\n\n"),
        events("id:\ndata: b\n\n"),
        events("id: 6\ndata: c\n\n"),
        events("id\ndata: d\n\n"),
    )

    assert run(page, scripted, name, *answers) == [
        OPENED, message("a", "5"), message("b", ""), message("c", "6"), message("d", ""),
    ]
    # None: no Last-Event-ID header at all, not an empty one.
    assert [request.last_event_id for request in scripted.requests[name]] == [None, "5", None, "6", None]


def test_retry_sets_the_reconnection_delay(page, scripted, name):
    # Only ASCII digits count: the two later retry lines are ignored.
    answers = events("retry: 800\nretry: 1x\nretry:  300\n\n"), NETWORK_ERROR, events("data: back\n\n")

    assert run(page, scripted, name, *answers) == [OPENED, RETRYING, OPENED, message("back")]
    failed, retried = scripted.requests[name][1:3]
    # 800 ms, not the default 2000 ms nor the ignored 300 ms.
    assert 0.75 <= retried.time - failed.time < 1.8


def test_network_error_is_retried(page, scripted, name):
    answers = events("retry: 100\ndata: a\n\n"), NETWORK_ERROR, events("id: 2\ndata: b\n\n")

    assert run(page, scripted, name, *answers) == [OPENED, message("a"), RETRYING, OPENED, message("b", "2")]
    assert page.execute_script("return window.__source.readyState;") == OPEN


def test_named_events(page, scripted, name):
    body = "event: price\ndata: 1.00\n\nevent: reset\nid: 4\ndata: 0\n\nevent: ghost\n\ndata: plain\n\n"
    page.execute_script(
        "watch(arguments[0], ['price', 'reset', 'ghost']);"
        "window.__onmessage = [];"
        "window.__source.onmessage = (event) => window.__onmessage.push(event.data);",
        scripted.script(name, events(body)),
    )
    wait_for_requests(scripted, name, 2)

    # `ghost` has no data, so it is not dispatched, and its type does not
    # stick to the next event.
    assert recorded(page) == [
        OPENED, message("1.00", type="price"), message("0", "4", type="reset"), message("plain", "4"),
    ]
    assert page.execute_script("return window.__onmessage;") == ["plain"]


def test_unfinished_last_event_is_dropped(page, scripted, name):
    answers = (
        events("id: 1\ndata: done\n\nid: 5\ndata: unfinished\n"),
        events("data: partial"),
        events("data: next\n\n"),
    )

    # Neither unfinished event is dispatched, nor leaks into the next body,
    # and the id of one never dispatched is not sent back.
    assert run(page, scripted, name, *answers) == [OPENED, message("done", "1"), message("next", "1")]
    assert [request.last_event_id for request in scripted.requests[name]] == [None, "1", "1", "1"]


def test_204_on_the_first_request_closes_without_opening(page, scripted, name):
    assert run_until_failed(page, scripted, name, Answer(status=204, content_type=None)) == [FAILED]


@pytest.mark.parametrize("status", [204, 404, 500, 503])
def test_a_status_other_than_200_closes(page, scripted, name, status):
    closing = Answer(status=status, content_type=None) if status == 204 else events("data: b\n\n", status=status)

    assert run_until_failed(page, scripted, name, events("retry: 50\ndata: a\n\n"), closing) == [
        OPENED, message("a"), FAILED,
    ]


@pytest.mark.parametrize("content_type", ["text/plain; charset=utf-8", "application/json", "text/html"])
def test_a_wrong_content_type_closes(page, scripted, name, content_type):
    wrong = events("data: b\n\n", content_type=content_type)

    assert run_until_failed(page, scripted, name, events("retry: 50\ndata: a\n\n"), wrong) == [
        OPENED, message("a"), FAILED,
    ]


def test_content_type_parameters_and_case_are_fine(page, scripted, name):
    answers = events("data: a\n\n", content_type="Text/Event-Stream;charset=UTF-8"), events("data: b\n\n")

    assert run(page, scripted, name, *answers) == [OPENED, message("a"), message("b")]


INTERFACE = """
const source = new LongPollEventSource(arguments[0]);
const seen = window.__seen = [];
const listener = (event) => seen.push('listener ' + event.data);
source.onopen = () => seen.push('onopen');
source.onmessage = (event) => seen.push('onmessage ' + event.data);
source.onerror = () => seen.push('onerror');
source.addEventListener('message', listener);
source.addEventListener('message', () => source.removeEventListener('message', listener));
window.__source = source;
return {
  url: source.url,
  readyState: source.readyState,
  constants: [source.CONNECTING, source.OPEN, source.CLOSED],
  classConstants: [LongPollEventSource.CONNECTING, LongPollEventSource.OPEN, LongPollEventSource.CLOSED],
};
"""


def test_eventsource_interface(page, scripted, name):
    scripted.script(name, events("data: a\n\ndata: b\n\n"))

    created = page.execute_script(INTERFACE, f"/script/{name}")

    assert created == {
        "url": f"{scripted.url}script/{name}",
        "readyState": CONNECTING,
        "constants": [CONNECTING, OPEN, CLOSED],
        "classConstants": [CONNECTING, OPEN, CLOSED],
    }
    wait_for_requests(scripted, name, 2)
    assert page.execute_script("return window.__source.readyState;") == OPEN
    # The listener removed after `a` does not hear `b`.
    assert page.execute_script("return window.__seen;") == ["onopen", "onmessage a", "listener a", "onmessage b"]

    page.execute_script("window.__source.close();")

    assert page.execute_script("return window.__source.readyState;") == CLOSED
    wait_until(lambda _: scripted.abandoned[name] == 1, "close() did not end the poll in flight")
    assert page.execute_script("return window.__seen;")[-1] == "onmessage b"  # no error after close()
    assert len(scripted.requests[name]) == 2


def test_open_event_source_picks_the_transport(page, scripted, name):
    url = scripted.script(name)

    kinds = page.execute_script(
        """
        const longpoll = openEventSource(arguments[0], { transport: 'longpoll' });
        const native = openEventSource(arguments[0], { transport: 'eventsource' });
        const kinds = [longpoll instanceof LongPollEventSource, native instanceof EventSource];
        longpoll.close();
        native.close();
        return kinds;
        """,
        url,
    )

    assert kinds == [True, True]
