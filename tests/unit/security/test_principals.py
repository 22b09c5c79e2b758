"""Roles and the Principal's authorisation helpers."""

from __future__ import annotations

import dataclasses

import pytest

from security.principals import ANONYMOUS_DEV, Principal, Role


def principal(*roles: Role, subject: str = "alice") -> Principal:
    return Principal(subject=subject, roles=frozenset(roles), token_id=None)


def test_role_names_are_the_claim_values() -> None:
    assert [role.value for role in Role] == ["user", "operator", "service"]
    assert Role("operator") is Role.OPERATOR
    assert f"{Role.SERVICE}" == "service"


def test_user_acts_only_for_itself() -> None:
    user = principal(Role.USER)
    assert user.can_act_for("alice")
    assert not user.can_act_for("bob")
    assert not user.can_act_for("")
    assert not user.is_operator
    assert not user.is_service
    assert not user.is_privileged


@pytest.mark.parametrize("role", [Role.OPERATOR, Role.SERVICE])
def test_operator_and_service_act_for_anyone(role: Role) -> None:
    privileged = principal(role, subject="svc")
    assert privileged.is_privileged
    assert privileged.can_act_for("alice")
    assert privileged.can_act_for("bob")


def test_role_flags() -> None:
    both = principal(Role.OPERATOR, Role.SERVICE)
    assert both.is_operator and both.is_service
    assert both.has_role(Role.OPERATOR)
    assert not both.has_role(Role.USER)


def test_principal_is_immutable_and_hashable() -> None:
    user = principal(Role.USER)
    with pytest.raises(dataclasses.FrozenInstanceError):
        user.subject = "mallory"  # type: ignore[misc]
    assert user == principal(Role.USER)
    assert len({user, principal(Role.USER)}) == 1


def test_anonymous_dev_principal_holds_every_role() -> None:
    assert ANONYMOUS_DEV.subject == "dev"
    assert ANONYMOUS_DEV.roles == frozenset(Role)
    assert ANONYMOUS_DEV.token_id is None
    assert ANONYMOUS_DEV.is_operator and ANONYMOUS_DEV.is_service
    assert ANONYMOUS_DEV.can_act_for("anyone")
