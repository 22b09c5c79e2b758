"""Bearer JWT verification (HS256) and minting.

Tokens are HS256-signed with ``JWT_SECRET_KEY``. The accepted algorithm list is pinned to
``["HS256"]`` and never derived from the token, so ``alg: none`` and algorithm swaps (HS512,
RS256 with the secret used as a "public key", ...) are refused.

Claims:

* required: ``sub`` (non-empty string), ``exp``, ``iat``, ``aud`` (must contain the configured
  audience);
* optional: ``nbf`` (honoured when present), ``jti`` (becomes ``Principal.token_id``), ``roles``;
* every other claim is ignored.

``roles``, when present, must be a list of known role names (``user``, ``operator``,
``service``). A token naming an unknown role is **refused**, not silently reduced: a typo such
as ``"operater"`` or a role from another system would otherwise yield a token that
authenticates but mysteriously cannot do its job, and an issuer that sends roles we do not
understand is misconfigured. A missing ``roles`` claim, or an empty list, means ``user`` - the
least privileged role, which only acts for its own ``sub``.

Every failure raises ``common.errors.Unauthorized`` with a message saying what is wrong
(expired, wrong audience, bad signature, malformed, missing claim, ...). Messages never contain
the token or any part of it.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Final

import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError

from common.errors import Unauthorized
from security.principals import Principal, Role

ALGORITHM: Final = "HS256"
ALLOWED_ALGORITHMS: Final = (ALGORITHM,)
REQUIRED_CLAIMS: Final = ("sub", "exp", "iat", "aud")
REGISTERED_CLAIMS: Final = frozenset({"sub", "exp", "iat", "nbf", "aud", "jti", "roles"})
MIN_SECRET_LENGTH: Final = 32
"""HS256 keys shorter than 32 bytes (256 bits) are weak; the settings refuse them in production."""
MAX_TOKEN_LENGTH: Final = 8192
"""Longer strings are refused before any decoding work."""

_BEARER_HEADER_PATTERN = re.compile(r"^\s*(?P<scheme>\S+)(?:\s+(?P<credentials>\S+))?\s*$")
_DECODE_ERROR_MESSAGES: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"not enough segments", re.I), "token is malformed: expected three dot-separated segments"),
    (re.compile(r"invalid \w+ padding", re.I), "token is malformed: a segment is not valid base64url"),
    (re.compile(r"invalid header string", re.I), "token is malformed: the header is not a JSON object"),
    (re.compile(r"invalid payload string", re.I), "token is malformed: the payload is not a JSON object"),
    (re.compile(r"\(exp\) must be", re.I), "token claim 'exp' must be a number (seconds since the epoch)"),
    (re.compile(r"\(nbf\) must be", re.I), "token claim 'nbf' must be a number (seconds since the epoch)"),
)
_MAX_ROLE_NAME_IN_MESSAGE = 32


def parse_bearer(header_value: str | None) -> str:
    """Return the token from an ``Authorization: Bearer <token>`` header value.

    The scheme is matched case-insensitively. A missing header, another scheme (``Basic``, ...)
    or a value that is not exactly ``<scheme> <token>`` raises ``Unauthorized``.
    """
    if header_value is None or not header_value.strip():
        raise Unauthorized("missing bearer token: send the header 'Authorization: Bearer <token>'")
    match = _BEARER_HEADER_PATTERN.match(header_value)
    if match is None:
        # More than two space-separated parts. Say nothing about the content: it may be a token.
        raise Unauthorized("malformed Authorization header: expected 'Bearer <token>'")
    scheme, credentials = match.group("scheme"), match.group("credentials")
    if credentials is None:
        if scheme.lower() == "bearer":
            raise Unauthorized("malformed Authorization header: no token after 'Bearer'")
        raise Unauthorized("malformed Authorization header: expected 'Bearer <token>'")
    if scheme.lower() != "bearer":
        raise Unauthorized("unsupported Authorization scheme: only 'Bearer <token>' is accepted")
    return credentials


def decode_claims(token: str, *, secret: str, audience: str, leeway: int) -> dict[str, Any]:
    """Verify ``token`` and return its claims (all of them, including unknown ones).

    Checks the HS256 signature, ``exp``/``iat``/``nbf`` with ``leeway`` seconds of clock skew,
    the audience and the presence of the required claims. Role checking is left to
    ``verify_token``. Raises ``Unauthorized``; raises ``ValueError`` if ``secret`` is empty
    (a configuration error, not the caller's fault).
    """
    if not secret:
        raise ValueError("JWT secret is empty: set JWT_SECRET_KEY")
    if leeway < 0:
        raise ValueError("leeway must be zero or positive")
    if not token:
        raise Unauthorized("missing bearer token")
    if len(token) > MAX_TOKEN_LENGTH:
        raise Unauthorized(f"token is malformed: longer than {MAX_TOKEN_LENGTH} characters")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            secret,
            algorithms=list(ALLOWED_ALGORITHMS),
            audience=audience,
            leeway=leeway,
            options={"require": list(REQUIRED_CLAIMS)},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("token has expired") from exc
    except jwt.ImmatureSignatureError as exc:
        if "(iat)" in str(exc):
            raise Unauthorized("token was issued in the future (iat): check the issuer's clock") from exc
        raise Unauthorized("token is not yet valid (nbf is in the future)") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"token is missing the required '{exc.claim}' claim") from exc
    except jwt.InvalidAudienceError as exc:
        if "format" in str(exc):
            raise Unauthorized("token claim 'aud' must be a string or a list of strings") from exc
        raise Unauthorized(f"token has the wrong audience: this service accepts '{audience}'") from exc
    except jwt.InvalidAlgorithmError as exc:
        raise Unauthorized(f"token algorithm is not accepted: only {ALGORITHM} is allowed") from exc
    except jwt.InvalidSignatureError as exc:
        raise Unauthorized("token signature is invalid") from exc
    except InvalidSubjectError as exc:
        raise Unauthorized("token claim 'sub' must be a string") from exc
    except jwt.InvalidIssuedAtError as exc:
        raise Unauthorized("token claim 'iat' must be a number (seconds since the epoch)") from exc
    except InvalidJTIError as exc:
        raise Unauthorized("token claim 'jti' must be a string") from exc
    except jwt.DecodeError as exc:
        raise Unauthorized(_decode_error_message(exc)) from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized("token is invalid") from exc
    if not claims["sub"].strip():
        raise Unauthorized("token claim 'sub' must not be empty")
    return claims


def verify_token(token: str, *, secret: str, audience: str, leeway: int) -> Principal:
    """Verify a bearer token and return its ``Principal``; see the module docstring for the rules."""
    return principal_from_claims(decode_claims(token, secret=secret, audience=audience, leeway=leeway))


class VerifiedTokens:
    """``verify_token`` with a memory: a client sends the same token on every request, so the HMAC,
    the JSON decoding and the claim checks are done once per token, not once per request.

    Only tokens that verified are kept, each until its ``exp`` (plus the leeway, as ``decode_claims``
    allows): after that the token is verified again, and refused. A token accepted once stays
    accepted until then (its signature, audience and roles cannot change; ``nbf`` and ``iat`` only
    ever refuse a token earlier). At most ``size`` tokens are kept; the oldest goes first.
    """

    def __init__(
        self, *, secret: str, audience: str, leeway: int, size: int = 4096, clock: Any = time.time
    ) -> None:
        self.secret = secret
        self.audience = audience
        self.leeway = leeway
        self.size = size
        self.clock = clock
        self._known: dict[str, tuple[Principal, float]] = {}

    def verify(self, token: str) -> Principal:
        known = self._known.get(token)
        if known is not None:
            if self.clock() < known[1]:
                return known[0]
            del self._known[token]
        claims = decode_claims(token, secret=self.secret, audience=self.audience, leeway=self.leeway)
        principal = principal_from_claims(claims)
        if isinstance(claims["exp"], int | float):
            if len(self._known) >= self.size:
                del self._known[next(iter(self._known))]  # insertion order: the oldest
            self._known[token] = (principal, float(claims["exp"]) + self.leeway)
        return principal


def principal_from_claims(claims: Mapping[str, Any]) -> Principal:
    """Build the ``Principal`` from claims that ``decode_claims`` has verified; checks ``roles``."""
    token_id = claims.get("jti")
    return Principal(
        subject=claims["sub"],
        roles=_parse_roles(claims.get("roles")),
        token_id=token_id if isinstance(token_id, str) else None,
    )


def mint_token(
    *,
    secret: str,
    subject: str,
    roles: Iterable[Role | str],
    audience: str,
    ttl_seconds: int,
    not_before: datetime | float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Create an HS256 token that ``verify_token`` accepts (for tests, the CLI and service accounts).

    ``iat`` is now, ``exp`` is now + ``ttl_seconds`` and ``jti`` is a random identifier.
    ``not_before`` (an aware ``datetime`` or seconds since the epoch) sets ``nbf``. ``extra``
    adds claims; it may not override the registered ones (``sub``, ``exp``, ``iat``, ``nbf``,
    ``aud``, ``jti``, ``roles``). Raises ``ValueError`` on a short secret, an unknown role, an
    empty subject or a non-positive TTL.
    """
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"JWT secret must be at least {MIN_SECRET_LENGTH} characters")
    if not subject.strip():
        raise ValueError("subject must not be empty")
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    role_names = sorted({_role(name).value for name in roles})
    clashes = sorted(REGISTERED_CLAIMS.intersection(extra or {}))
    if clashes:
        raise ValueError(f"extra claims may not override registered claims: {', '.join(clashes)}")
    now = int(time.time())
    claims: dict[str, Any] = {
        **(extra or {}),
        "sub": subject,
        "roles": role_names,
        "aud": audience,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": secrets.token_hex(16),
    }
    if not_before is not None:
        claims["nbf"] = int(not_before.timestamp() if isinstance(not_before, datetime) else not_before)
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def _role(name: Role | str) -> Role:
    try:
        return Role(name)
    except ValueError:
        known = ", ".join(role.value for role in Role)
        raise ValueError(f"unknown role {name!r}; known roles: {known}") from None


def _parse_roles(value: object) -> frozenset[Role]:
    if value is None:
        return frozenset({Role.USER})
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise Unauthorized("token claim 'roles' must be a list of role names")
    known = {role.value for role in Role}
    unknown = sorted({item for item in value if item not in known})
    if unknown:
        shown = ", ".join(repr(name[:_MAX_ROLE_NAME_IN_MESSAGE]) for name in unknown[:5])
        raise Unauthorized(
            f"token claim 'roles' names unknown roles ({shown}); known roles: {', '.join(sorted(known))}"
        )
    if not value:
        return frozenset({Role.USER})
    return frozenset(Role(item) for item in value)


def _decode_error_message(exc: jwt.DecodeError) -> str:
    reason = str(exc)
    for pattern, message in _DECODE_ERROR_MESSAGES:
        if pattern.search(reason):
            return message
    return "token is malformed"
