"""Readers that stop reading, on the real server. ``/chat/events`` readers
are dropped once they fall ``--max-backlog`` behind, and resume by their id
without losing a message; ``/ticker`` readers cost no memory and get the
newest price when they read again; and a reader behind by more than one
write (64 KiB) is sent all it is owed at once."""

from __future__ import annotations

import contextlib
import json
import threading
from urllib.parse import quote_from_bytes

from tests.client import FALLBACK, Client, chat_number, wait_until
from tests.machine import rss_bytes
from tests.netns import in_private_network, loopback_up, set_sysctl
from tests.server import NO_JITTER, QUIET, ServerProcess

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def post_many(port: int, texts: list[str], connections: int = 2) -> None:
    """POST every text, over a few keep-alive connections at once."""
    failures: list = []

    def poster(part: list[str]) -> None:
        try:
            with Client(port) as client:
                for text in part:
                    client.request("POST", "/chat/post", FORM, b"message=" + quote_from_bytes(text.encode()).encode())
                    response = client.finish(timeout=10)
                    if response.status != 200:
                        failures.append(response.status)
                        return
        except (OSError, AssertionError) as error:
            failures.append(error)

    threads = [threading.Thread(target=poster, args=(texts[k::connections],)) for k in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures and not any(t.is_alive() for t in threads), failures


def test_stalled_chat_readers_are_dropped_then_resume_by_their_id_losing_nothing():
    """Ten /chat/events readers stop reading while 2000 messages of 2 KB are
    posted. Each is owed 4 MB; the kernel's send buffer takes a part, and
    once another --max-backlog (256 KiB) is owed the server hangs up. The
    server holds each message once, for everyone; it never buffers a copy
    per reader, and RSS shows it."""
    readers, messages, size = 10, 2000, 2048
    texts = [f"{n:05d} " + "x" * (size - 6) for n in range(messages)]
    flags = (f"--history={messages}", f"--max-message={size}", "--tick-interval=3600", "--keepalive=60", NO_JITTER,
             "--post-rate=0")  # thousands of posts from one address
    with ServerProcess(*flags) as server:
        stalled = [Client(server.port, "/chat/events", stalled=True) for _ in range(readers)]
        try:
            server.wait_for_counts((0, readers, 0), timeout=5)
            rss_before = rss_bytes(server.pid)
            post_many(server.port, texts)
            report, _ = server.wait_for_counts((0, 0, 0), timeout=5)  # every reader was dropped
            grown = rss_bytes(server.pid) - rss_before
            assert report["chat"]["messages"] == messages
            epoch = server.fetch("/chat/since/0")[1]["X-Chat-Epoch"]
            frames = sum(len(f"id: {epoch}:{n + 1}\ndata: {t}\n\n") for n, t in enumerate(texts))
            kept = frames + sum(map(len, texts))  # each message is kept as text and as a frame
            owed = readers * frames
            # The history itself, both as text and as frames, plus a little;
            # not the 20 MB the readers were owed.
            assert grown < kept + (4 << 20), f"RSS grew {grown >> 10} KiB; the history holds {kept >> 10} KiB"

            history = json.loads(server.fetch("/chat/since/0")[2])["messages"]
            assert sorted(history) == texts  # each stored once, in the order the two posters got in
            for reader in stalled:
                # What it got before the cut, then the rest by its id.
                reader.resume()
                assert reader.closed_by_server(timeout=10), "the server did not close a dropped reader"
                cut = reader.response
                assert not cut.reset, "the server reset the connection instead of ending it"
                assert not cut.complete, "a dropped reader's response is cut, not ended"
                assert cut.stream.blocks[0] == ["retry: 2000"]
                got = cut.events  # the events it got whole
                last_id = chat_number(got[-1]["id"])
                assert [e["data"] for e in got] == history[:last_id], "the part before the cut is in order"
                assert last_id < messages, "it was dropped before it had everything"

                with Client(server.port, "/chat/events", headers={"Last-Event-ID": str(last_id)}) as resumed:
                    rest = resumed.wait(lambda r: len(r.events) >= messages - last_id, timeout=10)
                assert rest.events[0]["event"] == "message", "nothing it needs has aged out: no reset"
                assert [e["data"] for e in rest.events] == history[last_id:]
                assert [chat_number(e["id"]) for e in rest.events] == list(range(last_id + 1, messages + 1))
        finally:
            for reader in stalled:
                reader.close()
    print(f"\nchat: {readers} stalled readers owed {owed >> 20} MiB; RSS grew {grown >> 10} KiB "
          f"(history {kept >> 10} KiB)")


def scenario_ticker_stall(readers: int, moves: int, seconds: float) -> dict:
    """In a private namespace: net.ipv4.tcp_notsent_lowat caps the unsent
    bytes the kernel takes per socket, as a server setting TCP_NOTSENT_LOWAT
    would; else the kernel itself buffers up to 4 MB of old prices per
    reader, and the policy's coalescing is never reached in a test's time."""
    loopback_up()
    set_sysctl("net.ipv4.tcp_notsent_lowat", "16384")
    with ServerProcess("--tick-interval=0.001", "--keepalive=60") as server:
        stalled = [Client(server.port, "/ticker", stalled=True) for _ in range(readers)]
        try:
            assert wait_until(lambda: server.status()["ticker"]["streams"] == readers, 5)
            start = server.status()["ticker"]["id"]
            # About 700 prices fill a stalled reader's buffers; then measure.
            assert wait_until(lambda: server.status()["ticker"]["id"] >= start + 700, seconds, 0.05)
            rss_before, id_before = rss_bytes(server.pid), server.status()["ticker"]["id"]
            wait_until(lambda: server.status()["ticker"]["id"] >= id_before + moves, seconds, 0.05)
            report = server.status()
            rss_after, id_after = rss_bytes(server.pid), report["ticker"]["id"]
            # Now one of them reads again, until it has a price as new as that.
            reader = stalled[0]
            reader.resume()
            with contextlib.suppress(AssertionError):
                reader.wait(lambda r: r.events and int(r.events[-1]["id"]) >= id_after, timeout=5)
            ids = [int(event["id"]) for event in reader.response.events]
            body_bytes = len(reader.response.body)
        finally:
            for reader in stalled:
                reader.close()
    return dict(readers=readers, rss_before=rss_before, rss_after=rss_after, id_before=id_before,
                id_after=id_after, streams=report["ticker"]["streams"], ids=ids, body_bytes=body_bytes)


def test_stalled_ticker_readers_cost_no_memory_and_then_get_the_newest_price():
    result = in_private_network(scenario_ticker_stall, readers=40, moves=2000, seconds=8)
    ids, id_after = result["ids"], result["id_after"]
    moved = id_after - result["id_before"]
    frame = len(b"id: 1234\ndata: 100.00\n\n")
    grown = result["rss_after"] - result["rss_before"]
    print(f"\nticker: {result['readers']} stalled readers, {moved} moves; RSS grew {grown >> 10} KiB "
          f"(a queue would hold {result['readers'] * moved * frame >> 10} KiB)")
    assert moved >= 1000, f"only {moved} moves: the machine is too busy to say anything"
    assert result["streams"] == result["readers"], "a ticker reader is never dropped for falling behind"
    assert grown < (1 << 20), f"RSS grew {grown >> 10} KiB while readers were stalled"
    # The reader got what was in flight, then jumped to the newest price.
    assert ids == sorted(set(ids)), "ids only go up"
    caught_up = next(i for i, k in enumerate(ids) if k >= id_after)
    assert caught_up > 0 and ids[caught_up - 1] < id_after <= ids[caught_up]
    skipped = ids[caught_up] - ids[0] - caught_up
    assert skipped > caught_up, f"got {caught_up} old prices and skipped only {skipped}: a queue, not a state"


def test_a_backlog_longer_than_one_write_is_replayed_whole_without_waiting_for_new_events():
    """A reader that connects or resumes behind by more than one write's
    worth (64 KiB) gets all of it at once, not one write per later event."""
    messages = 300
    texts = [f"{n:04d} " + "y" * 1019 for n in range(messages)]  # 300 KiB in all
    with ServerProcess(f"--history={messages}", "--post-rate=0", *QUIET) as server:
        post_many(server.port, texts, connections=1)
        for path, headers, first in [("/chat/events", {}, 0), ("/chat/events", {"Last-Event-ID": "37"}, 37),
                                     ("/chat/events", FALLBACK, 0)]:
            with Client(server.port, path, headers=headers) as reader:
                with contextlib.suppress(AssertionError):
                    reader.wait(lambda r: len(r.events) >= messages - first, timeout=5)
            got = [e["data"] for e in reader.response.events]
            assert got == texts[first:], f"{path} {headers}: {len(got)} of {messages - first} messages replayed"
