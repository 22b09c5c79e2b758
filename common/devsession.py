"""A first desktop session against ``make run``'s service (development only): ``make session``.

    python -m common.devsession [--url http://127.0.0.1:8092] [--user dev-user] [--output session.rdp]

With the service of ``make run`` up, it mints a development token for the user (as ``make
token`` does: ``security.jwt_auth``, the secret from ``JWT_SECRET_KEY`` or
``.devstack/jwt-secret``), creates a session (or gets the user's suspended one back), asks for a
connection descriptor, writes its ``.rdp`` file and prints the one command that opens it. Then
it prints each status change as it happens (it polls the session about once a second), until
Ctrl-C, which terminates the session.

With the relay on (``make run`` turns it on), the one-time token in the file is used once and
lives ``RDP_CONTROLLER_CONNECTION_TOKEN_TTL`` seconds: when it expires unused, or when the
client disconnected (``suspended``), the file is written again with a new token.

Exit codes: 0 after Ctrl-C (session terminated) or when the session ended on its own, 1 on an
error (service not running, an error answer), 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Final

import httpx

from security.jwt_auth import MIN_SECRET_LENGTH, mint_token

DEFAULT_URL: Final = "http://127.0.0.1:8092"
DEFAULT_SECRET_FILE: Final = Path(".devstack/jwt-secret")
DEFAULT_USER: Final = "dev-user"
DEFAULT_OUTPUT: Final = Path("session.rdp")
CLIENTS: Final = ("xfreerdp", "xfreerdp3")
CLIENT_INSTALL_HINT: Final = "apt-get install freerdp2-x11"
FINAL_STATUSES: Final = frozenset({"terminated", "error"})
HTTP_TIMEOUT: Final = 10.0
EXIT_OK: Final = 0
EXIT_ERROR: Final = 1


class DevSessionError(Exception):
    """Something the user must fix; ``main`` prints it as one line and exits 1."""


def say(message: str) -> None:
    print(f"devsession: {message}", flush=True)


def read_secret(secret_file: Path) -> str:
    """``JWT_SECRET_KEY`` from the environment (as ``make run`` prefers it), else the file."""
    secret = os.environ.get("JWT_SECRET_KEY", "")
    if not secret:
        try:
            secret = secret_file.read_text(encoding="utf-8").strip()
        except OSError:
            raise DevSessionError(
                f"no JWT secret: {secret_file} is missing and JWT_SECRET_KEY is unset; "
                "start the service with `make run` first (it creates the file)"
            ) from None
    if len(secret) < MIN_SECRET_LENGTH:
        raise DevSessionError(f"the JWT secret is shorter than {MIN_SECRET_LENGTH} characters")
    return secret


def find_client() -> str | None:
    return next((name for name in CLIENTS if shutil.which(name)), None)


class Api:
    """The service's API as the development user; every failure becomes a one-line ``DevSessionError``."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url.rstrip("/")
        self.client = httpx.Client(
            base_url=self.url, timeout=HTTP_TIMEOUT, headers={"Authorization": f"Bearer {token}"}
        )

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The service's answer, whatever its status; no connection or no answer is the error."""
        try:
            return self.client.request(method, path, **kwargs)
        except httpx.ConnectError:
            raise DevSessionError(
                f"the service is not running at {self.url}: start it with `make run` in another terminal"
            ) from None
        except httpx.HTTPError as exc:
            raise DevSessionError(f"{method} {path}: {type(exc).__name__}: {exc}") from None

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a successful answer; an error answer is the error."""
        response = self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise DevSessionError(f"{method} {path} answered {describe_error(response)}")
        return response.json()


def describe_error(response: httpx.Response) -> str:
    """``503 NO_CAPACITY: message`` from the service's error body (or the start of the text)."""
    try:
        error = response.json()["error"]
        text = f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        text = response.text.strip()[:200] or response.reason_phrase
    if response.status_code == 401:
        text += " (the service runs with another JWT secret than .devstack/jwt-secret?)"
    return f"{response.status_code} {text}"


class DevSession:
    """One session of the development user, its ``.rdp`` file and the status shown so far."""

    def __init__(self, api: Api, user: str, output: Path) -> None:
        self.api = api
        self.user = user
        self.output = output
        self.session: dict[str, Any] = {}
        self.descriptor: dict[str, Any] = {}
        self.events_seen = 0

    @property
    def path(self) -> str:
        return f"/api/v1/sessions/{self.session['session_id']}"

    def check_service(self) -> None:
        response = self.api.request("GET", "/health")
        if response.status_code != 200:
            raise DevSessionError(
                f"the service at {self.api.url} is not healthy: GET /health answered {response.status_code}"
            )

    def create(self) -> None:
        self.session = self.api.call("POST", "/api/v1/sessions", json={"user_id": self.user})
        verb = "got back its suspended session" if self.session.get("reconnected") else "created session"
        say(
            f"{verb} {self.session['session_id']} for user {self.user} "
            f"on server {self.session['server_id']}: {self.session['status']}"
        )
        self.print_new_events()

    def write_rdp_file(self, why: str | None = None) -> None:
        """A new descriptor (connect, or reconnect when suspended) and its ``.rdp`` file."""
        action = "reconnect" if self.session["status"] == "suspended" else "connect"
        self.descriptor = self.api.call("POST", f"{self.path}/{action}")
        self.output.write_text(self.descriptor["rdp_file"], encoding="utf-8")
        where = f"{self.descriptor['address']}:{self.descriptor['port']}"
        if why is None:
            via = "the relay" if self.descriptor.get("mode") == "relay" else "the host"
            say(f"wrote {self.output} (connects to {via} at {where}; its one-time token is used once)")
        else:
            say(f"wrote {self.output} again with a new one-time token ({why})")

    def print_open_command(self) -> None:
        client = find_client()
        if client is None:
            say(
                f"no RDP client found: install one ({CLIENT_INSTALL_HINT}), "
                f"then open the session with: xfreerdp {self.output} /cert:ignore"
            )
        else:
            say(f"open it with: {client} {self.output} /cert:ignore")
        say("watching the session's status (Ctrl-C terminates it) ...")

    def print_new_events(self) -> None:
        events = self.api.call("GET", f"{self.path}/events").get("items", [])
        for event in events[self.events_seen :]:
            reason = f" ({event['reason']})" if event.get("reason") else ""
            stamp = _clock(event.get("at") or event.get("created_at") or event.get("timestamp"))
            say(f"{stamp} {event.get('from_status') or '(new)'} -> {event['to_status']}{reason}")
        self.events_seen = max(self.events_seen, len(events))

    def token_expired(self) -> bool:
        expires = _parse_time(self.descriptor.get("token_expires_at"))
        return expires is not None and datetime.now(UTC) >= expires

    def watch(self, interval: float) -> str:
        """Print changes until the session is final (its status) or Ctrl-C (KeyboardInterrupt)."""
        relay = self.descriptor.get("mode") == "relay"
        last = (self.session["status"], self.session.get("version"))
        while True:
            time.sleep(interval)
            self.session = self.api.call("GET", self.path)
            status = self.session["status"]
            if (status, self.session.get("version")) != last:
                self.print_new_events()
                if relay and status == "suspended" and last[0] != "suspended":
                    self.write_rdp_file("the client disconnected: open it again to reconnect")
                last = (status, self.session.get("version"))
            if status in FINAL_STATUSES:
                return str(status)
            if relay and status in ("ready", "suspended") and self.token_expired():
                self.write_rdp_file("the last one expired unused")

    def terminate(self) -> None:
        ended = self.api.call("DELETE", self.path)
        self.print_new_events()
        say(f"session {ended['session_id']} {ended['status']} ({ended.get('termination_reason')})")


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _clock(value: object) -> str:
    """The local wall-clock time of an event (now when the event carries none)."""
    parsed = _parse_time(value)
    return (parsed.astimezone() if parsed else datetime.now()).strftime("%H:%M:%S")


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m common.devsession",
        description="Create a desktop session on make run's service, write its .rdp file, "
        "print its status changes; Ctrl-C terminates it (development only).",
    )
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the service (default {DEFAULT_URL})")
    parser.add_argument("--user", default=DEFAULT_USER, help=f"the user_id (default {DEFAULT_USER})")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="the .rdp file to write")
    parser.add_argument(
        "--secret-file",
        type=Path,
        default=DEFAULT_SECRET_FILE,
        help=f"JWT secret when JWT_SECRET_KEY is unset (default {DEFAULT_SECRET_FILE})",
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between status polls")
    args = parser.parse_args(argv)
    # Ctrl-C, and a SIGTERM too, terminate the session (also when started with SIGINT ignored, as `&` does).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)

    api: Api | None = None
    dev: DevSession | None = None
    try:
        token = mint_token(
            secret=read_secret(args.secret_file),
            subject=args.user,
            roles=["user"],
            audience=os.environ.get("JWT_AUDIENCE", "rdp-controller"),
            ttl_seconds=86400,
        )
        api = Api(args.url, token)
        dev = DevSession(api, args.user, args.output)
        dev.check_service()
        dev.create()
        dev.write_rdp_file()
        dev.print_open_command()
        final = dev.watch(args.interval)
        say(f"the session ended: {final} ({dev.session.get('termination_reason')})")
        return EXIT_OK
    except KeyboardInterrupt:
        if dev is None or not dev.session:
            say("stopped before a session was created")
            return EXIT_OK
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the DELETE short
        say("Ctrl-C: terminating the session ...")
        try:
            dev.terminate()
        except DevSessionError as exc:
            say(f"could not terminate the session: {exc}")
            return EXIT_ERROR
        return EXIT_OK
    except DevSessionError as exc:
        print(f"devsession: {exc}", file=sys.stderr, flush=True)
        return EXIT_ERROR
    finally:
        if api is not None:
            api.close()


if __name__ == "__main__":
    sys.exit(main())
