"""The chat history's epoch, without a server: which ids a reader may resume
by, and what a reader from another history is told (docs/protocol.md §1, §2).
"""

from __future__ import annotations

import pytest

from comet.policies import EPOCH, BoundedEventQueue, new_epoch


def history(*messages: str, capacity: int = 10, epoch: str = "E1") -> BoundedEventQueue:
    queue = BoundedEventQueue(capacity, epoch=epoch)
    for message in messages:
        queue.append(message)
    return queue


def test_a_new_history_has_a_well_formed_epoch_of_its_own():
    first, second = BoundedEventQueue(), BoundedEventQueue()
    assert EPOCH.fullmatch(first.epoch) and EPOCH.fullmatch(new_epoch())
    assert first.epoch != second.epoch


def test_message_n_goes_out_with_id_epoch_colon_n_plus_one():
    queue = history("zero", "one")
    frames, cursor = queue.owed(queue.resume(None)[1])
    assert frames == b"id: E1:1\ndata: zero\n\nid: E1:2\ndata: one\n\n"
    assert cursor == ("E1", 2)


@pytest.mark.parametrize("last_event_id", ["E1:1", "1"])
def test_an_id_of_this_epoch_or_a_bare_number_resumes_where_it_stood(last_event_id):
    queue = history("zero", "one", "two")
    prefix, cursor = queue.resume(last_event_id)
    assert prefix == b""
    assert queue.owed(cursor)[0] == b"id: E1:2\ndata: one\n\nid: E1:3\ndata: two\n\n"


def test_an_id_of_another_epoch_gets_a_reset_even_when_its_number_fits():
    """The hole a restart left: ``OLD:1`` fits a new history holding one
    message by number, and message 0 was silently skipped."""
    queue = history("the first message after the restart", epoch="NEW")
    prefix, cursor = queue.resume("OLD:1")
    assert prefix == b"event: reset\nid: NEW:0\ndata: 0\n\n"
    assert queue.owed(cursor)[0] == b"id: NEW:1\ndata: the first message after the restart\n\n"


@pytest.mark.parametrize("last_event_id", ["E1:x", "E1:", "a b:1", "E1:-1", ":", "E1:1:2x", "é:1"])
def test_an_id_that_does_not_parse_counts_as_absent(last_event_id):
    queue = history("zero", "one")
    assert queue.resume(last_event_id) == (b"", ("E1", 0))


def test_an_epoch_longer_than_64_characters_does_not_parse():
    queue = history("zero")
    assert queue.resume("x" * 65 + ":1") == (b"", ("E1", 0))
    assert queue.resume("x" * 64 + ":1")[0].startswith(b"event: reset\n")


def test_a_reader_held_across_a_change_of_history_is_reset_by_owed():
    """With --redis a mirror may be replaced by a newer history while a
    stream holds a cursor of the old one."""
    queue = history("a", "b", "c")
    cursor = queue.resume("E1:3")[1]
    queue.restart_at(0, ["new zero"], epoch="E2")
    frames, cursor = queue.owed(cursor)
    assert frames == b"event: reset\nid: E2:0\ndata: 0\n\nid: E2:1\ndata: new zero\n\n"
    assert cursor == ("E2", 1)


def test_a_reader_of_another_epoch_counts_the_whole_history_as_backlog():
    queue = history("a", "b")
    whole = queue.backlog(("E1", 0))
    assert whole == len(b"id: E1:1\ndata: a\n\nid: E1:2\ndata: b\n\n")
    assert queue.backlog(("OLD", 2)) == whole
    assert queue.backlog(("E1", 2)) == 0
