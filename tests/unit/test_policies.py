"""The two event-source policies and the frame encoder, without a server.

These are the rules every stream and poll is built on: the bytes of a frame,
which ids count, and what a reader holding a given id is owed.
"""

import pytest

from comet.policies import BoundedEventQueue, Changes, StateStream, encode_event, parse_event_id


EPOCH = "E"  # the epoch of every queue here (tests/unit/test_epoch.py has the epoch rules)


def at(number: int) -> tuple[str, int]:
    """A reader's cursor in a queue of EPOCH."""
    return (EPOCH, number)


def frame(number: int, message: str) -> bytes:
    """How message ``number`` of the chat goes out: with the next cursor as id."""
    return f"id: {EPOCH}:{number + 1}\ndata: {message}\n\n".encode("utf-8")


def reset(first: int) -> bytes:
    return f"event: reset\nid: {EPOCH}:{first}\ndata: {first}\n\n".encode("utf-8")


def queue_of(capacity: int, messages: int) -> BoundedEventQueue:
    """A queue after ``messages`` appends of m0, m1, …"""
    queue = BoundedEventQueue(capacity, epoch=EPOCH)
    for number in range(messages):
        queue.append(f"m{number}")
    return queue


# encode_event ---------------------------------------------------------------


def test_encode_data_only():
    assert encode_event("hello") == b"data: hello\n\n"


def test_encode_id_then_data():
    assert encode_event("101.25", event_id=7) == b"id: 7\ndata: 101.25\n\n"


def test_encode_event_then_id_then_data():
    assert encode_event("3", event_id=3, event="reset") == b"event: reset\nid: 3\ndata: 3\n\n"


def test_encode_is_utf8():
    assert encode_event("h\u00e9 \u2603", event_id=1) == "id: 1\ndata: h\u00e9 \u2603\n\n".encode("utf-8")


@pytest.mark.parametrize("line_break", ["\n", "\r", "\r\n"])
def test_encode_line_breaks_become_data_lines(line_break):
    data = line_break.join(["one", "two", "three"])
    assert encode_event(data, event_id=1) == b"id: 1\ndata: one\ndata: two\ndata: three\n\n"


def test_encode_crlf_is_one_line_break_not_two():
    assert encode_event("a\r\nb") == b"data: a\ndata: b\n\n"


def test_encode_mixed_and_trailing_line_breaks_keep_empty_lines():
    # The browser joins data lines with LF: "a\n\nb\n" comes back exactly.
    assert encode_event("a\r\n\rb\n") == b"data: a\ndata: \ndata: b\ndata: \n\n"


def test_encode_empty_data_is_one_empty_data_line():
    assert encode_event("") == b"data: \n\n"


@pytest.mark.parametrize("bad", ["1\ndata: injected", "1\r", "E:1\x00"])
def test_encode_refuses_an_id_with_a_line_break_or_nul(bad):
    # Ids never hold CR, LF or NUL: such an id would end the field early.
    with pytest.raises(ValueError):
        encode_event("x", event_id=bad)


def test_encode_an_epoch_qualified_id():
    assert encode_event("hi", event_id="E1:3") == b"id: E1:3\ndata: hi\n\n"


# parse_event_id -------------------------------------------------------------


@pytest.mark.parametrize("value, expected", [("0", 0), ("1", 1), ("42", 42), ("007", 7)])
def test_parse_decimal_digits(value, expected):
    assert parse_event_id(value) == expected


def test_parse_leading_zeros_of_a_long_id():
    assert parse_event_id("0" * 40 + "12") == 12


@pytest.mark.parametrize("digits", [20, 40, 5000], ids=["20-digits", "40-digits", "5000-digits"])
def test_parse_huge_value_is_a_number_past_any_history(digits):
    # Python's int() refuses more than 4300 digits; a huge id is still a
    # number (so a reader gets a reset), just one no history reaches.
    value = parse_event_id("9" * digits)
    assert isinstance(value, int) and value >= 2**63 - 1
    assert queue_of(3, 5).resume("9" * digits) == (reset(2), at(2))


@pytest.mark.parametrize(
    "value",
    [None, "", "-1", "+1", "1.5", " 3", "3 ", "0x10", "1e3", "1_000", "\u0661\u0662", "\u00b2", "\uff13", "abc"],
    ids=["none", "empty", "negative", "plus", "decimal-point", "leading-space", "trailing-space", "hex",
         "exponent", "underscore", "arabic-indic-digits", "superscript", "fullwidth", "letters"],
)
def test_parse_anything_else_is_absent(value):
    assert parse_event_id(value) is None


# BoundedEventQueue ------------------------------------------------------------


def test_queue_refuses_zero_capacity():
    with pytest.raises(ValueError):
        BoundedEventQueue(0)


def test_queue_numbers_from_zero_without_gaps():
    queue = BoundedEventQueue(10)
    assert [queue.append(f"m{n}") for n in range(3)] == [0, 1, 2]
    assert (queue.first, queue.count) == (0, 3)


def test_queue_drops_the_oldest_past_capacity():
    queue = queue_of(3, 5)
    assert (queue.first, queue.count) == (2, 5)
    assert [queue[n] for n in range(2, 5)] == ["m2", "m3", "m4"]


@pytest.mark.parametrize("number", [0, 1, 5, 6, -1])
def test_queue_index_outside_first_to_count_raises(number):
    queue = queue_of(3, 5)
    with pytest.raises(IndexError):
        queue[number]


def test_queue_since_returns_every_kept_message_from_number():
    queue = queue_of(3, 5)
    assert queue.since(2) == ["m2", "m3", "m4"]
    assert queue.since(4) == ["m4"]
    assert queue.since(5) == []


def test_queue_resume_without_id_starts_at_first():
    assert queue_of(3, 5).resume(None) == (b"", at(2))


@pytest.mark.parametrize("last_event_id", [2, 3, 5])
def test_queue_resume_in_range_starts_at_id(last_event_id):
    assert queue_of(3, 5).resume(str(last_event_id)) == (b"", at(last_event_id))


@pytest.mark.parametrize("last_event_id", [0, 1, 6, 10**30], ids=["aged-0", "aged-1", "past-count", "restart-huge"])
def test_queue_resume_out_of_range_sends_reset_then_starts_at_first(last_event_id):
    assert queue_of(3, 5).resume(str(last_event_id)) == (b"event: reset\nid: E:2\ndata: 2\n\n", at(2))


def test_queue_resume_on_empty_queue():
    queue = BoundedEventQueue(3, epoch=EPOCH)
    assert queue.resume(None) == (b"", at(0))
    assert queue.resume("0") == (b"", at(0))
    assert queue.resume("1") == (reset(0), at(0))


def test_queue_owes_every_frame_from_cursor():
    queue = queue_of(3, 5)
    assert queue.owed(at(2)) == (frame(2, "m2") + frame(3, "m3") + frame(4, "m4"), at(5))
    assert queue.owed(at(4)) == (frame(4, "m4"), at(5))


def test_queue_owes_nothing_at_count():
    assert queue_of(3, 5).owed(at(5)) == (b"", at(5))


def test_queue_frame_of_multiline_message_has_several_data_lines():
    queue = BoundedEventQueue(3, epoch=EPOCH)
    queue.append("one\r\ntwo\nthree")
    assert queue.owed(at(0)) == (b"id: E:1\ndata: one\ndata: two\ndata: three\n\n", at(1))


def test_queue_owed_with_tiny_limit_still_gives_one_frame():
    queue = queue_of(3, 5)
    assert queue.owed(at(2), limit=1) == (frame(2, "m2"), at(3))
    assert queue.owed(at(2), limit=0) == (frame(2, "m2"), at(3))


def test_queue_owed_with_limit_walks_the_same_bytes_in_pieces():
    queue = BoundedEventQueue(100, epoch=EPOCH)
    for number in range(50):
        queue.append("x" * number)
    whole, end = queue.owed(at(0))
    pieces, cursor = [], at(0)
    for _ in range(100):  # bounded: at least one frame per call
        piece, cursor = queue.owed(cursor, limit=200)
        if not piece:
            break
        assert len(piece) < 200 + len(frame(49, "x" * 49))
        pieces.append(piece)
    assert b"".join(pieces) == whole and cursor == end == at(50)
    assert 1 < len(pieces) < 50


def test_queue_owed_with_large_limit_gives_everything():
    queue = queue_of(3, 5)
    assert queue.owed(at(2), limit=1 << 20) == queue.owed(at(2))


def test_queue_owed_for_aged_out_cursor_starts_with_reset():
    queue = queue_of(3, 5)
    assert queue.owed(at(1)) == (reset(2) + frame(2, "m2") + frame(3, "m3") + frame(4, "m4"), at(5))


def test_queue_backlog_is_the_bytes_not_yet_given():
    queue = queue_of(3, 5)
    assert queue.backlog(at(5)) == 0
    assert queue.backlog(at(4)) == len(frame(4, "m4"))
    assert queue.backlog(at(2)) == len(queue.owed(at(2))[0])
    assert queue.backlog(at(0)) == len(queue.owed(at(2))[0])  # aged out: all that is kept


def test_queue_backlog_of_empty_queue_is_zero():
    assert BoundedEventQueue(3, epoch=EPOCH).backlog(at(0)) == 0


def test_queue_backlog_grows_with_each_message_a_reader_misses():
    queue = BoundedEventQueue(1000, epoch=EPOCH)
    sizes = []
    for number in range(5):
        queue.append("y" * 100)
        sizes.append(queue.backlog(at(0)))
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert sizes[-1] == len(queue.owed(at(0))[0])


# StateStream ----------------------------------------------------------------


def test_state_starts_at_id_one():
    prices = StateStream("100.00")
    assert (prices.id, prices.data) == (1, "100.00")


def test_state_update_adds_one_to_the_id():
    prices = StateStream("100.00")
    assert prices.update("101.50") == 2
    assert (prices.id, prices.data) == (2, "101.50")


@pytest.mark.parametrize("cursor", [None, 0, 7, 10**30], ids=["absent", "zero", "other", "from-before-restart"])
def test_state_owes_the_current_state_to_any_other_id(cursor):
    assert StateStream("100.00").owed(cursor) == (b"id: 1\ndata: 100.00\n\n", 1)


def test_state_owes_nothing_to_the_current_id():
    assert StateStream("100.00").owed(1) == (b"", 1)


def test_state_resume_keeps_the_id_as_cursor():
    assert StateStream("100.00").resume("5") == (b"", 5)
    assert StateStream("100.00").resume(None) == (b"", None)


def test_state_owes_only_the_newest_after_many_updates():
    prices = StateStream("100.00")
    for cents in range(1, 101):
        prices.update(f"{100 + cents / 100:.2f}")
    assert prices.owed(1) == (b"id: 101\ndata: 101.00\n\n", 101)
    assert prices.owed(50, limit=1) == (b"id: 101\ndata: 101.00\n\n", 101)


def test_state_backlog_is_always_zero():
    prices = StateStream("100.00")
    for _ in range(100):
        prices.update("1" * 1000)
    assert prices.backlog(1) == 0
    assert prices.backlog(None) == 0


# Changes ----------------------------------------------------------------------


def test_notify_calls_every_subscriber_once_per_change():
    changes, calls = Changes(), []
    changes.subscribe(lambda: calls.append("a"))
    changes.subscribe(lambda: calls.append("b"))
    changes.notify()
    assert sorted(calls) == ["a", "b"]
    changes.notify()
    assert len(calls) == 4


def test_an_unsubscribed_reader_is_not_called():
    changes, calls = Changes(), []

    def reader():
        calls.append(1)

    changes.subscribe(reader)
    changes.unsubscribe(reader)
    changes.unsubscribe(reader)  # twice is harmless
    changes.notify()
    assert calls == []


def test_a_reader_may_unsubscribe_itself_while_being_called():
    changes, calls = Changes(), []

    def once():
        calls.append(1)
        changes.unsubscribe(once)

    changes.subscribe(once)
    changes.subscribe(lambda: calls.append(2))
    changes.notify()
    changes.notify()
    assert sorted(calls) == [1, 2, 2]


def test_queue_append_calls_subscribers_after_the_event_is_there():
    queue, seen = BoundedEventQueue(3, epoch=EPOCH), []
    queue.subscribe(lambda: seen.append(queue.owed(at(0))))
    queue.append("hi")
    assert seen == [(encode_event("hi", event_id="E:1"), at(1))]


def test_state_update_calls_subscribers_with_the_new_state_in_place():
    prices, seen = StateStream("100.00"), []
    prices.subscribe(lambda: seen.append(prices.owed(1)))
    prices.update("100.01")
    assert seen == [(encode_event("100.01", event_id=2), 2)]


# What the Redis engine's mirrors need (tests/process/test_redis.py) -------------


def test_a_history_restarted_further_on_resets_readers_left_in_the_gap():
    history = BoundedEventQueue(3, epoch=EPOCH)
    for message in ("a", "b"):
        history.append(message)
    history.restart_at(5, ["x", "y"])
    assert (history.first, history.count, history.since(5)) == (5, 7, ["x", "y"])
    assert history.owed(at(1)) == (reset(5) + frame(5, "x") + frame(6, "y"), at(7))
    assert history.backlog(at(1)) == len(frame(5, "x") + frame(6, "y"))
    assert history.append("z") == 7


def test_a_state_stream_takes_an_id_given_elsewhere():
    prices = StateStream("100.00")
    prices.publish(42, "101.25")
    assert (prices.id, prices.data) == (42, "101.25")
    assert prices.owed(None) == (b"id: 42\ndata: 101.25\n\n", 42)
    assert prices.owed(42) == (b"", 42)
