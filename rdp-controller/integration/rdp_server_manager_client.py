"""
rdp-server-manager client: provisions, starts, stops and deletes dedicated RDP servers.

Contract (as rdp-server-manager serves it):
``POST /servers`` ``{user_id, session_id, display_config?, resource_limits?}`` ->
``{server_id, status, port, created_at, connection_info}``; ``GET /servers/{id}``;
``GET /servers``; ``POST /servers/{id}/start|stop|restart``; ``DELETE /servers/{id}``;
``GET /health``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Self
from urllib.parse import quote

import httpx

from .deliverable import DeliverableCall, Payload
from .errors import ServiceError
from .service_base import ServiceClientBase

logger = logging.getLogger(__name__)


def _server_path(server_id: str, action: str = "") -> str:
    return f"/servers/{quote(server_id, safe='')}" + (f"/{action}" if action else "")


class RdpServerManagerClient(ServiceClientBase):
    """Client for rdp-server-manager."""

    async def create_server(
        self,
        *,
        user_id: str,
        session_id: str,
        display_config: dict[str, Any] | None = None,
        resource_limits: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Provision a server; returns ``{server_id, status, port, created_at, connection_info}``."""
        body: dict[str, Any] = {"user_id": user_id, "session_id": session_id}
        if display_config is not None:
            body["display_config"] = display_config
        if resource_limits is not None:
            body["resource_limits"] = resource_limits
        created = await self._make_request(
            "POST", "/servers", json_data=body, idempotency_key=idempotency_key
        )
        if not isinstance(created.get("server_id"), str) or not created["server_id"]:
            raise ServiceError(f"{self.peer_name}: POST /servers answered without a server_id")
        return created

    def endpoint(self, created: dict[str, Any]) -> tuple[str, int]:
        """Where RDP clients reach a server ``create_server`` answered: its ``connection_info`` host,
        else this manager's own host, and its port; ``ValueError`` when it names no usable port."""
        info = created.get("connection_info")
        info = info if isinstance(info, dict) else {}
        host = next(
            (info[key] for key in ("host", "address", "hostname", "ip") if isinstance(info.get(key), str)),
            None,
        )
        if not host:
            host = httpx.URL(self.base_url).host
        port = created.get("port", info.get("port"))
        if isinstance(port, str) and port.isdigit():
            port = int(port)
        if not isinstance(port, int) or isinstance(port, bool):
            raise ValueError(f"rdp-server-manager answered no usable port: {port!r}")
        return host, port

    async def get_server(self, server_id: str) -> dict[str, Any]:
        return await self._make_request("GET", _server_path(server_id))

    async def list_servers(self) -> list[dict[str, Any]]:
        """The servers it manages (it may answer a list or ``{"servers": [...]}``)."""
        answer = await self._request("GET", "/servers")
        servers = answer.get("servers") if isinstance(answer, dict) else answer
        if not isinstance(servers, list) or not all(isinstance(item, dict) for item in servers):
            raise ServiceError(
                f"{self.peer_name}: GET /servers answered something that is not a list of servers"
            )
        return servers

    async def start_server(self, server_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        return await self._make_request(
            "POST", _server_path(server_id, "start"), idempotency_key=idempotency_key
        )

    async def stop_server(self, server_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        return await self._make_request(
            "POST", _server_path(server_id, "stop"), idempotency_key=idempotency_key
        )

    async def restart_server(self, server_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        return await self._make_request(
            "POST", _server_path(server_id, "restart"), idempotency_key=idempotency_key
        )

    async def delete_server(self, server_id: str, *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Delete a server; ``ServiceNotFoundError`` when it is gone already."""
        return await self._make_request("DELETE", _server_path(server_id), idempotency_key=idempotency_key)

    @classmethod
    def deliverable_calls(cls, client: Callable[[], Self]) -> dict[str, DeliverableCall]:
        """Delete; a 404: the server is gone already. (A dedicated server's release goes through the
        warm pool, which removes it from the server pool first.)"""

        async def delete(payload: Payload, key: str) -> None:
            await client().delete_server(payload["server_id"], idempotency_key=key)

        return {"delete_server": DeliverableCall(delete, not_found_is_done=True)}
