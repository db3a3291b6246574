"""POST /chat/post under generated requests (hypothesis): bodies, content
types, framings, lengths and header sets, thrown at a live ``python app.py``.

Each generated request knows what the contract (docs/protocol.md section 1) says
it must get: 403 for a browser's post from another site, 413 for a body over
``--max-body`` or a message over ``--max-message`` characters, 400 for a body
that is not a well-formed form of its declared type or whose message is
missing, empty or not UTF-8, and 200 otherwise. For every one: that status,
never a 500 or a traceback, and the message count moves by one exactly when
the answer is 200 (then the message reads back byte for byte).

Bounded: a fixed number of examples, derandomized (the same ones every run),
each with a deadline; no example database is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Optional
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, assume, event, given, settings, strategies as st

from tests.client import fetch
from tests.server import QUIET, ServerProcess

MAX_BODY, MAX_MESSAGE = 1024, 40
# Hundreds of posts from one address: no post rate here (tests/process/test_post_rate.py has it).
FLAGS = (f"--max-body={MAX_BODY}", f"--max-message={MAX_MESSAGE}", "--post-rate=0", *QUIET)
URLENCODED, MULTIPART = "application/x-www-form-urlencoded", "multipart/form-data"

# Each flaw makes a multipart body malformed; the reader must say 400.
MULTIPART_FLAWS = ["no boundary parameter", "an empty boundary", "a wrong boundary", "unterminated",
                   "a part without headers", "an empty field name", "a field name not UTF-8",
                   "a header line without a colon", "a part that is not form-data"]
NOT_FORMS = ["text/plain", "application/json", "", None, "multipart/mixed; boundary=B",
             "application/x-www-form-urlencodedx", "multipart/form-dataxyz; boundary=B"]
HARMLESS_HEADERS = [("Accept", "*/*"), ("Cookie", "session=abc"), ("Referer", "http://elsewhere.example/"),
                    ("X-Requested-With", "XMLHttpRequest"), ("User-Agent", "hypothesis"),
                    ("Accept-Encoding", "gzip")]


@dataclass
class Post:
    """A generated request and what the contract says it must get."""

    headers: list[tuple[str, str]]
    body: bytes
    expected: set[int]
    message: Optional[bytes] = None  # stored exactly, when the answer is 200
    why: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def server():
    with ServerProcess(*FLAGS) as server:
        yield server
        log = server.log()
        assert "Traceback" not in log and " 500 " not in log, log[-3000:]


# --- what a request is made of ----------------------------------------------------------------

names = st.from_regex(r"[a-z_]{1,8}", fullmatch=True).filter(lambda name: name != "message")
boundaries = st.from_regex(r"[0-9A-Za-z'()+_,./:=?-]{1,40}", fullmatch=True)
# A message: text (often near --max-message), bytes that may not be UTF-8, or nothing.
messages = st.one_of(
    st.text(max_size=MAX_MESSAGE + 5).map(lambda text: text.encode("utf-8")),
    st.text(alphabet="ab\u2603", min_size=MAX_MESSAGE - 2, max_size=MAX_MESSAGE + 2).map(str.encode),
    st.binary(max_size=MAX_MESSAGE + 5),
    st.none(),
)


def message_status(message: Optional[bytes]) -> int:
    """What the contract says of a well-formed form holding ``message``."""
    if not message:
        return 400  # missing or empty
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        return 400
    return 413 if len(text) > MAX_MESSAGE else 200


def urlencoded(fields: list[tuple[str, bytes]]) -> bytes:
    return b"&".join(name.encode() + b"=" + quote_from_bytes(value).encode() for name, value in fields)


def multipart(boundary: bytes, parts: list[bytes]) -> bytes:
    return b"".join(b"--" + boundary + b"\r\n" + part for part in parts) + b"--" + boundary + b"--\r\n"


def field_part(name: bytes, value: bytes, disposition: bytes = b"form-data") -> bytes:
    return b"Content-Disposition: " + disposition + b'; name="' + name + b'"\r\n\r\n' + value + b"\r\n"


@st.composite
def forms(draw) -> tuple[Optional[str], bytes, set[int], Optional[bytes], str]:
    """(Content-Type, body, the statuses allowed, the message, why)."""
    message = draw(messages)
    others = draw(st.lists(st.tuples(names, st.binary(max_size=20)), max_size=3))
    fields = others + ([("message", message)] if message is not None else [])
    fields = draw(st.permutations(fields))
    # Of several fields named "message", the first counts: there is one here.
    kind = draw(st.sampled_from(["urlencoded", "multipart", "multipart, flawed", "not a form", "random bytes"]))
    if kind == "urlencoded":
        content_type = draw(st.sampled_from([URLENCODED, URLENCODED + "; charset=UTF-8", URLENCODED.upper()]))
        return content_type, urlencoded(fields), {message_status(message)}, message, kind
    if kind == "not a form":
        return draw(st.sampled_from(NOT_FORMS)), urlencoded(fields), {400}, None, kind
    if kind == "random bytes":
        content_type = draw(st.sampled_from([URLENCODED, MULTIPART + "; boundary=B"]))
        body = draw(st.binary(max_size=200))
        # Random bytes can spell a well-formed form by chance; the count check below still holds.
        return content_type, body, {200, 400, 413}, None, kind

    boundary = draw(boundaries).encode()
    # A boundary must not occur inside the body's values (RFC 2046).
    assume(all(b"--" + boundary not in value for _, value in fields))
    parts = [field_part(name.encode(), value) for name, value in fields]
    content_type = draw(st.sampled_from([
        f"{MULTIPART}; boundary={boundary.decode()}", f'{MULTIPART}; boundary="{boundary.decode()}"',
        f"Multipart/Form-Data; boundary={boundary.decode()}", f"{MULTIPART}; charset=utf-8; boundary={boundary.decode()}",
    ]))
    if kind == "multipart":
        return content_type, multipart(boundary, parts), {message_status(message)}, message, kind

    flaw = draw(st.sampled_from(MULTIPART_FLAWS))
    where = draw(st.integers(0, len(parts)))
    if flaw == "no boundary parameter":
        content_type = MULTIPART
    elif flaw == "an empty boundary":
        content_type = MULTIPART + "; boundary="
    elif flaw == "a wrong boundary":
        content_type = f"{MULTIPART}; boundary=x{boundary.decode()}"
        assume(all(b"--x" + boundary not in value for _, value in fields))
    elif flaw == "a part without headers":
        parts.insert(where, b"\r\nhello\r\n" if draw(st.booleans()) else b"hello\r\n")
    elif flaw == "an empty field name":
        parts.insert(where, field_part(b"", b"hello"))
    elif flaw == "a field name not UTF-8":
        parts.insert(where, field_part(b"\xff\xfe", b"hello"))
    elif flaw == "a header line without a colon":
        parts.insert(where, b"Content-Disposition form-data\r\n\r\nhello\r\n")
    elif flaw == "a part that is not form-data":
        parts.insert(where, field_part(b"note", b"hello", b"attachment"))
    body = multipart(boundary, parts)
    if flaw == "unterminated":
        final = body.rindex(b"--" + boundary + b"--")
        body = body[:draw(st.integers(0, final + len(boundary) + 3))]
    return content_type, body, {400}, None, f"{kind}: {flaw}"


@st.composite
def posts(draw, port: int) -> Post:
    content_type, body, expected, message, why = draw(forms())
    headers = [] if content_type is None else [("Content-Type", content_type)]
    post = Post(headers, body, expected, message if expected == {200} else None, [why])

    # Where it comes from: Sec-Fetch-Site first, then Origin against Host.
    here = f"http://127.0.0.1:{port}"
    # (None, the most common, is curl or a script; repeats weight a draw.)
    fetch_site = draw(st.sampled_from([None] * 8 + ["same-origin", "none", "same-site", "cross-site", "Same-Origin", ""]))
    origin = draw(st.sampled_from([None] * 4 + [here] * 2 + [here.upper(), f"https://127.0.0.1:{port}",
                                   f"http://localhost:{port}", f"http://127.0.0.1:{port + 1}", "null",
                                   "http://evil.example"]))
    if fetch_site is not None:
        post.headers.append(("Sec-Fetch-Site", fetch_site))
    if origin is not None:
        post.headers.append(("Origin", origin))
    if fetch_site is not None:
        cross = fetch_site not in ("same-origin", "none")
    else:
        # Host has no scheme: https:// on the same host and port passes (as Go's rule).
        cross = origin is not None and origin.lower().split("://", 1)[-1] != f"127.0.0.1:{port}"
    post.headers += draw(st.lists(st.sampled_from(HARMLESS_HEADERS), max_size=3, unique=True))
    encoding = draw(st.sampled_from([None, None, None, "gzip", "identity"]))
    if encoding is not None:
        post.headers.append(("Content-Encoding", encoding))

    # How long it says it is, and how it is framed.
    framing = draw(st.sampled_from(["Content-Length", "Content-Length", "chunked", "declared over the limit"]))
    if framing == "chunked":
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)]) if b > a]
        post.headers.append(("Transfer-Encoding", "chunked"))
        post.body = b"".join(b"%x\r\n%b\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    elif framing == "declared over the limit":
        post.headers.append(("Content-Length", str(draw(st.integers(MAX_BODY + 1, 10 * MAX_BODY)))))
        post.body = b""  # refused on its headers: the body is never sent, so never left unread

    if cross:
        post.expected, post.why = {403}, post.why + ["from another site"]
        if framing != "chunked":  # refused on its headers (see above)
            post.headers = [(k, v) for k, v in post.headers if k != "Content-Length"] + [("Content-Length", "5")]
            post.body = b""
    elif framing == "declared over the limit" or len(body) > MAX_BODY:
        post.expected, post.why = {413}, post.why + ["over --max-body"]
    elif encoding is not None and post.expected != {400}:
        post.expected, post.why = {400}, post.why + ["Content-Encoding"]
    if post.expected != {200}:
        post.message = None
    return post


# --- the property -----------------------------------------------------------------------------


def count(server) -> int:
    return server.status()["chat"]["messages"]


@settings(max_examples=300, deadline=timedelta(seconds=3), derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(data=st.data())
def test_every_post_gets_the_status_the_contract_says_and_only_a_200_stores(server, data):
    post = data.draw(posts(server.port))
    before = count(server)
    status, headers, body = fetch(server.port, "/chat/post", "POST", post.body,
                                  post.headers + [("Connection", "close")])
    event(f"{status} {post.why[-1]}")  # pytest --hypothesis-show-statistics shows the mix
    assert status != 500 and b"Traceback" not in body, (status, body)
    assert status in post.expected, f"{status} {body!r}, wanted {post.expected} for {post.why}"
    after = count(server)
    if status != 200:
        assert after == before, f"a {status} stored a message ({post.why})"
        assert headers["Content-Type"] == "text/plain; charset=UTF-8" and body.startswith(b"%d " % status), body
        return
    assert after == before + 1
    number = json.loads(body)["id"]
    assert number == before
    if post.message is not None:
        stored_status, _, stored = fetch(server.port, f"/chat/get/{number}")
        assert (stored_status, stored) == (200, post.message)
