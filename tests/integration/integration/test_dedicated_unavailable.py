"""``DEDICATED_UNAVAILABLE`` has one status, 503, whichever layer finds the capability missing.

With ``RDP_SERVER_MANAGER_URL`` unset there is no warm pool and the session controller refuses a
``dedicated_server: true`` create itself; with a URL set but unusable the warm pool refuses it when
it needs the client. Both are the same answer: 503 ``DEDICATED_UNAVAILABLE``, as openapi.yaml
documents (it was 409 from the controller), and nothing is written or held.
"""

from __future__ import annotations

import pytest

from tests.support.app import SERVICE, register_server, running_app, test_settings

pytestmark = pytest.mark.integration

BODY = {"user_id": "alice", "session_config": {"dedicated_server": True}}


@pytest.mark.parametrize(
    "manager_url",
    [
        pytest.param("", id="unset-refused-by-the-controller"),
        pytest.param("http://rdp-server-manager.test/?q=1", id="unusable-refused-by-the-warm-pool"),
    ],
)
async def test_dedicated_unavailable_is_503_from_every_layer(
    mongo_url: str, redis_url: str, manager_url: str
) -> None:
    settings = test_settings(mongo_url, redis_url, RDP_SERVER_MANAGER_URL=manager_url)
    async with running_app(settings) as (app, client):
        await register_server(client)
        assert (app.state.runtime.creation.dedicated is None) == (not manager_url)
        response = await client.post("/api/v1/sessions", json=BODY, headers=SERVICE)
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "DEDICATED_UNAVAILABLE"
        assert "RDP_SERVER_MANAGER_URL" in error["message"]
        # Nothing was written or held: the user can still create an ordinary session.
        listed = await client.get("/api/v1/sessions", params={"user_id": "alice"}, headers=SERVICE)
        assert listed.json()["items"] == []
        plain = await client.post("/api/v1/sessions", json={"user_id": "alice"}, headers=SERVICE)
        assert plain.status_code == 201, plain.text
