"""The chat's long-polling API, section 1 of docs/protocol.md: /chat/post,
/chat/get/N and /chat/since/N, as a browser or curl sees them."""

import asyncio
import json
from urllib.parse import urlencode

import pytest

from tests.client import wait_until_async

NO_STORE = "nothing is stored on any error"


def clean(response):
    """No error page leaks a traceback, and no request is a server error."""
    assert response.code < 500, response.body
    assert b"Traceback" not in (response.body or b"")
    return response


async def fetch(http_client, url, **kwargs):
    return clean(await http_client.fetch(url, raise_error=False, **kwargs))


async def post_form(http_client, url, fields):
    return await fetch(http_client, url, method="POST", body=urlencode(fields, encoding="utf-8"))


def multipart(fields: dict) -> tuple[str, bytes]:
    boundary = "----comet-test-boundary"
    parts = b"".join(
        b"--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
        % (boundary.encode(), name.encode(), value.encode("utf-8"))
        for name, value in fields.items()
    )
    return f"multipart/form-data; boundary={boundary}", parts + b"--%s--\r\n" % boundary.encode()


def resync_headers(response):
    return response.headers.get("X-First-Message"), response.headers.get("X-Next-Message")


# POST /chat/post ------------------------------------------------------------


@pytest.mark.gen_test
async def test_post_answers_json_id_from_zero(http_client, url):
    first = await post_form(http_client, url("/chat/post"), {"message": "hello"})
    second = await post_form(http_client, url("/chat/post"), {"message": "again"})
    assert first.code == second.code == 200
    assert first.headers["Content-Type"].startswith("application/json")
    assert json.loads(first.body) == {"id": 0}
    assert json.loads(second.body) == {"id": 1}


@pytest.mark.gen_test
async def test_post_urlencoded_keeps_text_exactly(http_client, url, app):
    text = "  h\u00e9llo\n w\u00f6rld \u2603\r\n\ttabs & = + %20  \n"
    response = await post_form(http_client, url("/chat/post"), {"message": text})
    assert response.code == 200
    got = await fetch(http_client, url("/chat/get/0"))
    assert got.body == text.encode("utf-8")


@pytest.mark.gen_test
async def test_post_multipart_keeps_text_exactly(http_client, url):
    text = " multi\u00adpart \u65e5\u672c\n\r\nline  "
    content_type, body = multipart({"message": text})
    response = await fetch(http_client, url("/chat/post"), method="POST", body=body,
                           headers={"Content-Type": content_type})
    assert response.code == 200 and json.loads(response.body) == {"id": 0}
    got = await fetch(http_client, url("/chat/get/0"))
    assert got.body == text.encode("utf-8")


@pytest.mark.parametrize(
    "body",
    [b"", b"other=1", b"message=", b"message=%FF%FE", b"message=caf%C3"],
    ids=["no-body", "missing", "empty", "invalid-utf8", "truncated-utf8"],
)
@pytest.mark.gen_test
async def test_post_bad_message_is_400_and_stores_nothing(http_client, url, app, body):
    response = await fetch(http_client, url("/chat/post"), method="POST", body=body)
    assert response.code == 400
    assert app.history.count == 0, NO_STORE


@pytest.mark.gen_test
async def test_post_empty_multipart_message_is_400(http_client, url, app):
    content_type, body = multipart({"message": ""})
    response = await fetch(http_client, url("/chat/post"), method="POST", body=body,
                           headers={"Content-Type": content_type})
    assert response.code == 400
    assert app.history.count == 0, NO_STORE


@pytest.mark.gen_test
async def test_post_exactly_max_message_code_points_is_accepted(http_client, url, app):
    text = "\u2603" * 2000  # 2000 code points, 6000 bytes
    response = await post_form(http_client, url("/chat/post"), {"message": text})
    assert response.code == 200
    assert app.history[0] == text


@pytest.mark.gen_test
async def test_post_one_code_point_over_max_message_is_413(http_client, url, app):
    response = await post_form(http_client, url("/chat/post"), {"message": "\u2603" * 2001})
    assert response.code == 413
    assert app.history.count == 0, NO_STORE


@pytest.mark.settings(max_message=5)
@pytest.mark.gen_test
async def test_max_message_counts_code_points_not_bytes(http_client, url, app):
    fits = await post_form(http_client, url("/chat/post"), {"message": "\U0001f600" * 5})  # 20 bytes
    over = await post_form(http_client, url("/chat/post"), {"message": "\u00e9" * 6})  # 12 bytes
    assert (fits.code, over.code) == (200, 413)
    assert app.history.count == 1, NO_STORE


@pytest.mark.settings(max_body=1024)
@pytest.mark.gen_test
async def test_post_over_body_limit_is_413(http_client, url, app):
    response = await post_form(http_client, url("/chat/post"), {"message": "x" * 1500})
    assert response.code == 413
    assert app.history.count == 0, NO_STORE


@pytest.mark.gen_test
async def test_post_of_a_megabyte_is_413(http_client, url, app):
    response = await post_form(http_client, url("/chat/post"), {"message": "x" * (1 << 20)})
    assert response.code == 413
    assert app.history.count == 0, NO_STORE


@pytest.mark.settings(max_body=1024)
@pytest.mark.gen_test
async def test_chunked_post_over_body_limit_is_413(http_client, url, app):
    async def chunks(write):
        await write(b"message=")
        for _ in range(4):
            await write(b"x" * 500)

    response = await fetch(http_client, url("/chat/post"), method="POST", body_producer=chunks)
    assert response.code == 413
    assert app.history.count == 0, NO_STORE


@pytest.mark.gen_test
async def test_chunked_post_is_accepted(http_client, url, app):
    async def chunks(write):
        await write(b"message=in+")
        await write(b"pieces")

    response = await fetch(http_client, url("/chat/post"), method="POST", body_producer=chunks)
    assert (response.code, json.loads(response.body)) == (200, {"id": 0})
    assert app.history[0] == "in pieces"


@pytest.mark.settings(max_body=1024)
@pytest.mark.gen_test
async def test_post_at_body_limit_is_accepted(http_client, url, app):
    body = b"message=" + b"x" * (1024 - len(b"message="))
    response = await fetch(http_client, url("/chat/post"), method="POST", body=body)
    assert response.code == 200
    assert app.history[0] == "x" * 1016


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.gen_test
async def test_post_endpoint_refuses_other_methods_with_405(http_client, url, app, method):
    body = b"message=hi" if method in ("PUT", "PATCH") else None
    response = await fetch(http_client, url("/chat/post"), method=method, body=body,
                           allow_nonstandard_methods=True)
    assert response.code == 405
    assert app.history.count == 0, NO_STORE


# GET /chat/get/N ------------------------------------------------------------


@pytest.mark.gen_test
async def test_get_existing_message_at_once_as_utf8_text(http_client, url, app):
    app.history.append("caf\u00e9 \u2603")
    response = await fetch(http_client, url("/chat/get/0"))
    assert response.code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=UTF-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.body == "caf\u00e9 \u2603".encode("utf-8")


@pytest.mark.gen_test
async def test_get_next_message_is_held_until_posted(http_client, url, app):
    app.history.append("zero")
    held = asyncio.ensure_future(fetch(http_client, url("/chat/get/1")))
    assert await wait_until_async(lambda: app.clients.counts["chat.waiting"] == 1)
    assert not held.done()
    posted = await post_form(http_client, url("/chat/post"), {"message": "one"})
    assert json.loads(posted.body) == {"id": 1}
    response = await asyncio.wait_for(held, 2)
    assert response.code == 200
    assert response.headers["Content-Type"] == "text/plain; charset=UTF-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.body == b"one"
    assert app.clients.counts["chat.waiting"] == 0


@pytest.mark.gen_test
async def test_several_held_clients_all_get_the_message(http_client, url, app):
    held = [asyncio.ensure_future(fetch(http_client, url("/chat/get/0"))) for _ in range(3)]
    assert await wait_until_async(lambda: app.clients.counts["chat.waiting"] == 3)
    await post_form(http_client, url("/chat/post"), {"message": "all of you"})
    responses = await asyncio.wait_for(asyncio.gather(*held), 2)
    assert [(r.code, r.body) for r in responses] == [(200, b"all of you")] * 3


@pytest.mark.settings(history=2)
@pytest.mark.gen_test
async def test_a_held_get_whose_message_aged_out_while_it_slept_is_410(http_client, url, app):
    held = asyncio.ensure_future(fetch(http_client, url("/chat/get/0")))
    assert await wait_until_async(lambda: app.clients.counts["chat.waiting"] == 1)
    for number in range(3):  # a burst, in one turn of the loop: message 0 is gone before the waiter wakes
        app.history.append(f"m{number}")
    response = await asyncio.wait_for(held, 2)
    assert response.code == 410
    assert resync_headers(response) == ("1", "3")


@pytest.mark.gen_test
async def test_a_held_get_whose_history_was_replaced_while_it_slept_is_410(http_client, url, app):
    held = asyncio.ensure_future(fetch(http_client, url("/chat/get/0")))
    assert await wait_until_async(lambda: app.clients.counts["chat.waiting"] == 1)
    app.history.restart_at(0, ["from another history"], epoch="F")  # as a Redis copy does
    response = await asyncio.wait_for(held, 2)
    assert response.code == 410
    assert response.headers["X-Chat-Epoch"] == "F"
    assert resync_headers(response) == ("0", "1")


@pytest.mark.settings(poll_timeout=0.3)
@pytest.mark.gen_test
async def test_get_held_past_poll_timeout_is_204(http_client, url, app):
    response = await fetch(http_client, url("/chat/get/0"))
    assert response.code == 204
    assert response.body == b""
    assert response.headers["Cache-Control"] == "no-cache"
    assert app.clients.counts["chat.waiting"] == 0


@pytest.mark.parametrize("endpoint", ["get", "since"])
@pytest.mark.gen_test
async def test_past_count_is_404_with_resync_headers(http_client, url, app, endpoint):
    app.history.append("only")
    response = await fetch(http_client, url(f"/chat/{endpoint}/2"))
    assert response.code == 404
    assert resync_headers(response) == ("0", "1")
    assert response.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize("endpoint", ["get", "since"])
@pytest.mark.settings(history=3)
@pytest.mark.gen_test
async def test_aged_out_is_410_with_resync_headers(http_client, url, app, endpoint):
    for number in range(5):
        app.history.append(f"m{number}")
    response = await fetch(http_client, url(f"/chat/{endpoint}/1"))
    assert response.code == 410
    assert resync_headers(response) == ("2", "5")
    assert response.headers["Cache-Control"] == "no-cache"


@pytest.mark.settings(history=3)
@pytest.mark.gen_test
async def test_history_keeps_only_the_last_messages(http_client, url, app):
    for number in range(5):
        await post_form(http_client, url("/chat/post"), {"message": f"m{number}"})
    kept = [await fetch(http_client, url(f"/chat/get/{n}")) for n in range(2, 5)]
    assert [(r.code, r.body) for r in kept] == [(200, b"m2"), (200, b"m3"), (200, b"m4")]
    assert (await fetch(http_client, url("/chat/get/0"))).code == 410


@pytest.mark.parametrize("digits", [30, 5000])
@pytest.mark.gen_test
async def test_get_with_a_huge_number_is_404_not_500(http_client, url, app, digits):
    response = await fetch(http_client, url("/chat/get/" + "9" * digits))
    assert response.code == 404
    assert resync_headers(response) == ("0", "0")


@pytest.mark.gen_test
async def test_get_with_leading_zeros_is_the_same_message(http_client, url, app):
    app.history.append("zero")
    app.history.append("one")
    response = await fetch(http_client, url("/chat/get/" + "0" * 30 + "1"))
    assert (response.code, response.body) == (200, b"one")


@pytest.mark.parametrize("path", ["abc", "-1", "1.5", "", "1/", "%D9%A1", "0x1", "+1", "1%20"])
@pytest.mark.gen_test
async def test_get_with_non_digit_number_is_404(http_client, url, app, path):
    app.history.append("zero")
    response = await fetch(http_client, url("/chat/get/" + path))
    assert response.code == 404


@pytest.mark.settings(poll_timeout=30)  # the 204 timer must not be what frees it
@pytest.mark.gen_test
async def test_held_get_that_disconnects_is_forgotten_at_once(get, app):
    poll = await get("/chat/get/0")
    assert await wait_until_async(lambda: app.clients.counts["chat.waiting"] == 1)
    await poll.close()
    assert await wait_until_async(lambda: app.clients.counts["chat.waiting"] == 0, timeout=1.0)
    assert app.history.count == 0  # forgotten with no message having to come first


# GET /chat/since/N ----------------------------------------------------------


@pytest.mark.gen_test
async def test_since_returns_every_message_from_n_as_json(http_client, url, app):
    for text in ["a", "b\nb", "c\u2603"]:
        app.history.append(text)
    response = await fetch(http_client, url("/chat/since/1"))
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Cache-Control"] == "no-cache"
    assert json.loads(response.body) == {"epoch": "E", "first": 0, "next": 3, "messages": ["b\nb", "c\u2603"]}


@pytest.mark.settings(poll_timeout=30)
@pytest.mark.gen_test(timeout=3)
async def test_since_count_is_an_empty_list_at_once(http_client, url, app):
    app.history.append("a")
    response = await asyncio.wait_for(fetch(http_client, url("/chat/since/1")), 1)
    assert response.code == 200
    assert json.loads(response.body) == {"epoch": "E", "first": 0, "next": 1, "messages": []}


@pytest.mark.settings(poll_timeout=30)
@pytest.mark.gen_test(timeout=3)
async def test_since_zero_on_empty_history_is_answered_at_once(http_client, url):
    response = await asyncio.wait_for(fetch(http_client, url("/chat/since/0")), 1)
    assert json.loads(response.body) == {"epoch": "E", "first": 0, "next": 0, "messages": []}


@pytest.mark.settings(history=3)
@pytest.mark.gen_test
async def test_since_first_returns_the_bounded_history(http_client, url, app):
    for number in range(5):
        app.history.append(f"m{number}")
    response = await fetch(http_client, url("/chat/since/2"))
    assert json.loads(response.body) == {"epoch": "E", "first": 2, "next": 5, "messages": ["m2", "m3", "m4"]}


@pytest.mark.parametrize("digits", [30, 5000])
@pytest.mark.gen_test
async def test_since_with_a_huge_number_is_404_not_500(http_client, url, digits):
    response = await fetch(http_client, url("/chat/since/" + "1" * digits))
    assert response.code == 404


@pytest.mark.parametrize("path", ["abc", "-1", "", "%D9%A1"])
@pytest.mark.gen_test
async def test_since_with_non_digit_number_is_404(http_client, url, path):
    assert (await fetch(http_client, url("/chat/since/" + path))).code == 404

