"""LockClient turns any answer that is not the lock API's into LockClientError, never a traceback.

The HTTP transport is the narrow boundary replaced here: a server that answers HTML or a JSON list
with an error status is what a wrong ``--server`` URL gives.
"""

from __future__ import annotations

import httpx
import pytest

from lablease.client.lockclient import LockClient, LockClientError


def _client(status: int, content: bytes, content_type: str) -> LockClient:
    client = LockClient("http://127.0.0.1:9")
    client._http = httpx.Client(base_url=client.base_url, transport=httpx.MockTransport(
        lambda request: httpx.Response(status, content=content, headers={"content-type": content_type})))
    return client


def test_a_successful_answer_that_is_not_json_names_the_server_as_the_likely_mistake():
    with _client(200, b"<html>hello</html>", "text/html") as client, \
            pytest.raises(LockClientError, match="not JSON; is http://127.0.0.1:9 a lablease lock server"):
        client.list()


@pytest.mark.parametrize("content", [b"[1, 2]", b"<html>nope</html>", b'"text"'])
def test_an_error_answer_without_a_message_object_gives_its_status_and_text(content):
    with _client(404, content, "application/json") as client, pytest.raises(LockClientError, match="GET /nodes/: 404"):
        client.list()


def test_an_error_answer_gives_the_servers_message():
    with _client(503, b'{"message": "only 1 nodes available"}', "application/json") as client, \
            pytest.raises(LockClientError, match="503 only 1 nodes available"):
        client.lock_many(2, "t", "me", None)


def test_the_admin_token_never_appears_in_the_clients_repr():
    with LockClient("http://127.0.0.1:9", admin_token="adm-secret-42") as client:
        assert "adm-secret-42" not in repr(client) and "127.0.0.1:9" in repr(client)
