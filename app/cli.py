"""`genexfer`: serve the API, manage the database, train and export models."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from app import __version__, cli_keys

# commands other packages add to `genexfer` (training adds `train` and `preprocess`): the service
# imports none of them, so it runs where only the service is installed
COMMANDS_GROUP = "genexfer.commands"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.config import get_settings
    from app.flow import set_body_high_water
    from app.logs import configure_logging
    from contract.allocator import keep_freed_memory

    settings = get_settings()
    configure_logging(settings.log_level)
    keep_freed_memory(settings.malloc_trim_threshold_mb)
    set_body_high_water(settings.body_chunk_kb * 1024)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        log_config=None,
        proxy_headers=args.proxy_headers,
        timeout_graceful_shutdown=30,
    )
    return 0


def _db(args: argparse.Namespace) -> int:
    from sqlalchemy import inspect

    from app.config import get_settings
    from app.db import migrate
    from app.db.session import make_engine

    settings = get_settings()
    engine = make_engine(settings.database_url)
    url = engine.url.render_as_string(hide_password=True)
    try:
        if args.db_command == "upgrade":
            migrate.upgrade(engine, args.revision)
            print(f"database {url} upgraded to {args.revision}")
        elif args.db_command == "downgrade":
            migrate.downgrade(engine, args.revision)
            print(f"database {url} downgraded to {args.revision}")
        else:
            print(f"database {url}: tables {sorted(inspect(engine).get_table_names())}")
    finally:
        engine.dispose()
    return 0


def _worker(args: argparse.Namespace) -> int:
    from app.config import get_settings
    from app.jobs.worker import ping, run_worker
    from app.logs import configure_logging

    settings = get_settings()
    if args.ping:
        alive = ping(settings)
        print("worker answers" if alive else "no worker on this host answers")
        return 0 if alive else 1
    configure_logging(settings.log_level)
    # fail now, with the install hint, rather than at the first job
    if importlib.util.find_spec("torch") is None:
        raise ModuleNotFoundError("No module named 'torch'", name="torch")
    return run_worker(settings, args.concurrency, settings.log_level)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genexfer",
        description="GeneXfer: pretrain gene-expression encoders, fine-tune heads, and serve them. "
        "Settings come from GENEXFER_* environment variables (docs/configuration.md).",
    )
    parser.add_argument("--version", action="version", version=f"genexfer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the HTTP API",
        description="Run the HTTP API with uvicorn. Applies database migrations at start-up "
        "when GENEXFER_AUTO_MIGRATE is true (the embedded default) and loads every model "
        "version under GENEXFER_MODELS_DIR.",
    )
    serve.add_argument("--host", help="address to bind (default: GENEXFER_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: GENEXFER_PORT or 8000)")
    serve.add_argument(
        "--proxy-headers",
        action="store_true",
        help="trust X-Forwarded-* headers (only behind a reverse proxy you run)",
    )
    serve.set_defaults(func=_serve)

    db = commands.add_parser(
        "db",
        help="manage the database schema",
        description="Apply or revert Alembic migrations on GENEXFER_DATABASE_URL.",
    )
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    up = db_commands.add_parser("upgrade", help="migrate up (default: to the newest revision)")
    up.add_argument("revision", nargs="?", default="head")
    down = db_commands.add_parser("downgrade", help="migrate down to REVISION ('base': empty)")
    down.add_argument("revision")
    db_commands.add_parser("show", help="print the database URL (password hidden) and its tables")
    db.set_defaults(func=_db)

    cli_keys.register(commands)

    worker = commands.add_parser(
        "worker",
        help="run a Celery worker for fine-tuning jobs (needs the 'train' extra and Redis)",
        description="Consume fine-tuning jobs from GENEXFER_BROKER_URL; shares "
        "GENEXFER_DATABASE_URL and GENEXFER_MODELS_DIR with the API. Any number may run.",
    )
    worker.add_argument("--concurrency", type=int, default=1, help="jobs at once (default 1)")
    worker.add_argument(
        "--ping", action="store_true", help="exit 0 if this host's worker answers (health check)"
    )
    worker.set_defaults(func=_worker)
    for entry in entry_points(group=COMMANDS_GROUP):
        entry.load()(commands)  # parsers only: torch loads when a training command runs
    return parser


TRAIN_EXTRA = {"torch", "onnx", "onnxscript", "safetensors", "sklearn", "anndata", "scanpy", "tqdm"}
TRAIN_EXTRA |= {"matplotlib"}  # genexfer preprocess's report


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `genexfer` command."""
    from app.config_errors import SettingsError

    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SettingsError as exc:
        print(f"genexfer: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:
        if exc.name not in TRAIN_EXTRA:
            raise
        print(f"{exc.name} is not installed: pip install 'genexfer[train]'", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
