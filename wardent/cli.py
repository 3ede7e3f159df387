"""The `wardent` command: run the gateway, check a configuration, reload it, manage bans.

    wardent run    -c FILE [--workers N]
    wardent check  -c FILE
    wardent reload [-c FILE]
    wardent bans   list | add IP_OR_CIDR --for 1h --reason TEXT | remove IP_OR_CIDR  [-c FILE]
    wardent why    IP [-c FILE]

`check` works like `nginx -t`: every problem on its own line with the YAML
line number, and exit status 1. `reload`, `bans` and `why` ask the running
gateway through the admin API (found with -c FILE or WARDENT_ADMIN_URL /
WARDENT_ADMIN_TOKEN): exit 0 when done, 1 when refused or not found, 2 when
the admin API cannot be reached.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from wardent.config.load import ConfigError, load_settings

if TYPE_CHECKING:
    from wardent.admin.client import AdminClient

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
    _admin_option(reload)

    bans = commands.add_parser("bans", help="list, add or remove bans")
    actions = bans.add_subparsers(dest="action", required=True, metavar="ACTION")
    _admin_option(actions.add_parser("list", help="the bans in force"))
    add = actions.add_parser("add", help="ban an IP address or a network")
    add.add_argument("target", metavar="IP_OR_CIDR", help="e.g. 203.0.113.7 or 203.0.113.0/24")
    add.add_argument(
        "--for",
        dest="duration",
        required=True,
        metavar="DURATION",
        help="how long: 30m, 1h, 7d, ...",
    )
    add.add_argument("--reason", default="", metavar="TEXT", help="why, for the record")
    _admin_option(add)
    remove = actions.add_parser("remove", help="lift a ban")
    remove.add_argument("target", metavar="IP_OR_CIDR", help="as it was banned")
    _admin_option(remove)

    why = commands.add_parser("why", help="one client's state: ban, violations, ban history")
    why.add_argument("ip", metavar="IP", help="the client's address")
    _admin_option(why)
    return parser


def _admin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        metavar="FILE",
        help="find the admin listener and token in FILE "
        "(else WARDENT_ADMIN_URL / WARDENT_ADMIN_TOKEN, else http://127.0.0.1:9180)",
    )


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
    if args.command == "bans":
        if args.action == "list":
            return _bans_list(args.config)
        if args.action == "add":
            return _bans_add(args.config, args.target, args.duration, args.reason)
        return _bans_remove(args.config, args.target)
    if args.command == "why":
        return _why(args.config, args.ip)
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


def _admin_client(config_path: str | None) -> AdminClient | None:
    """The admin API's client, or None (said why on stderr) when the file does not tell."""
    # aiohttp is imported only by the commands that talk to the admin API.
    from wardent.admin.client import AdminClient, resolve_admin

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
        return None
    return AdminClient(url, token)


def _admin_request(
    config_path: str | None, method: str, path: str, json: Any = None
) -> tuple[int, Any] | int:
    """(status, body) of one admin API call, or the exit status when it could not be made."""
    from wardent.admin.client import AdminUnreachable, run_request

    client = _admin_client(config_path)
    if client is None:
        return EXIT_FAILED
    try:
        return run_request(client, method, path, json=json)
    except AdminUnreachable as error:
        print(
            f"wardent: {error}\nwardent: is wardent running? Point to its admin listener "
            "with -c FILE or WARDENT_ADMIN_URL",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE


def _reload(config_path: str | None) -> int:
    answer = _admin_request(config_path, "POST", "/reload")
    if isinstance(answer, int):
        return answer
    status, body = answer
    if status == 200:
        print("wardent: configuration reloaded")
        return EXIT_OK
    _print_error(status, body)
    if status == 422:
        print("wardent: reload failed; the old configuration keeps running", file=sys.stderr)
    return EXIT_FAILED


def _bans_list(config_path: str | None) -> int:
    answer = _admin_request(config_path, "GET", "/bans")
    if isinstance(answer, int):
        return answer
    status, body = answer
    if status != 200 or not isinstance(body, dict):
        _print_error(status, body)
        return EXIT_FAILED
    bans = body.get("bans", [])
    if not bans:
        print("wardent: no bans in force")
        return EXIT_OK
    rows = [("TARGET", "UNTIL (UTC)", "LEFT", "SOURCE", "COUNT", "REASON")]
    rows.extend(
        (
            str(ban["target"]),
            str(ban["until"]),
            _span(ban["remaining_seconds"]),
            str(ban["source"]),
            str(ban["count"]),
            str(ban["reason"]),
        )
        for ban in bans
    )
    _print_table(rows)
    return EXIT_OK


def _bans_add(config_path: str | None, target: str, duration: str, reason: str) -> int:
    request = {"target": target, "duration": duration, "reason": reason}
    answer = _admin_request(config_path, "POST", "/bans", request)
    if isinstance(answer, int):
        return answer
    status, body = answer
    if status != 201 or not isinstance(body, dict):
        _print_error(status, body)
        return EXIT_FAILED
    print(
        f"wardent: banned {body['target']} until {body['until']} "
        f"({_span(body['remaining_seconds'])}), ban #{body['count']} of this target"
    )
    return EXIT_OK


def _bans_remove(config_path: str | None, target: str) -> int:
    answer = _admin_request(config_path, "DELETE", "/bans/" + quote(target, safe=""))
    if isinstance(answer, int):
        return answer
    status, body = answer
    if status != 200:
        _print_error(status, body)
        return EXIT_FAILED
    print(f"wardent: ban of {target} removed")
    return EXIT_OK


def _why(config_path: str | None, ip: str) -> int:
    answer = _admin_request(config_path, "GET", "/clients/" + quote(ip, safe=""))
    if isinstance(answer, int):
        return answer
    status, body = answer
    if status != 200 or not isinstance(body, dict):
        _print_error(status, body)
        return EXIT_FAILED
    for line in _client_lines(body):
        print(line)
    return EXIT_OK


def _client_lines(state: dict[str, Any]) -> list[str]:
    """`GET /clients/{ip}` as text an operator reads top to bottom."""
    from wardent.config.units import format_duration

    lines = [f"client {state['ip']} (key {state['key']})"]
    if state.get("never_ban"):
        lines.append("  never_ban: yes, this address is never banned")
    ban = state.get("ban")
    if ban:
        lines.append(
            f"  banned:     until {ban['until']} ({_span(ban['remaining_seconds'])} left), "
            f"{ban['source']}, ban #{ban['count']} of {ban['target']}"
        )
        lines.append(f"  reason:     {ban['reason']}")
    else:
        lines.append("  banned:     no")
    violations = state.get("violations") or {}
    events = violations.get("events", [])
    window = format_duration(float(violations.get("window_seconds", 0)))
    lines.append(
        f"  violations: {violations.get('count', len(events))} of "
        f"{violations.get('max_violations', '?')} in the last {window}"
    )
    lines.extend(f"    {event['at']}  {event['guard']}" for event in events)
    history = state.get("history", [])
    if not history:
        lines.append("  history:    none")
        return lines
    lines.append("  history (newest first):")
    rows = [
        (
            str(event["at"]),
            str(event["action"]),
            str(event["target"]),
            f"until {event['until']}" if event["action"] == "ban" else "",
            str(event.get("source") or ""),
            str(event.get("reason") or "") if event["action"] == "ban" else "",
        )
        for event in history
    ]
    lines.extend("    " + line for line in _table_lines(rows))
    return lines


def _span(seconds: Any) -> str:
    """Whole seconds as the two largest units: 3d 4h, 59m 12s, 7s."""
    remaining = max(0, int(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if remaining >= size or (unit == "s" and not parts):
            parts.append(f"{remaining // size}{unit}")
            remaining %= size
    return " ".join(parts[:2])


def _table_lines(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    for line in _table_lines(rows):
        print(line)


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
