"""Operator CLI: mint and inspect bearer tokens.

    python -m security.tokens mint --sub alice --roles user --ttl 3600
    python -m security.tokens mint --sub session-api --roles service --ttl 86400 \
        --secret-file /run/secrets/jwt
    python -m security.tokens decode eyJ...            # or: ... | python -m security.tokens decode -

The signing secret comes from the environment variable ``JWT_SECRET_KEY`` or from a file
(``--secret-file``). There is deliberately no ``--secret VALUE`` option: a value on the command
line is visible to every local user through ``ps``/``/proc`` and lands in shell history.

Exit codes: 0 success, 1 the token was rejected (``decode``), 2 usage or configuration error
(missing or short secret, unreadable file, bad arguments).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, TextIO

from common.errors import Unauthorized
from security.jwt_auth import MIN_SECRET_LENGTH, decode_claims, mint_token, principal_from_claims
from security.principals import Role

SECRET_ENV: Final = "JWT_SECRET_KEY"
AUDIENCE_ENV: Final = "JWT_AUDIENCE"
LEEWAY_ENV: Final = "JWT_LEEWAY_SECONDS"
DEFAULT_AUDIENCE: Final = "rdp-controller"
DEFAULT_LEEWAY: Final = 30
DEFAULT_TTL: Final = 3600
MAX_TTL: Final = 366 * 86400

EXIT_OK: Final = 0
EXIT_REJECTED: Final = 1
EXIT_USAGE: Final = 2

_SECRET_HELP = f"""\
the signing secret is read from the environment variable {SECRET_ENV}, or from the file given
with --secret-file PATH (one line; a trailing newline is ignored). It must be at least
{MIN_SECRET_LENGTH} characters. There is no --secret VALUE option on purpose: command-line
arguments are visible to other users in ps and /proc and are kept in shell history.
Generate a secret with: python -c 'import secrets; print(secrets.token_urlsafe(48))'
"""


class _UsageError(Exception):
    """A configuration or usage problem; ``main`` prints it and exits 2."""


def _positive_ttl(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of seconds, not {text!r}") from None
    if not 0 < value <= MAX_TTL:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_TTL} seconds (366 days)")
    return value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of seconds, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be zero or positive")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m security.tokens",
        # No abbreviations: "--secret VALUE" must not be taken as "--secret-file VALUE".
        allow_abbrev=False,
        description="Mint and inspect HS256 bearer tokens for Lucid services.",
        epilog=_SECRET_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{mint,decode}")

    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument(
        "--secret-file",
        metavar="PATH",
        help=f"read the signing secret from PATH instead of ${SECRET_ENV}",
    )
    common.add_argument(
        "--audience",
        default=None,
        help=f"the 'aud' claim (default: ${AUDIENCE_ENV} or {DEFAULT_AUDIENCE!r})",
    )

    mint = commands.add_parser(
        "mint",
        parents=[common],
        allow_abbrev=False,
        help="create a token and print it on stdout",
        description="Create a signed token and print it on stdout (details go to stderr).",
        epilog=_SECRET_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    mint.add_argument("--sub", required=True, help="the subject: a user_id, or a service account name")
    mint.add_argument(
        "--roles",
        action="append",
        required=True,
        choices=[role.value for role in Role],
        help="a role to grant; repeat for several (--roles user --roles operator)",
    )
    mint.add_argument(
        "--ttl",
        type=_positive_ttl,
        default=DEFAULT_TTL,
        help=f"lifetime in seconds (default {DEFAULT_TTL}, at most {MAX_TTL})",
    )

    decode = commands.add_parser(
        "decode",
        parents=[common],
        allow_abbrev=False,
        help="verify a token and print its claims as JSON",
        description="Verify a token (signature, expiry, audience, roles) and print its claims as JSON.",
        epilog=_SECRET_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    decode.add_argument("token", metavar="TOKEN", help="the token, or '-' to read it from stdin")
    decode.add_argument(
        "--leeway",
        type=_non_negative,
        default=None,
        help=f"clock skew allowed in seconds (default: ${LEEWAY_ENV} or {DEFAULT_LEEWAY})",
    )
    return parser


def _read_secret(secret_file: str | None) -> str:
    """The signing secret from ``secret_file`` or ``$JWT_SECRET_KEY``; ``_UsageError`` if missing or short."""
    if secret_file:
        source = f"--secret-file {secret_file}"
        try:
            secret = Path(secret_file).read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise _UsageError(f"cannot read {source}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise _UsageError(f"cannot read {source}: not UTF-8 text") from exc
    else:
        source = SECRET_ENV
        secret = os.environ.get(SECRET_ENV, "")
    if not secret:
        raise _UsageError(
            f"no JWT secret: set {SECRET_ENV} in the environment or pass --secret-file PATH "
            f"({source} is empty or unset)"
        )
    if len(secret) < MIN_SECRET_LENGTH:
        raise _UsageError(
            f"JWT secret from {source} is too short ({len(secret)} characters); at least "
            f"{MIN_SECRET_LENGTH} are required. Generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'"
        )
    return secret


def _audience(explicit: str | None) -> str:
    return explicit or os.environ.get(AUDIENCE_ENV) or DEFAULT_AUDIENCE


def _leeway(explicit: int | None) -> int:
    if explicit is not None:
        return explicit
    raw = os.environ.get(LEEWAY_ENV)
    if not raw:
        return DEFAULT_LEEWAY
    try:
        return _non_negative(raw)
    except argparse.ArgumentTypeError as exc:
        raise _UsageError(f"{LEEWAY_ENV} {exc}") from None


def _mint(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    secret = _read_secret(args.secret_file)
    audience = _audience(args.audience)
    try:
        token = mint_token(
            secret=secret, subject=args.sub, roles=args.roles, audience=audience, ttl_seconds=args.ttl
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc
    expires = datetime.now(UTC) + timedelta(seconds=args.ttl)
    print(token, file=out)
    print(
        f"token for {args.sub!r} (roles: {', '.join(sorted(set(args.roles)))}; audience: {audience}) "
        f"expires {expires.isoformat(timespec='seconds')}",
        file=err,
    )
    return EXIT_OK


def _decode(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    secret = _read_secret(args.secret_file)
    token = stdin.read().strip() if args.token == "-" else args.token.strip()
    try:
        claims = decode_claims(
            token, secret=secret, audience=_audience(args.audience), leeway=_leeway(args.leeway)
        )
        principal_from_claims(claims)
    except Unauthorized as exc:
        print(f"token rejected: {exc.message}", file=err)
        return EXIT_REJECTED
    print(json.dumps(claims, indent=2, sort_keys=True), file=out)
    return EXIT_OK


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 token rejected, 2 usage/configuration error)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    parser = build_parser()
    try:
        args, unknown = parser.parse_known_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on bad arguments (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if unknown:
        # Not echoed: someone trying "--secret VALUE" would otherwise see the secret printed back.
        hint = (
            " (there is no --secret option: use $JWT_SECRET_KEY or --secret-file)"
            if any(item.startswith("--sec") for item in unknown)
            else ""
        )
        print(f"{parser.prog}: error: {len(unknown)} unrecognized argument(s){hint}; see --help", file=err)
        return EXIT_USAGE
    try:
        if args.command == "mint":
            return _mint(args, out, err)
        return _decode(args, out, err, stdin or sys.stdin)
    except _UsageError as exc:
        print(f"error: {exc}", file=err)
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
