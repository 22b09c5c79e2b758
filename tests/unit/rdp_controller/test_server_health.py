"""The server health state machine (server_health.py): thresholds, certificate changes and pins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from protocol.probe import ProbeResult
from rdp_controller.models import ServerState
from rdp_controller.server_health import Reason, Thresholds, assess, count, failure_text, next_state

A, D, U = ServerState.AVAILABLE, ServerState.DEGRADED, ServerState.UNHEALTHY
DRAINING, DISABLED = ServerState.DRAINING, ServerState.DISABLED
T = Thresholds(unhealthy=3, healthy=2)
CERT_A, CERT_B = "a" * 64, "b" * 64
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def ok(cert: str | None = CERT_A, at: datetime = NOW) -> ProbeResult:
    return ProbeResult(
        host="h",
        port=3389,
        reachable=True,
        latency_ms=1.0,
        selected_protocol="ssl",
        tls_version="TLSv1.3",
        cert_sha256=cert,
        checked_at=at,
    )


def refused(at: datetime = NOW) -> ProbeResult:
    return ProbeResult(host="h", port=3389, reachable=False, error="connect failed: refused", checked_at=at)


def neg_failure(at: datetime = NOW) -> ProbeResult:
    return ProbeResult(
        host="h",
        port=3389,
        reachable=True,
        failure_code=5,
        failure_name="HYBRID_REQUIRED_BY_SERVER",
        checked_at=at,
    )


def step(current: ServerState, s: int, f: int, **flags: Any) -> tuple[ServerState, Reason | None]:
    values: dict[str, Any] = {"probe_ok": True, "cert_changed": False, "pinned_mismatch": False, **flags}
    return next_state(current, s, f, thresholds=T, **values)


# next_state -------------------------------------------------------------------------------
def test_failures_below_the_threshold_keep_a_server_available() -> None:
    assert step(A, 0, 1, probe_ok=False) == (A, None)
    assert step(A, 0, 2, probe_ok=False) == (A, None)


def test_the_threshold_th_failure_makes_it_unhealthy() -> None:
    assert step(A, 0, 3, probe_ok=False) == (U, Reason.PROBE_FAILED)
    assert step(U, 0, 7, probe_ok=False, current_reason=Reason.PROBE_FAILED) == (U, Reason.PROBE_FAILED)


def test_unhealthy_needs_the_healthy_threshold_of_successes() -> None:
    assert step(U, 1, 0, current_reason=Reason.PROBE_FAILED) == (U, Reason.PROBE_FAILED)
    assert step(U, 2, 0, current_reason=Reason.PROBE_FAILED) == (A, None)


def test_a_failure_below_threshold_keeps_degraded_and_unhealthy_as_they_are() -> None:
    assert step(D, 0, 1, probe_ok=False, current_reason=Reason.CERTIFICATE_CHANGED) == (
        D,
        Reason.CERTIFICATE_CHANGED,
    )
    assert step(U, 0, 1, probe_ok=False, current_reason=Reason.PROBE_FAILED) == (U, Reason.PROBE_FAILED)
    assert step(D, 0, 3, probe_ok=False, current_reason=Reason.CERTIFICATE_CHANGED) == (
        U,
        Reason.PROBE_FAILED,
    )


@pytest.mark.parametrize("admin", [DRAINING, DISABLED])
@pytest.mark.parametrize(
    "flags",
    [
        {"probe_ok": False},
        {"cert_changed": True},
        {"pinned_mismatch": True},
        {},
    ],
)
def test_draining_and_disabled_are_never_overridden(admin: ServerState, flags: dict[str, Any]) -> None:
    assert step(admin, 5, 5, **flags)[0] is admin


def test_a_certificate_change_degrades_and_recovers_after_the_threshold() -> None:
    assert step(A, 1, 0, cert_changed=True) == (D, Reason.CERTIFICATE_CHANGED)
    assert step(D, 1, 0, current_reason=Reason.CERTIFICATE_CHANGED) == (D, Reason.CERTIFICATE_CHANGED)
    assert step(D, 2, 0, current_reason=Reason.CERTIFICATE_CHANGED) == (A, None)


def test_a_pinned_certificate_accepts_a_degraded_server_at_once() -> None:
    assert step(D, 1, 0, pinned_match=True, current_reason=Reason.CERTIFICATE_CHANGED) == (A, None)
    # Pinned before the host switched: the change is expected, no degradation.
    assert step(A, 1, 0, cert_changed=True, pinned_match=True) == (A, None)


def test_a_pin_mismatch_is_unhealthy_at_once_without_threshold() -> None:
    assert step(A, 10, 0, pinned_mismatch=True) == (U, Reason.CERTIFICATE_MISMATCH)
    assert step(D, 1, 0, pinned_mismatch=True, cert_changed=True) == (U, Reason.CERTIFICATE_MISMATCH)


def test_a_resolved_mismatch_recovers_with_the_reachability_streak() -> None:
    # The host stayed reachable while mismatching: the streak is there, re-pinning recovers at once.
    assert step(U, 5, 0, pinned_match=True, current_reason=Reason.CERTIFICATE_MISMATCH) == (A, None)
    # A host that just came back still needs the threshold; the reason is reachability now.
    assert step(U, 1, 0, pinned_match=True, current_reason=Reason.CERTIFICATE_MISMATCH) == (
        U,
        Reason.PROBE_FAILED,
    )


def test_thresholds_of_one_flip_on_every_probe() -> None:
    one = Thresholds(unhealthy=1, healthy=1)
    assert next_state(A, 0, 1, probe_ok=False, cert_changed=False, pinned_mismatch=False, thresholds=one) == (
        U,
        Reason.PROBE_FAILED,
    )
    assert next_state(U, 1, 0, probe_ok=True, cert_changed=False, pinned_mismatch=False, thresholds=one) == (
        A,
        None,
    )


# count ------------------------------------------------------------------------------------
def test_counters_are_consecutive_and_a_change_of_certificate_restarts_the_streak() -> None:
    assert count(4, 0, probe_ok=True, cert_changed=False) == (5, 0)
    assert count(4, 0, probe_ok=False, cert_changed=False) == (0, 1)
    assert count(0, 2, probe_ok=False, cert_changed=False) == (0, 3)
    assert count(0, 2, probe_ok=True, cert_changed=False) == (1, 0)
    assert count(9, 0, probe_ok=True, cert_changed=True) == (1, 0)


# assess: one probe applied to a document --------------------------------------------------
def server(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "server_id": "s1",
        "name": "h",
        "state": "available",
        "pinned_cert_sha256": None,
        "last_probe": None,
        "consecutive_successes": 0,
        "consecutive_failures": 0,
    }
    return {**base, **fields}


def apply(document: dict[str, Any], result: ProbeResult) -> dict[str, Any]:
    return {**document, **assess(document, result, T, NOW).changes}


def test_a_failed_probe_is_recorded_with_counters_and_a_detail() -> None:
    after = apply(server(), refused())
    assert after["state"] == "available" and after["consecutive_failures"] == 1
    assert after["last_probe"]["error"] == "connect failed: refused"
    assert after["state_reason"] is None and "1 consecutive failed" in after["state_detail"]
    after = apply(apply(after, refused()), refused())
    assert (after["state"], after["state_reason"], after["consecutive_failures"]) == (
        "unhealthy",
        "probe_failed",
        3,
    )
    assert after["unhealthy_since"] == NOW


def test_a_negotiation_failure_counts_as_a_failed_probe() -> None:
    assert failure_text(neg_failure()) == "negotiation refused: HYBRID_REQUIRED_BY_SERVER"
    document = server()
    for _ in range(3):
        document = apply(document, neg_failure())
    assert (document["state"], document["consecutive_failures"]) == ("unhealthy", 3)
    assert "HYBRID_REQUIRED_BY_SERVER" in document["state_detail"]


def test_recovery_clears_the_reason_and_the_unhealthy_since() -> None:
    document = server(
        state="unhealthy",
        health_state="unhealthy",
        state_reason="probe_failed",
        consecutive_failures=3,
        unhealthy_since=NOW - timedelta(minutes=5),
    )
    document = apply(document, ok())
    assert (document["state"], document["consecutive_successes"]) == ("unhealthy", 1)
    assert document["unhealthy_since"] == NOW - timedelta(minutes=5)
    assert document["state_detail"] == "recovering: 1/2 consecutive passing probes"
    document = apply(document, ok())
    assert (document["state"], document["state_reason"], document["state_detail"]) == (
        "available",
        None,
        None,
    )
    assert document["unhealthy_since"] is None


def test_certificate_change_is_reported_once_with_old_and_new() -> None:
    document = apply(server(), ok(CERT_A))
    assessment = assess(document, ok(CERT_B), T, NOW)
    assert assessment.certificate_change == (CERT_A, CERT_B)
    assert assessment.state is D and assessment.changes["state_reason"] == "certificate_changed"
    document = {**document, **assessment.changes}
    assert document["last_cert_sha256"] == CERT_B
    second = assess(document, ok(CERT_B), T, NOW)
    assert second.certificate_change is None and second.state is A


def test_a_certificate_change_across_an_outage_is_still_seen() -> None:
    document = apply(server(), ok(CERT_A))
    document = apply(document, refused())
    assert document["last_probe"]["cert_sha256"] is None and document["last_cert_sha256"] == CERT_A
    assert assess(document, ok(CERT_B), T, NOW).certificate_change == (CERT_A, CERT_B)


def test_pinned_mismatch_marks_unhealthy_and_names_both_fingerprints() -> None:
    document = apply(server(pinned_cert_sha256=CERT_A), ok(CERT_B))
    assert (document["state"], document["state_reason"]) == ("unhealthy", "certificate_mismatch")
    assert CERT_A in document["state_detail"] and CERT_B in document["state_detail"]
    # The host stays reachable: once it serves the pin again it is available at once.
    document = apply(document, ok(CERT_B))
    document = apply({**document, "pinned_cert_sha256": CERT_B}, ok(CERT_B))
    assert (document["state"], document["state_reason"]) == ("available", None)


def test_a_pinned_host_serving_no_certificate_is_a_mismatch() -> None:
    document = apply(server(pinned_cert_sha256=CERT_A), ok(cert=None))
    assert (document["state"], document["state_reason"]) == ("unhealthy", "certificate_mismatch")


def test_a_draining_server_keeps_its_state_but_records_its_health() -> None:
    document = server(state="draining", draining=True)
    for _ in range(3):
        document = apply(document, refused())
    assert document["state"] == "draining"
    assert (document["health_state"], document["consecutive_failures"]) == ("unhealthy", 3)


def test_every_probe_bumps_the_health_version() -> None:
    document = apply(server(), ok())
    assert document["health_version"] == 1
    assert apply(document, refused())["health_version"] == 2
