"""The raw test client itself: fed bytes, it must read them as a browser or
curl would, or every test built on it proves nothing. The last tests put a
listening socket of their own on the other end: what it sends is what the
client must see, and what the client sends is what it gets."""

from __future__ import annotations

import asyncio
import gzip
import socket
import time

import pytest

from tests.client import HOST, AsyncClient, Client, Cursor, EventStream, Response, request_bytes


def fed(data: bytes, method: str = "GET", step: int = 0) -> Response:
    """A Response fed ``data`` at once, or ``step`` bytes at a time."""
    response = Response(method)
    for start in range(0, len(data), step or len(data) or 1):
        response.feed(data[start:start + (step or len(data))])
    return response


def stream_of(*pieces: str) -> EventStream:
    stream = EventStream()
    for piece in pieces:
        stream.feed(piece.encode("utf-8"))
    return stream


# Framing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [0, 1], ids=["at-once", "byte-by-byte"])
def test_content_length_body_with_its_status_line_and_headers(step):
    response = fed(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nabcde", step=step)
    assert (response.version, response.status, response.reason) == ("HTTP/1.1", 404, "Not Found")
    assert response.headers["content-type"] == "text/plain" and "CONTENT-LENGTH" in response.headers
    assert (response.body, response.complete, response.chunked) == (b"abcde", True, False)


def test_a_body_shorter_than_its_length_is_not_complete():
    response = fed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc")
    assert (response.body, response.complete) == (b"abc", False)
    response.feed_eof()
    assert response.closed and not response.complete


@pytest.mark.parametrize("step", [0, 1, 3], ids=["at-once", "byte-by-byte", "3-bytes"])
def test_chunked_body_keeps_each_chunk_as_cut(step):
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\nA;ext=1\r\n0123456789\r\n0\r\n\r\n")
    response = fed(data, step=step)
    assert response.chunked and response.complete
    assert response.chunks == [b"abc", b"0123456789", b""]
    assert response.body == b"abc0123456789"


def test_chunked_body_is_complete_only_after_the_last_chunk_and_its_trailers():
    response = fed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n")
    assert response.chunks == [b"ab", b""] and not response.complete
    response.feed(b"X-Trailer: 1\r\n")
    assert not response.complete
    response.feed(b"\r\n")
    assert response.complete


def test_a_chunk_not_yet_whole_is_not_shown():
    response = fed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabc")
    assert (response.chunks, response.body) == ([], b"")


def test_http_1_0_body_runs_until_the_server_closes():
    response = fed(b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\n")
    assert response.version == "HTTP/1.0" and not response.complete
    assert response.events == [{"event": "message", "data": "1", "id": ""}]
    response.feed(b"data: 2\n\n")
    response.feed_eof()
    assert response.complete and response.body == b"data: 1\n\ndata: 2\n\n"


def test_a_body_cut_by_a_reset_is_not_complete():
    response = fed(b"HTTP/1.0 200 OK\r\n\r\npart")
    response.feed_eof(reset=True)
    assert response.closed and response.reset and not response.complete


@pytest.mark.parametrize("head, method", [(b"HTTP/1.1 204 No Content\r\n\r\n", "GET"),
                                          (b"HTTP/1.1 304 Not Modified\r\n\r\n", "GET"),
                                          (b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", "HEAD")])
def test_answers_without_a_body_are_complete_with_the_head(head, method):
    response = fed(head, method)
    assert response.complete and response.body == b""


def test_a_gzip_body_is_decoded_and_its_chunks_kept_as_sent():
    packed = gzip.compress(b"<html>" + b"x" * 1000 + b"</html>")
    data = (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"%x\r\n%s\r\n0\r\n\r\n" % (len(packed), packed))
    response = fed(data, step=7)
    assert response.complete and response.chunks == [packed, b""]
    assert response.body == b"<html>" + b"x" * 1000 + b"</html>"


def test_received_is_every_byte_head_included():
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert fed(data, step=5).received == data


def test_what_is_not_http_is_refused():
    with pytest.raises(AssertionError):
        fed(b"SSH-2.0-OpenSSH\r\n\r\n")


# The event stream, by the WHATWG rules ----------------------------------------------------


def test_data_lines_are_joined_and_one_space_after_the_colon_dropped():
    stream = stream_of("data: one\ndata:two\ndata:  three\ndata\n\n")
    assert stream.events == [{"event": "message", "data": "one\ntwo\n three\n", "id": ""}]


def test_an_event_names_its_type_once():
    stream = stream_of("event: reset\nid: 5\ndata: 5\n\ndata: after\n\n")
    assert [e["event"] for e in stream.events] == ["reset", "message"]


def test_the_id_carries_over_until_another_or_an_empty_one():
    stream = stream_of("id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: x\0y\ndata: d\n\n")
    assert [e["id"] for e in stream.events] == ["1", "1", "", ""]


def test_a_block_without_data_dispatches_nothing_but_sets_the_id():
    stream = stream_of("id: 7\n\nevent: lost\n\ndata: next\n\n")
    assert stream.events == [{"event": "message", "data": "next", "id": "7"}]


def test_comments_and_unknown_fields_are_no_events_but_are_kept():
    stream = stream_of(": keep-alive\n\nfoo: bar\n\n:\n\n")
    assert stream.events == []
    assert stream.comments == ["keep-alive", ""]
    assert stream.blocks == [[": keep-alive"], ["foo: bar"], [":"]]


@pytest.mark.parametrize("value, expected", [("2000", 2000), ("0", 0), ("1.5", None), ("-1", None),
                                             ("abc", None), ("\u00b2", None), ("", None)])
def test_retry_counts_only_when_all_ascii_digits(value, expected):
    assert stream_of(f"retry: {value}\n\n").retry == expected


@pytest.mark.parametrize("end", ["\n", "\r", "\r\n"], ids=["LF", "CR", "CRLF"])
def test_every_line_end_ends_a_line(end):
    stream = stream_of(f"data: a{end}data: b{end}{end}data: c{end}{end}")
    assert [e["data"] for e in stream.events] == ["a\nb", "c"]


def test_a_crlf_cut_between_two_reads_is_one_line_end():
    stream = stream_of("data: a\r", "\ndata: b\r", "\n\r", "\n")
    assert stream.events == [{"event": "message", "data": "a\nb", "id": ""}]
    assert stream.lines == ["data: a", "data: b", ""]


def test_a_bom_first_is_dropped_and_utf8_cut_between_reads_is_whole():
    stream = EventStream()
    data = "\ufeffdata: caf\u00e9\n\n".encode("utf-8")
    for byte in data:
        stream.feed(bytes([byte]))
    assert stream.events == [{"event": "message", "data": "caf\u00e9", "id": ""}]


def test_an_event_not_ended_by_a_blank_line_is_not_dispatched():
    stream = stream_of("data: complete\n\ndata: cut")
    assert [e["data"] for e in stream.events] == ["complete"]


# Taking a response piece by piece ---------------------------------------------------------


def test_chunk_after_take_returns_the_rest_of_that_chunk():
    response = fed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n2\r\nef\r\n")
    taken = Cursor(response)
    assert taken.take(2) == b"ab"
    assert taken.chunk() == b"cd"
    assert taken.chunk() == b"ef"
    assert taken.chunk() is None  # nothing more yet
    response.feed(b"0\r\n\r\n")
    assert taken.chunk() == b""


def test_blocks_and_events_are_read_in_turn_and_blocks_end_with_the_stream():
    response = fed(b"HTTP/1.1 200 OK\r\n\r\nretry: 10\n\n: hi\n\ndata: a\n\n\n\ndata: b\n\n: bye\n\n")
    taken = Cursor(response)
    assert taken.block() == ["retry: 10"]
    assert [e["data"] for e in taken.events(1)] == ["a"]  # the comment before it passed over
    assert taken.events(2) is None  # only one more has come
    assert taken.block() == ["data: b"]
    assert taken.block() == [": bye"]
    assert taken.block() is None
    response.feed_eof()
    assert taken.block() == []


def test_request_bytes_add_host_and_length_unless_given():
    assert request_bytes("POST", "/p", {"X-A": "1"}, b"abc", host="h:1") == (
        b"POST /p HTTP/1.1\r\nHost: h:1\r\nX-A: 1\r\nContent-Length: 3\r\n\r\nabc")
    assert request_bytes("GET", "/", [("Host", "x")], version="HTTP/1.0") == b"GET / HTTP/1.0\r\nHost: x\r\n\r\n"
    assert b"Content-Length" not in request_bytes("POST", "/", {"Transfer-Encoding": "chunked"}, b"0\r\n\r\n")


# On a socket: a listener of the test's own on the other end ---------------------------------


@pytest.fixture
def listener():
    with socket.create_server((HOST, 0)) as server:
        server.settimeout(5)
        yield server


def test_client_reads_as_the_peer_writes_and_sees_it_close(listener):
    client = Client(listener.getsockname()[1], "/ticker", headers={"Last-Event-ID": "1"})
    peer, _ = listener.accept()
    with client, peer:
        assert peer.recv(1024).startswith(b"GET /ticker HTTP/1.1\r\nHost: 127.0.0.1:")
        peer.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert client.head().status == 200
        assert client.silent(0.05)
        peer.sendall(b"b\r\ndata: one\n\n\r\n")
        assert client.chunk() == b"data: one\n\n"
        assert client.arrivals[0][1]["data"] == "one"
        started = time.monotonic()
        with pytest.raises(AssertionError, match="did not come within 0.1 s"):
            client.chunk(timeout=0.1)
        assert time.monotonic() - started < 1
        peer.close()
        assert client.closed_by_server(timeout=1) and not client.response.reset
        with pytest.raises(AssertionError, match="ended before the next chunk"):
            client.chunk()


def test_abort_resets_the_connection(listener):
    client = Client(listener.getsockname()[1], "/")
    peer, _ = listener.accept()
    with peer:
        peer.recv(1024)
        client.abort()
        peer.settimeout(2)
        with pytest.raises(ConnectionResetError):
            peer.recv(1024)


def test_a_stalled_client_leaves_the_peer_blocked_until_it_resumes(listener):
    client = Client(listener.getsockname()[1], "/", stalled=True)
    peer, _ = listener.accept()
    with client, peer:
        assert client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) < 16384  # as small as allowed
        peer.recv(1024)
        peer.setblocking(False)
        peer.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
        sent = 0
        with pytest.raises(BlockingIOError):
            for _ in range(10000):  # the kernel's buffers fill long before 640 MB
                sent += peer.send(b"x" * 65536)
        client.resume()
        assert client.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) > 16384
        peer.close()
        assert client.closed_by_server(timeout=5)
        assert client.response.complete and len(client.response.body) == sent


def test_async_client_reads_a_stalled_socket_only_after_resume(listener):
    async def scenario():
        client = await AsyncClient.open(listener.getsockname()[1], "/chat/events", stalled=True)
        peer, _ = listener.accept()
        with peer:
            assert peer.recv(1024).startswith(b"GET /chat/events HTTP/1.1\r\n")
            peer.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
            with pytest.raises(AssertionError, match="after resume"):
                await client.head()
            await client.resume()
            assert (await client.head()).status == 200
            assert await client.chunk() == b"abc"
            assert await client.silent(0.05)
            peer.sendall(b"0\r\n\r\n")
            assert (await client.finish()).complete
        assert await client.closed_by_server(timeout=1)
        await client.close()

    asyncio.run(scenario())
