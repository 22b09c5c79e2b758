""".rdp file rendering."""

from __future__ import annotations

import pytest

from protocol.errors import ProtocolError
from protocol.negotiation import NegotiationRequest, NegRequestFlags
from protocol.rdpfile import MAX_TOKEN_LENGTH, AudioMode, AuthenticationLevel, render_rdp_file
from protocol.x224 import ConnectionRequest, decode_connection_request, encode_connection_request


def _parse(text: str) -> dict[str, str]:
    assert text.endswith("\r\n")
    lines = text[:-2].split("\r\n")
    assert all("\n" not in line and "\r" not in line for line in lines)
    return {line.split(":", 2)[0]: line for line in lines}


def test_full_file_with_crlf_line_endings() -> None:
    text = render_rdp_file(
        host="rdp-01.example",
        port=3390,
        username="EXAMPLE\\alice",
        width=1280,
        height=800,
        color_depth=24,
        audio_mode=AudioMode.DO_NOT_PLAY,
        redirect_clipboard=False,
        drives="*",
        authentication_level=AuthenticationLevel.DO_NOT_CONNECT,
        prompt_for_credentials=True,
        token="tok_9f8e.7d-6c",
    )
    assert text == (
        "screen mode id:i:1\r\n"
        "desktopwidth:i:1280\r\n"
        "desktopheight:i:800\r\n"
        "session bpp:i:24\r\n"
        "full address:s:rdp-01.example:3390\r\n"
        "audiomode:i:2\r\n"
        "redirectclipboard:i:0\r\n"
        "redirectprinters:i:0\r\n"
        "redirectsmartcards:i:0\r\n"
        "drivestoredirect:s:*\r\n"
        "authentication level:i:1\r\n"
        "prompt for credentials:i:1\r\n"
        "username:s:EXAMPLE\\alice\r\n"
        "loadbalanceinfo:s:tok_9f8e.7d-6c\r\n"
    )


def test_defaults() -> None:
    lines = _parse(render_rdp_file(host="10.0.0.5"))
    assert lines["full address"] == "full address:s:10.0.0.5:3389"
    assert lines["screen mode id"] == "screen mode id:i:1"
    assert lines["session bpp"] == "session bpp:i:32"
    assert lines["redirectclipboard"] == "redirectclipboard:i:1"
    assert lines["drivestoredirect"] == "drivestoredirect:s:"
    assert lines["authentication level"] == "authentication level:i:2"
    assert "username" not in lines
    assert "loadbalanceinfo" not in lines


def test_fullscreen_and_ipv6_address() -> None:
    lines = _parse(render_rdp_file(host="::1", port=3389, fullscreen=True))
    assert lines["full address"] == "full address:s:[::1]:3389"
    assert lines["screen mode id"] == "screen mode id:i:2"
    assert _parse(render_rdp_file(host="[fd00::5]"))["full address"] == "full address:s:[fd00::5]:3389"


def test_longest_token_still_fits_a_connection_request_with_correlation_info() -> None:
    token = "t" * MAX_TOKEN_LENGTH
    assert f"loadbalanceinfo:s:{token}\r\n" in render_rdp_file(host="h", token=token)
    # What mstsc sends for it: the routing token + CRLF, RDP_NEG_REQ and correlation info.
    request = ConnectionRequest(
        routing_token=token.encode() + b"\r\n",
        negotiation=NegotiationRequest(
            flags=NegRequestFlags.CORRELATION_INFO_PRESENT, correlation_id=b"\x11" * 16
        ),
    )
    assert decode_connection_request(encode_connection_request(request)) == request


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"username": "alice\r\nfull address:s:evil"}, "'username' must not contain CR, LF"),
        ({"username": "a\nb"}, "'username'"),
        ({"drives": "C:\\\r\n"}, "'drivestoredirect'"),
        ({"host": "h\r\nx"}, "'full address'"),
        ({"host": "evil host"}, "not a DNS name or an IP address"),
        ({"host": ""}, "not a DNS name"),
        ({"port": 0}, "'port' must be an integer in 1..65535"),
        ({"port": 65536}, "'port'"),
        ({"width": 100}, "'desktopwidth' must be an integer in 200..8192"),
        ({"height": 9000}, "'desktopheight'"),
        ({"color_depth": 12}, "session bpp must be one of"),
        ({"audio_mode": 3}, "'audiomode'"),
        ({"authentication_level": 4}, "'authentication level'"),
        ({"authentication_level": True}, "'authentication level'"),
        ({"token": "a\r\nb"}, "token must be"),
        ({"token": ""}, "token must be"),
        ({"token": "has space"}, "token must be"),
        ({"token": "t" * (MAX_TOKEN_LENGTH + 1)}, "token must be"),
    ],
)
def test_bad_values_are_refused(kwargs: dict[str, object], message: str) -> None:
    arguments: dict[str, object] = {"host": "rdp-01.example", **kwargs}
    with pytest.raises(ProtocolError, match=message):
        render_rdp_file(**arguments)  # type: ignore[arg-type]
    assert issubclass(ProtocolError, ValueError)


def test_printers_and_smart_cards_are_off_unless_asked_for() -> None:
    """mstsc redirects both by default: the file must say 0 unless the session enables them."""
    default = _parse(render_rdp_file(host="h"))
    assert default["redirectprinters"] == "redirectprinters:i:0"
    assert default["redirectsmartcards"] == "redirectsmartcards:i:0"
    enabled = _parse(render_rdp_file(host="h", redirect_printers=True, redirect_smartcards=True))
    assert enabled["redirectprinters"] == "redirectprinters:i:1"
    assert enabled["redirectsmartcards"] == "redirectsmartcards:i:1"
