"""The one exception type of the wire code."""

from __future__ import annotations


class ProtocolError(ValueError):
    """Malformed or unexpected RDP wire data, or a value that cannot be encoded.

    Every decoder in :mod:`protocol` raises only this for bad input (never ``IndexError``,
    ``struct.error`` ...), so a caller needs exactly one ``except`` clause. It is a
    ``ValueError`` because bad data is a bad value.
    """
