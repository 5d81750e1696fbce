"""`genexfer keys create|list|revoke|rotate`: API keys, straight in the database (the admin routes
under /v1/keys do the same over HTTP). Bad input is a one-line error and exit status 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the service's modules load only when a keys command runs
    from sqlalchemy.orm import Session

    from app.db.tables import ApiKey


def register(commands: Any) -> None:
    """Add `keys` and its actions to the `genexfer` sub-commands."""
    keys = commands.add_parser(
        "keys",
        help="manage API keys",
        description="API keys are stored hashed in GENEXFER_DATABASE_URL; the plain key is "
        "printed once. Every key belongs to a tenant (a lab): it sees and changes only that "
        "tenant's datasets, jobs, predictions and models (an admin key: every tenant's). "
        "Every change is in the audit log (GET /v1/audit).",
    )
    keys_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = keys_commands.add_parser("create", help="create a key and print it")
    create.add_argument("--name", required=True, help="who or what uses the key (e.g. 'lims')")
    create.add_argument(
        "--tenant", default="default", help="the lab the key belongs to (default: 'default')"
    )
    create.add_argument(
        "--scopes", default="predict", help="comma-separated: predict, train, admin"
    )
    create.add_argument(
        "--expires-in", metavar="DURATION", help="e.g. 90d, 12h, 2w (default: never)"
    )
    listing = keys_commands.add_parser("list", help="list keys (never the keys themselves)")
    listing.add_argument("--tenant", help="only this tenant's keys")
    listing.add_argument("--all", action="store_true", help="revoked and expired keys too")
    revoke = keys_commands.add_parser("revoke", help="refuse a key from its next request on")
    revoke.add_argument("prefix", help="the key's prefix (from keys list) or the key itself")
    rotate = keys_commands.add_parser(
        "rotate", help="replace a key by a new one (same name, tenant and scopes) and print it"
    )
    rotate.add_argument("prefix", help="the key's prefix (from keys list) or the key itself")
    rotate.add_argument("--expires-in", metavar="DURATION", help="the new key's lifetime")
    rotate.add_argument(
        "--grace", metavar="DURATION", help="how long the old key still works (default: 0)"
    )
    keys.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run one keys action."""
    from sqlalchemy.exc import OperationalError

    from app.config import get_settings
    from app.db.session import make_engine, make_sessionmaker

    engine = make_engine(get_settings().database_url)
    try:
        with make_sessionmaker(engine).begin() as session:
            return KEY_ACTIONS[args.keys_command](session, args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        url = engine.url.render_as_string(hide_password=True)
        why = str(exc.orig).splitlines()[0] if str(exc.orig) else type(exc.orig).__name__
        print(f"error: the database {url} cannot be reached: {why}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


def _key_create(session: Session, args: argparse.Namespace) -> int:
    from app.security import create_key, parse_duration

    expires = _expiry(args.expires_in, parse_duration)
    row, key = create_key(
        session,
        name=args.name,
        scopes=args.scopes.split(","),
        tenant=args.tenant,
        expires_at=expires,
    )
    until = f", expires {row.expires_at:%Y-%m-%d %H:%M} UTC" if row.expires_at else ""
    print(
        f"created key {row.prefix} ({args.name}; tenant {row.tenant}; scopes {row.scopes}"
        f"{until}); store it now, it is not shown again:",
        file=sys.stderr,
    )
    print(key)
    return 0


def _key_list(session: Session, args: argparse.Namespace) -> int:
    from app.db.repository import keys
    from app.security import key_state

    rows = keys.listing(
        session, tenant=args.tenant, include_revoked=args.all, limit=10_000, offset=0
    )
    print("prefix\tname\ttenant\tscopes\tstate\tcreated\texpires\tlast used")
    for r in rows:
        cells = [r.prefix, r.name, r.tenant, ",".join(r.scopes), key_state(r)]
        cells += [_when(r.created_at), _when(r.expires_at), _when(r.last_used_at)]
        print("\t".join(cells))
    return 0


def _key_revoke(session: Session, args: argparse.Namespace) -> int:
    from app.security import CLI, revoke_key

    row = _key_row(session, args.prefix)
    revoke_key(session, row, actor=CLI)
    print(f"revoked key {row.prefix} ({row.name}; tenant {row.tenant})", file=sys.stderr)
    return 0


def _key_rotate(session: Session, args: argparse.Namespace) -> int:
    from app.security import CLI, parse_duration, rotate_key

    row = _key_row(session, args.prefix)
    grace = parse_duration(args.grace) if args.grace else timedelta(0)
    new, key = rotate_key(
        session,
        row,
        actor=CLI,
        expires_at=_expiry(args.expires_in, parse_duration),
        grace=grace,
    )
    until = f"at {row.revoked_at:%Y-%m-%d %H:%M:%S} UTC" if grace else "now"
    print(
        f"key {row.prefix} replaced by {new.prefix} ({new.name}; tenant {new.tenant}); the old "
        f"key stops working {until}; store the new one now, it is not shown again:",
        file=sys.stderr,
    )
    print(key)
    return 0


def _key_row(session: Session, prefix: str) -> ApiKey:
    from app.db.repository import keys

    # the prefix as printed, or a whole key (gx_<prefix>_...)
    parts = prefix.split("_")
    row = keys.by_prefix(session, parts[1] if len(parts) >= 3 and parts[0] == "gx" else prefix)
    if row is None:
        raise ValueError(f"no API key with prefix {prefix!r} (genexfer keys list shows them)")
    return row


def _expiry(text: str | None, parse: Callable[[str], timedelta]) -> datetime | None:
    return None if text is None else datetime.now(UTC) + parse(text)


def _when(at: datetime | None) -> str:
    return "-" if at is None else f"{at:%Y-%m-%d %H:%M}"


KEY_ACTIONS: dict[str, Callable[[Session, argparse.Namespace], int]] = {
    "create": _key_create,
    "list": _key_list,
    "revoke": _key_revoke,
    "rotate": _key_rotate,
}
