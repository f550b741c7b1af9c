"""``rtlink token``: print a client token (an HS256 JWT) signed with the secret that
``rtlink serve`` verifies tokens with."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

from ..auth import TokenAuth
from ..config import ConfigError, Secret, read_secret_file
from ..config.options import OPTIONS_BY_NAME
from .arguments import Commands, HelpFormatter, positive_float, strict_json
from .clients import TOKEN_ENV
from .status import EXIT_OK, UsageError

__all__ = ["TOKEN_SECRET_ENV", "add_parser", "run"]

#: Where ``rtlink token`` looks for the secret: ``rtlink serve``'s variable
#: (``RTLINK_TOKEN_SECRET``), taken from the option table.
TOKEN_SECRET_ENV = OPTIONS_BY_NAME["token_secret"].env


def add_parser(commands: Commands) -> None:
    """Add ``token`` to the ``rtlink`` command."""
    token = commands.add_parser(
        "token", allow_abbrev=False,
        help="mint a client token signed with the servers' token secret",
        formatter_class=HelpFormatter,
        description=f"""\
Print a token (an HS256 JWT) for SUBJECT, signed with the secret that `rtlink serve`
verifies tokens with (its --token-secret-file or {TOKEN_SECRET_ENV}). Clients send it
as `Authorization: Bearer TOKEN`; `rtlink tail` and `rtlink publish` read it from
--token-file or {TOKEN_ENV}. Channels whose rule has subscribe = "authenticated" need
one; a "user:{{user}}:*" rule lets only SUBJECT use user:SUBJECT:... channels.

The secret comes from --secret-file FILE, or the variable named by --secret-env,
else {TOKEN_SECRET_ENV}, else the file named by {TOKEN_SECRET_ENV}_FILE.

exit status: 0 token printed, 2 usage error (no secret, bad claim)""",
        epilog=f"""\
examples:
  rtlink token alice --secret-file secret.txt
  {TOKEN_SECRET_ENV}=... rtlink token alice --ttl 600 --claim role=admin
  rtlink token svc-1 --secret-env MY_SECRET --claim 'rooms:=["a", "b"]'""",
    )
    token.add_argument("subject", metavar="SUBJECT",
                       help="whom the token names (its sub claim), e.g. a user id")
    token.add_argument("--ttl", type=positive_float, default=3600.0, metavar="SECONDS",
                       help="seconds until the token expires")
    token.add_argument("--claim", action="append", metavar="KEY=VALUE",
                       help="an extra claim, repeatable: KEY=VALUE for a string, "
                            "KEY:=JSON for any JSON value (KEY:=3, KEY:=true)")
    source = token.add_mutually_exclusive_group()
    source.add_argument("--secret-file", metavar="FILE",
                        help="a file holding the secret (its final newline is ignored)")
    source.add_argument("--secret-env", metavar="VAR",
                        help="an environment variable holding the secret")
    token.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``rtlink token`` with its parsed ``args``; return the exit status."""
    try:
        secret = _token_secret(args)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    claims = _claims(args.claim or ())
    try:
        token = TokenAuth(secret).mint(args.subject, ttl=args.ttl, claims=claims)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    print(token, flush=True)
    return EXIT_OK


def _token_secret(args: argparse.Namespace) -> str:
    """The secret ``rtlink token`` signs with; see its --help for where it looks."""
    secret_file: str | None = args.secret_file
    env: str | None = args.secret_env
    if secret_file is not None:
        text = read_secret_file(secret_file, "--secret-file")
        return _checked_secret(text, f"file {secret_file} (--secret-file)", from_file=True)
    name = env or TOKEN_SECRET_ENV
    value = os.environ.get(name)
    if value:
        return _checked_secret(value, f"environment {name}")
    if env is not None:
        raise UsageError(f"--secret-env: the environment variable {name} is not set")
    path = os.environ.get(TOKEN_SECRET_ENV + "_FILE")
    if path:
        source = f"environment {TOKEN_SECRET_ENV}_FILE"
        return _checked_secret(read_secret_file(path, source), f"file {path} ({source})",
                               from_file=True)
    raise UsageError(f"no token secret: give --secret-file FILE or --secret-env VAR, or set "
                     f"{TOKEN_SECRET_ENV} (the secret `rtlink serve` verifies tokens with)")


def _checked_secret(text: str, where: str, *, from_file: bool = False) -> str:
    """``text`` as a token secret (a file's without its final newline), like serve's.

    Raises:
        UsageError: too short; the message names ``where``, not the secret.
    """
    kind = Secret()
    try:
        return str(kind.from_file(text) if from_file else kind.from_text(text))
    except ValueError as exc:
        raise UsageError(f"{where}: {exc}") from None


def _claims(items: Sequence[str]) -> dict[str, Any]:
    """``--claim`` values: ``KEY=VALUE`` (a string) or ``KEY:=JSON``."""
    claims: dict[str, Any] = {}
    for item in items:
        key, equals, value = item.partition("=")
        if not equals:
            raise UsageError(f"--claim {item!r}: expected KEY=VALUE or KEY:=JSON")
        if key.endswith(":"):
            key = key[:-1]
            try:
                parsed: Any = strict_json(value)
            except ValueError as exc:
                raise UsageError(f"--claim {item!r}: the value after := is not valid JSON "
                                 f"({exc})") from None
        else:
            parsed = value
        if not key:
            raise UsageError(f"--claim {item!r}: the key is empty")
        if key in claims:
            raise UsageError(f"--claim {key}: given twice")
        claims[key] = parsed
    return claims
