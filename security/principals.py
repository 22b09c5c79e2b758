"""Who is calling: roles and the authenticated principal.

A ``Principal`` is built from a verified bearer token (``security.jwt_auth.verify_token``).
Authorisation rules that depend only on the principal live here so that every route asks
the same question the same way.

Roles:

``user``
    An end user; ``subject`` is its ``user_id``. It may act only for itself (another user's
    session is reported as not found, never as forbidden).
``operator``
    Runs the platform: every session and every server.
``service``
    Another Lucid service (for example the session API) acting on behalf of any ``user_id``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    """A role name as it appears in the token's ``roles`` claim."""

    USER = "user"
    OPERATOR = "operator"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    ``subject`` is the token's ``sub`` claim (for a user, its ``user_id``); ``token_id`` is the
    token's ``jti`` claim when it has one (useful in audit logs: it names the token without
    revealing it).
    """

    subject: str
    roles: frozenset[Role]
    token_id: str | None = None

    @property
    def is_operator(self) -> bool:
        """True when the principal holds the ``operator`` role."""
        return Role.OPERATOR in self.roles

    @property
    def is_service(self) -> bool:
        """True when the principal holds the ``service`` role."""
        return Role.SERVICE in self.roles

    @property
    def is_privileged(self) -> bool:
        """True for operators and services: principals that may act for any user."""
        return self.is_operator or self.is_service

    def can_act_for(self, user_id: str) -> bool:
        """Whether this principal may read or change resources owned by ``user_id``.

        Operators and services may act for anyone; anyone else only for itself.
        """
        if self.is_privileged:
            return True
        return bool(user_id) and user_id == self.subject

    def has_role(self, role: Role) -> bool:
        return role in self.roles


ANONYMOUS_DEV = Principal(subject="dev", roles=frozenset(Role), token_id=None)
"""The principal used for every request when authentication is disabled.

``RDP_CONTROLLER_AUTH_ENABLED=false`` is accepted only outside production (the settings refuse
it when ``LUCID_ENV=production``). In that mode no token is read at all and every request runs
as this principal: subject ``"dev"`` holding **every** role, so local runs and demos can call
every route. Never hand it out when authentication is enabled.
"""
