"""Write Microsoft ``.rdp`` connection files.

Each line is ``name:type:value`` with type ``i`` (integer) or ``s`` (string), CRLF line
endings as mstsc writes them. Clients ignore names they do not know.

The one-time connection token goes into ``loadbalanceinfo:s:``: mstsc and FreeRDP send that
value, followed by CRLF, as the routing token of the X.224 Connection Request, which is how
RD Connection Broker receives its routing data; a gateway or broker in front of the hosts
can read it with :func:`protocol.x224.decode_connection_request`. xrdp 0.9 accepts and
ignores a routing token. Because the X.224 length indicator is one byte, the token must stay
short (:data:`MAX_TOKEN_LENGTH`).
"""

from __future__ import annotations

import ipaddress
import re
from enum import IntEnum
from typing import Final

from protocol.errors import ProtocolError

#: Routing token + CRLF + RDP_NEG_REQ + correlation info must fit an X.224 LI of 254.
MAX_TOKEN_LENGTH: Final = 200
_CONTROL_RE: Final = re.compile(r"[\x00-\x1f\x7f]")
_TOKEN_RE: Final = re.compile(r"[A-Za-z0-9._~+/=:-]+")
_HOST_RE: Final = re.compile(r"[A-Za-z0-9._-]+")
_COLOR_DEPTHS: Final = frozenset({8, 15, 16, 24, 32})
_MIN_SIDE: Final = 200
_MAX_SIDE: Final = 8192


class AudioMode(IntEnum):
    """``audiomode``: where remote audio plays."""

    PLAY_ON_CLIENT = 0
    PLAY_ON_SERVER = 1
    DO_NOT_PLAY = 2


class AuthenticationLevel(IntEnum):
    """``authentication level``: what the client does when server authentication fails."""

    CONNECT_WITHOUT_WARNING = 0
    DO_NOT_CONNECT = 1
    WARN = 2
    NO_REQUIREMENT = 3


def _text(name: str, value: str) -> str:
    if _CONTROL_RE.search(value):
        raise ProtocolError(f".rdp value for {name!r} must not contain CR, LF or other control characters")
    return value


def _int_in(name: str, value: int, low: int, high: int) -> int:
    if isinstance(value, bool) or not low <= value <= high:
        raise ProtocolError(f".rdp value for {name!r} must be an integer in {low}..{high}, got {value!r}")
    return int(value)


def _full_address(host: str, port: int) -> str:
    _text("full address", host)
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if _HOST_RE.fullmatch(host) is None:
            raise ProtocolError(f"host {host!r} is not a DNS name or an IP address") from None
        name = host
    else:
        name = f"[{address}]" if address.version == 6 else str(address)
    return f"{name}:{_int_in('port', port, 1, 65535)}"


def render_rdp_file(
    *,
    host: str,
    port: int = 3389,
    username: str | None = None,
    width: int = 1920,
    height: int = 1080,
    fullscreen: bool = False,
    color_depth: int = 32,
    audio_mode: AudioMode = AudioMode.PLAY_ON_CLIENT,
    redirect_clipboard: bool = True,
    redirect_printers: bool = False,
    redirect_smartcards: bool = False,
    drives: str = "",
    authentication_level: AuthenticationLevel = AuthenticationLevel.WARN,
    prompt_for_credentials: bool = False,
    token: str | None = None,
) -> str:
    """Render a ``.rdp`` file (CRLF line endings, ending with CRLF).

    ``drives`` is the ``drivestoredirect`` value: ``""`` redirects none, ``"*"`` all,
    ``"C:\\;D:\\;"`` some. ``token`` becomes ``loadbalanceinfo`` (see the module docstring).
    Raises :class:`ProtocolError` (a ``ValueError``) naming the offending field.
    """
    if color_depth not in _COLOR_DEPTHS:
        raise ProtocolError(f".rdp session bpp must be one of {sorted(_COLOR_DEPTHS)}, got {color_depth!r}")
    lines = [
        f"screen mode id:i:{2 if fullscreen else 1}",
        f"desktopwidth:i:{_int_in('desktopwidth', width, _MIN_SIDE, _MAX_SIDE)}",
        f"desktopheight:i:{_int_in('desktopheight', height, _MIN_SIDE, _MAX_SIDE)}",
        f"session bpp:i:{color_depth}",
        f"full address:s:{_full_address(host, port)}",
        f"audiomode:i:{_int_in('audiomode', audio_mode, 0, 2)}",
        f"redirectclipboard:i:{int(bool(redirect_clipboard))}",
        # Written always: mstsc redirects printers and smart cards unless told not to.
        f"redirectprinters:i:{int(bool(redirect_printers))}",
        f"redirectsmartcards:i:{int(bool(redirect_smartcards))}",
        f"drivestoredirect:s:{_text('drivestoredirect', drives)}",
        f"authentication level:i:{_int_in('authentication level', authentication_level, 0, 3)}",
        f"prompt for credentials:i:{int(bool(prompt_for_credentials))}",
    ]
    if username is not None:
        lines.append(f"username:s:{_text('username', username)}")
    if token is not None:
        if len(token) > MAX_TOKEN_LENGTH or _TOKEN_RE.fullmatch(token) is None:
            raise ProtocolError(
                f".rdp token must be 1..{MAX_TOKEN_LENGTH} characters of A-Z a-z 0-9 . _ ~ + / = : -"
                " (it travels in the X.224 routing token)"
            )
        lines.append(f"loadbalanceinfo:s:{token}")
    return "\r\n".join(lines) + "\r\n"
