import json

import pytest


@pytest.mark.gen_test
async def test_post_then_get(http_client, base_url, app):
    response = await http_client.fetch(base_url + "/chat/post", method="POST", body="message=hi")
    assert json.loads(response.body) == {"id": 0}
    response = await http_client.fetch(base_url + "/chat/get/0")
    assert response.body == b"hi"
