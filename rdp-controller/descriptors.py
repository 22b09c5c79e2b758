"""Connection descriptors: where to connect, a one-time token, and the ``.rdp`` file.

With the relay on (``relay`` mode) a descriptor names the relay's public address and its token
travels in the X.224 routing token (``loadbalanceinfo``), so every connection passes the relay,
which redeems the token once. With the relay off (``direct`` mode) it names the host itself:
the controller then cannot see connections.
"""

from __future__ import annotations

from typing import Any

from protocol.rdpfile import AudioMode, render_rdp_file
from security.connection_tokens import ConnectionTokenStore

from .models import ConnectionDescriptor, ConnectionMode
from .server_registry import ServerRegistry

Document = dict[str, Any]


def rdp_file_for(session: Document, host: str, port: int, *, token: str | None) -> str:
    config = session["session_config"]
    width, height = (int(part) for part in config["display_resolution"].split("x"))
    return render_rdp_file(
        host=host,
        port=port,
        username=config.get("host_username"),
        width=width,
        height=height,
        color_depth=config["color_depth"],
        audio_mode=AudioMode.PLAY_ON_CLIENT if config["audio_enabled"] else AudioMode.DO_NOT_PLAY,
        redirect_clipboard=config["clipboard_enabled"],
        redirect_printers=config.get("printer_enabled", False),
        redirect_smartcards=config.get("smartcard_enabled", False),
        drives="*" if config["file_transfer_enabled"] else "",
        token=token,
    )


class DescriptorIssuer:
    def __init__(
        self,
        tokens: ConnectionTokenStore,
        servers: ServerRegistry,
        *,
        token_ttl: int,
        relay_address: tuple[str, int] | None,
    ):
        self.tokens = tokens
        self.servers = servers
        self.token_ttl = token_ttl
        self.relay_address = relay_address
        self.mode = ConnectionMode.RELAY if relay_address else ConnectionMode.DIRECT

    async def issue(self, session: Document) -> ConnectionDescriptor:
        server = await self.servers.get_document(session["server_id"])
        payload = {
            "connection_id": session["connection_id"],
            "server_id": server["server_id"],
            "user_id": session["user_id"],
            "address": server["address"],
            "port": server["port"],
        }
        token, expires_at = await self.tokens.issue(session["session_id"], payload, self.token_ttl)
        host, port = self.relay_address or (server["address"], server["port"])
        return ConnectionDescriptor(
            mode=self.mode,
            session_id=session["session_id"],
            connection_id=session["connection_id"],
            server_id=server["server_id"],
            address=host,
            port=port,
            token=token,
            token_expires_at=expires_at,
            rdp_file=rdp_file_for(session, host, port, token=token),
        )

    async def rdp_file(self, session: Document) -> str:
        """The ``.rdp`` file: in relay mode with a fresh token (there is no path around the relay)."""
        if self.relay_address:
            return (await self.issue(session)).rdp_file
        server = await self.servers.get_document(session["server_id"])
        return rdp_file_for(session, server["address"], server["port"], token=None)

    async def revoke(self, session_id: str) -> int:
        return await self.tokens.revoke_session(session_id)
