"""The `wardent` command: run the gateway, check a configuration, reload it.

    wardent run    -c FILE [--workers N]
    wardent check  -c FILE
    wardent reload [-c FILE]

`check` works like `nginx -t`: every problem on its own line with the YAML
line number, and exit status 1. `reload` asks the running gateway through the
admin API (found with -c FILE or WARDENT_ADMIN_URL / WARDENT_ADMIN_TOKEN).
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from wardent.config.load import ConfigError, load_settings

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNREACHABLE = 2


def _version() -> str:
    try:
        return version("wardent")
    except PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wardent", description="Reverse proxy and security gateway."
    )
    parser.add_argument("--version", action="version", version=f"wardent {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the gateway in the foreground")
    run.add_argument("-c", "--config", required=True, metavar="FILE", help="the YAML file")
    run.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="worker processes (default: one)",
    )

    check = commands.add_parser("check", help="validate a configuration file, like nginx -t")
    check.add_argument("-c", "--config", required=True, metavar="FILE", help="the YAML file")

    reload = commands.add_parser("reload", help="make the running gateway re-read its file")
    reload.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="find the admin listener and token in FILE "
        "(else WARDENT_ADMIN_URL / WARDENT_ADMIN_TOKEN, else http://127.0.0.1:9180)",
    )
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        return _run(args.config, args.workers)
    if args.command == "check":
        return _check(args.config)
    if args.command == "reload":
        return _reload(args.config)
    raise AssertionError(f"unhandled command {args.command}")  # argparse already refused it


def _run(config_path: str, workers: int | None) -> int:
    # Imported here so that `check` and `reload` do not load the whole gateway.
    from wardent.gateway import run_gateway

    return run_gateway(config_path, workers)


def _check(config_path: str) -> int:
    try:
        settings = load_settings(config_path)
    except ConfigError as error:
        lines = [str(issue) for issue in error.issues] or [str(error)]
        for line in lines:
            print(line, file=sys.stderr)
        print(f"wardent: configuration file {config_path} test failed", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"wardent: listen {settings.listen.public} (admin {settings.listen.admin}), "
        f"upstream {settings.upstream.url}"
    )
    print(f"wardent: configuration file {config_path} test is successful")
    return EXIT_OK


def _reload(config_path: str | None) -> int:
    # aiohttp is imported only by the commands that talk to the admin API.
    from wardent.admin.client import (
        AdminClient,
        AdminUnreachable,
        resolve_admin,
        run_request,
    )

    try:
        url, token = resolve_admin(config_path, os.environ)
    except ConfigError as error:
        for line in [str(issue) for issue in error.issues] or [str(error)]:
            print(line, file=sys.stderr)
        print(
            f"wardent: cannot find the admin listener in {config_path}; "
            "fix the file or set WARDENT_ADMIN_URL and WARDENT_ADMIN_TOKEN",
            file=sys.stderr,
        )
        return EXIT_FAILED
    try:
        status, body = run_request(AdminClient(url, token), "POST", "/reload")
    except AdminUnreachable as error:
        print(
            f"wardent: {error}\nwardent: is wardent running? Point to its admin listener "
            "with -c FILE or WARDENT_ADMIN_URL",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    if status == 200:
        print("wardent: configuration reloaded")
        return EXIT_OK
    _print_error(status, body)
    if status == 422:
        print("wardent: reload failed; the old configuration keeps running", file=sys.stderr)
    return EXIT_FAILED


def _print_error(status: int, body: Any) -> None:
    if isinstance(body, dict):
        for issue in body.get("issues", []):
            print(issue, file=sys.stderr)
        detail = body.get("detail") or body.get("error") or body
        print(f"wardent: HTTP {status}: {detail}", file=sys.stderr)
    else:
        print(f"wardent: HTTP {status}: {str(body).strip()[:500]}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
