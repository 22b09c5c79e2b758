"""Connection descriptors: where to connect, a one-time token, and the ``.rdp`` file."""

from __future__ import annotations

from typing import Any

from protocol.rdpfile import AudioMode, render_rdp_file
from security.connection_tokens import ConnectionTokenStore

from .connection_manager import ConnectionManager
from .models import ConnectionDescriptor

Document = dict[str, Any]


def rdp_file_for(session: Document, server: Document, *, token: str | None) -> str:
    config = session["session_config"]
    width, height = (int(part) for part in config["display_resolution"].split("x"))
    return render_rdp_file(
        host=server["address"],
        port=server["port"],
        username=session["user_id"],
        width=width,
        height=height,
        color_depth=config["color_depth"],
        audio_mode=AudioMode.PLAY_ON_CLIENT if config["audio_enabled"] else AudioMode.DO_NOT_PLAY,
        redirect_clipboard=config["clipboard_enabled"],
        drives="*" if config["file_transfer_enabled"] else "",
        token=token,
    )


class DescriptorIssuer:
    def __init__(self, tokens: ConnectionTokenStore, connections: ConnectionManager, *, token_ttl: int):
        self.tokens = tokens
        self.connections = connections
        self.token_ttl = token_ttl

    async def issue(self, session: Document) -> ConnectionDescriptor:
        server = await self.connections.get_document(session["server_id"])
        payload = {
            "connection_id": session["connection_id"],
            "server_id": server["server_id"],
            "user_id": session["user_id"],
            "address": server["address"],
            "port": server["port"],
        }
        token, expires_at = await self.tokens.issue(session["session_id"], payload, self.token_ttl)
        return ConnectionDescriptor(
            session_id=session["session_id"],
            connection_id=session["connection_id"],
            server_id=server["server_id"],
            address=server["address"],
            port=server["port"],
            token=token,
            token_expires_at=expires_at,
            rdp_file=rdp_file_for(session, server, token=token),
        )

    async def rdp_file(self, session: Document) -> str:
        server = await self.connections.get_document(session["server_id"])
        return rdp_file_for(session, server, token=None)
