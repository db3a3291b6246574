"""What /chat/post refuses (docs/protocol.md section 1): a body that is not a
well-formed form of its declared type is a 400 with a plain-text reason; a
post from another site's page is a 403 by Go's CrossOriginProtection rule;
nothing is stored on either. And every answer under /chat/, a 404 for a
malformed path included, carries Cache-Control: no-cache.

tests/process/test_post_property.py throws generated requests at the same
rules; these are the named cases, each one a reason a user would read."""

from __future__ import annotations

import logging

import pytest

from tests.client import AsyncClient

MESSAGE_PART = b'Content-Disposition: form-data; name="message"\r\n\r\nhello\r\n'


def plain_refusal(response, status: int, reason: str) -> None:
    """``status``, a text/plain body naming ``reason``, not cached, no traceback."""
    assert response.status == status, response
    assert response.headers["Content-Type"] == "text/plain; charset=UTF-8"
    assert response.headers["Cache-Control"] == "no-cache"
    text = response.body.decode("utf-8")
    assert reason in text and "Traceback" not in text, text


@pytest.fixture
def post(http_server, http_port):
    """``await post(body, headers, path="/chat/post")``: the answer to a raw
    POST with exactly these headers (and Host, Content-Length)."""
    async def answer(body: bytes, headers: dict, path: str = "/chat/post"):
        client = await AsyncClient.open(http_port, path, method="POST", body=body,
                                        headers=headers | {"Connection": "close"})
        try:
            return await client.finish()
        finally:
            await client.close()
    return answer


# --- malformed forms: 400 ----------------------------------------------------------------

MALFORMED = {
    "multipart without a boundary": ("multipart/form-data", b"--B\r\n" + MESSAGE_PART + b"--B--\r\n",
                                     "boundary not found"),
    "multipart with an empty boundary": ("multipart/form-data; boundary=", b"--B\r\n" + MESSAGE_PART + b"--B--\r\n",
                                         "boundary not found"),
    "a wrong boundary": ("multipart/form-data; boundary=X", b"--B\r\n" + MESSAGE_PART + b"--B--\r\n",
                         "no final boundary"),
    "unterminated": ("multipart/form-data; boundary=B", b"--B\r\n" + MESSAGE_PART, "no final boundary"),
    "a part without headers": ("multipart/form-data; boundary=B", b"--B\r\n\r\nhello\r\n--B--\r\n",
                               "missing headers"),
    "a good part, then one without headers": (
        "multipart/form-data; boundary=B", b"--B\r\n" + MESSAGE_PART + b"--B\r\nhello\r\n--B--\r\n",
        "missing headers"),
    "an empty field name": ("multipart/form-data; boundary=B",
                            b'--B\r\nContent-Disposition: form-data; name=""\r\n\r\nhello\r\n--B--\r\n',
                            "missing name"),
    "a field name that is not UTF-8": ("multipart/form-data; boundary=B",
                                       b'--B\r\nContent-Disposition: form-data; name="\xff"\r\n\r\nhello\r\n--B--\r\n',
                                       "can't decode"),
    "a part header without a colon": ("multipart/form-data; boundary=B",
                                      b"--B\r\nContent-Disposition form-data\r\n\r\nhello\r\n--B--\r\n",
                                      "no colon"),
    "a part that is not form-data": ("multipart/form-data; boundary=B",
                                     b'--B\r\nContent-Disposition: attachment; name="message"\r\n\r\nhello\r\n--B--\r\n',
                                     "Invalid multipart/form-data"),
    "not a form at all": ("text/plain", b"message=hello", "the body is not a form"),
    "no Content-Type": (None, b"message=hello", "the body is not a form"),
    "a look-alike type": ("multipart/form-dataxyz; boundary=B", b"--B\r\n" + MESSAGE_PART + b"--B--\r\n",
                          "the body is not a form"),
}


@pytest.mark.gen_test
@pytest.mark.parametrize("content_type, body, reason", MALFORMED.values(), ids=MALFORMED.keys())
async def test_a_malformed_form_is_400_with_its_reason_and_stores_nothing(post, app,
                                                                         content_type, body, reason):
    headers = {} if content_type is None else {"Content-Type": content_type}
    plain_refusal(await post(body, headers), 400, reason)
    assert app.history.count == 0


@pytest.mark.gen_test
@pytest.mark.parametrize("encoding", ["gzip", "identity"])
async def test_a_body_with_a_content_encoding_is_400(post, app, encoding):
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Content-Encoding": encoding}
    plain_refusal(await post(b"message=hello", headers), 400, "Content-Encoding")
    assert app.history.count == 0


@pytest.mark.gen_test
@pytest.mark.parametrize("content_type", [
    "multipart/form-data; boundary=B",
    'multipart/form-data; boundary="B"',
    "Multipart/Form-Data; boundary=B",  # media types are case-insensitive
    "multipart/form-data; charset=utf-8; boundary=B",
])
async def test_a_well_formed_multipart_form_is_stored(post, app, content_type):
    response = await post(b"--B\r\n" + MESSAGE_PART + b"--B--\r\n", {"Content-Type": content_type})
    assert response.status == 200, response
    assert app.history.count == 1 and app.history[0] == "hello"


# --- cross-site posts: 403 ---------------------------------------------------------------

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def origin_headers(port: int) -> dict[str, tuple[dict, int]]:
    """Sec-Fetch-Site first; else Origin against Host (127.0.0.1:port, as the
    client sends it); neither: not a browser's page, let through."""
    here = f"http://127.0.0.1:{port}"
    return {
        "neither header (curl)": ({}, 200),
        "Sec-Fetch-Site: same-origin": ({"Sec-Fetch-Site": "same-origin"}, 200),
        "Sec-Fetch-Site: none (typed, bookmarked)": ({"Sec-Fetch-Site": "none"}, 200),
        "Sec-Fetch-Site: same-site": ({"Sec-Fetch-Site": "same-site"}, 403),
        "Sec-Fetch-Site: cross-site": ({"Sec-Fetch-Site": "cross-site"}, 403),
        "Sec-Fetch-Site wins over a matching Origin": ({"Sec-Fetch-Site": "cross-site", "Origin": here}, 403),
        "Sec-Fetch-Site wins over another Origin": ({"Sec-Fetch-Site": "same-origin",
                                                    "Origin": "http://evil.example"}, 200),
        "Origin of this host and port": ({"Origin": here}, 200),
        "Origin of another host": ({"Origin": f"http://localhost:{port}"}, 403),
        "Origin of another port": ({"Origin": f"http://127.0.0.1:{port + 1}"}, 403),
        "Origin: null (a sandboxed page)": ({"Origin": "null"}, 403),
    }


@pytest.mark.gen_test
@pytest.mark.parametrize("case", list(origin_headers(0)))
async def test_a_post_from_another_site_is_403_and_stores_nothing(post, http_port, app, case):
    headers, status = origin_headers(http_port)[case]
    response = await post(b"message=hello", FORM | headers)
    if status == 403:
        plain_refusal(response, 403, "not allowed")
        assert app.history.count == 0
    else:
        assert response.status == 200, response
        assert app.history.count == 1


@pytest.mark.gen_test
async def test_a_cross_site_post_is_refused_before_its_body_is_read(post, app):
    """The 403 wins over the 413 the oversized body would get."""
    body = b"message=" + b"x" * (app.config.max_body + 1)
    response = await post(body, FORM | {"Sec-Fetch-Site": "cross-site"})
    plain_refusal(response, 403, "not allowed")
    assert app.history.count == 0


# --- Cache-Control on every answer under /chat/ -------------------------------------------

MALFORMED_PATHS = ["/chat/get/abc", "/chat/get/-1", "/chat/get/+1", "/chat/get/1a", "/chat/get/",
                   "/chat/since/abc", "/chat/since/", "/chat/", "/chat/nothing-here", "/chat/post/extra"]


@pytest.mark.gen_test
@pytest.mark.parametrize("path", MALFORMED_PATHS)
async def test_a_404_for_a_malformed_chat_path_is_not_cached(get, path):
    plain_refusal(await (await get(path)).finish(), 404, "Not Found")


@pytest.mark.gen_test
async def test_a_404_outside_chat_is_still_plain(get):
    response = await (await get("/nothing-here")).finish()
    assert response.status == 404 and response.headers["Content-Type"] == "text/plain; charset=UTF-8"


@pytest.mark.gen_test
async def test_a_method_the_chat_stream_does_not_take_is_not_cached(post):
    response = await post(b"message=hi", FORM, path="/chat/events")
    plain_refusal(response, 405, "Method Not Allowed")


@pytest.mark.settings(max_clients=0)
@pytest.mark.gen_test
@pytest.mark.parametrize("path", ["/chat/events", "/chat/get/0"])
async def test_a_503_at_max_clients_under_chat_is_not_cached(get, path):
    response = await (await get(path)).finish()
    plain_refusal(response, 503, "try again later")
    assert response.headers["Retry-After"] == "5"


# --- posting too fast: 429 ---------------------------------------------------------------

@pytest.mark.settings(post_rate=0.5, post_burst=2)
@pytest.mark.gen_test
async def test_past_its_burst_an_address_gets_429_with_retry_after_and_nothing_is_stored(post, app):
    for text in (b"one", b"two"):
        assert (await post(b"message=" + text, FORM)).status == 200
    response = await post(b"message=three", FORM)
    plain_refusal(response, 429, "more than 0.5 posts a second from one address; try again in 2 s")
    assert response.headers["Retry-After"] == "2"  # whole seconds until the next token
    assert app.history.count == 2 and app.history.since(0) == ["one", "two"]
    # Refused before its body is read, so before it can be found malformed.
    plain_refusal(await post(b"", {}), 429, "try again in 2 s")


@pytest.mark.settings(post_rate=0)
@pytest.mark.gen_test
async def test_post_rate_0_lets_every_post_through(post, app):
    for n in range(40):
        assert (await post(b"message=%d" % n, FORM)).status == 200
    assert app.history.count == 40


# --- the server's log: one line per refused request ---------------------------------------

REFUSED = {
    "an empty message": ("/chat/post", b"message=", FORM, 400, "message is missing or empty"),
    "a cross-site post": ("/chat/post", b"message=x", FORM | {"Sec-Fetch-Site": "cross-site"}, 403,
                          "Sec-Fetch-Site cross-site & origin None not allowed"),
    "a message too long": ("/chat/post", b"message=" + b"x" * 2001, FORM, 413, "message is over 2000 characters"),
    "a malformed path": ("/chat/get/abc", b"", {}, 404, None),
    "a file outside static/": ("/static/..%2fapp.py", b"", {}, 403, "../app.py is not in root static directory"),
}


@pytest.mark.gen_test
@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
async def test_a_refused_request_is_one_line_of_the_log_with_its_reason(post, get, caplog, case):
    """Tornado logs an HTTPError as a warning of its own, besides the access
    log's line: a refusal is one line, the access log's, with the reason."""
    path, body, headers, status, reason = case
    with caplog.at_level(logging.DEBUG):
        if body:
            response = await post(body, headers, path=path)
        else:
            response = await (await get(path)).finish()
    assert response.status == status, response
    lines = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert [record.name for record in lines] == ["tornado.access"], caplog.text
    assert lines[0].getMessage().startswith(f"{status} "), caplog.text
    assert reason is None or lines[0].getMessage().endswith(f": {reason}"), caplog.text
