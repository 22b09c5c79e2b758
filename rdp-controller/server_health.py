"""
How a server's health moves with its probes: pure decisions, no I/O (``HealthMonitor`` applies them).

``assess`` turns a probe and the server's counters into its next state, reason and detail:
thresholds against flapping, certificate change (degraded) and pins (unhealthy at once). The
operator's states (draining, disabled) are never overridden. The rules are spelled out in
``health_monitor.py``'s docstring.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from protocol.probe import ProbeResult

from .config import RdpControllerSettings
from .models import ServerState
from .server_registry import health_state_of

ADMIN_STATES: Final = frozenset({ServerState.DRAINING, ServerState.DISABLED})


class Reason(StrEnum):
    """Why a server is not ``available`` (``state_reason``)."""

    PROBE_FAILED = "probe_failed"
    CERTIFICATE_MISMATCH = "certificate_mismatch"
    CERTIFICATE_CHANGED = "certificate_changed"


@dataclass(frozen=True, slots=True)
class Thresholds:
    unhealthy: int
    healthy: int

    @classmethod
    def from_settings(cls, settings: RdpControllerSettings) -> Thresholds:
        return cls(settings.RDP_CONTROLLER_UNHEALTHY_THRESHOLD, settings.RDP_CONTROLLER_HEALTHY_THRESHOLD)


def next_state(
    current: ServerState,
    successes: int,
    failures: int,
    *,
    probe_ok: bool,
    cert_changed: bool,
    pinned_mismatch: bool,
    thresholds: Thresholds,
    pinned_match: bool = False,
    current_reason: Reason | None = None,
) -> tuple[ServerState, Reason | None]:
    """The state after one probe (pure). ``successes``/``failures`` already count this probe.

    ``draining``/``disabled`` are returned unchanged: the monitor never overrides them (it calls
    this with the server's ``health_state`` to keep that up to date). ``pinned_match`` means a
    pin is set and the probe served exactly it: the operator vouched for that certificate.
    """
    if current in ADMIN_STATES:
        return current, current_reason
    if pinned_mismatch:
        return ServerState.UNHEALTHY, Reason.CERTIFICATE_MISMATCH
    if not probe_ok:
        if failures >= thresholds.unhealthy:
            return ServerState.UNHEALTHY, Reason.PROBE_FAILED
        return current, current_reason
    if cert_changed and not pinned_match:
        return ServerState.DEGRADED, Reason.CERTIFICATE_CHANGED
    if current is ServerState.AVAILABLE:
        return ServerState.AVAILABLE, None
    if current is ServerState.DEGRADED and pinned_match:
        return ServerState.AVAILABLE, None
    if current_reason is Reason.CERTIFICATE_MISMATCH:
        # Re-pinned, unpinned or the host fixed: the mismatch is resolved, what remains is reachability.
        current_reason = Reason.PROBE_FAILED
    if successes >= thresholds.healthy:
        return ServerState.AVAILABLE, None
    return current, current_reason


def count(successes: int, failures: int, *, probe_ok: bool, cert_changed: bool) -> tuple[int, int]:
    """The consecutive counters after one probe; a certificate change starts a new success streak."""
    if probe_ok:
        return (1 if cert_changed else successes + 1), 0
    return 0, failures + 1


def failure_text(result: ProbeResult) -> str:
    if result.failure_code is not None:
        return f"negotiation refused: {result.failure_name or result.failure_code}"
    return result.error or "unreachable"


def known_certificate(server: Mapping[str, Any]) -> str | None:
    """The last fingerprint this server served (kept across failed probes)."""
    known = server.get("last_cert_sha256")
    if known is None:
        known = (server.get("last_probe") or {}).get("cert_sha256")
    return str(known) if known is not None else None


@dataclass(frozen=True, slots=True)
class Assessment:
    """What one probe does to one server: the fields to set, and what to report."""

    changes: dict[str, Any]
    state: ServerState
    previous_state: ServerState
    certificate_change: tuple[str, str] | None


def assess(
    server: Mapping[str, Any], result: ProbeResult, thresholds: Thresholds, now: datetime
) -> Assessment:
    """The changes one probe result makes to a server document (pure)."""
    pinned = server.get("pinned_cert_sha256") or None
    previous_cert = known_certificate(server)
    cert = result.cert_sha256
    cert_changed = result.ok and cert is not None and previous_cert is not None and cert != previous_cert
    pinned_mismatch = pinned is not None and result.ok and cert != pinned
    pinned_match = pinned is not None and result.ok and cert == pinned
    successes, failures = count(
        int(server.get("consecutive_successes") or 0),
        int(server.get("consecutive_failures") or 0),
        probe_ok=result.ok,
        cert_changed=cert_changed,
    )
    reason_value = server.get("state_reason")
    current_reason = Reason(reason_value) if reason_value in {r.value for r in Reason} else None
    health_before = health_state_of(server)
    health, reason = next_state(
        health_before,
        successes,
        failures,
        probe_ok=result.ok,
        cert_changed=cert_changed,
        pinned_mismatch=pinned_mismatch,
        thresholds=thresholds,
        pinned_match=pinned_match,
        current_reason=current_reason,
    )
    current = ServerState(server["state"])
    state = current if current in ADMIN_STATES else health
    changes: dict[str, Any] = {
        "last_probe": result.to_document(),
        "consecutive_successes": successes,
        "consecutive_failures": failures,
        "health_state": health.value,
        "state": state.value,
        "state_reason": reason.value if reason is not None else None,
        "state_detail": _detail(reason, result, successes, failures, thresholds, previous_cert, pinned),
        "health_version": int(server.get("health_version") or 0) + 1,
    }
    if cert is not None:
        changes["last_cert_sha256"] = cert
    if health is ServerState.UNHEALTHY:
        changes["unhealthy_since"] = server.get("unhealthy_since") or now
    else:
        changes["unhealthy_since"] = None
    change = (
        (previous_cert, cert) if cert_changed and previous_cert is not None and cert is not None else None
    )
    return Assessment(changes, state, current, change)


def _detail(
    reason: Reason | None,
    result: ProbeResult,
    successes: int,
    failures: int,
    thresholds: Thresholds,
    previous_cert: str | None,
    pinned: str | None,
) -> str | None:
    if reason is None:
        return None if result.ok else f"{failures} consecutive failed probe(s); last: {failure_text(result)}"
    if reason is Reason.CERTIFICATE_MISMATCH:
        if not result.ok:
            return f"pinned certificate not verified; last probe failed: {failure_text(result)}"
        return f"the host serves certificate {result.cert_sha256}, the pin is {pinned}"
    if reason is Reason.CERTIFICATE_CHANGED:
        text = (
            f"certificate changed from {previous_cert} to {result.cert_sha256}"
            if result.cert_sha256 != previous_cert
            else f"certificate changed to {result.cert_sha256}"
        )
        if not result.ok:
            return f"{text}; last probe failed: {failure_text(result)}"
        return f"{text}; {successes}/{thresholds.healthy} probes with it, or pin it to accept it now"
    if not result.ok:
        return f"{failures} consecutive failed probe(s); last: {failure_text(result)}"
    return f"recovering: {successes}/{thresholds.healthy} consecutive passing probes"
