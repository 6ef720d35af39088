"""``modulectl``: query and steer a running moduled.

::

    modulectl [--socket PATH] [--json] [--timeout S] COMMAND

    status                 uptime, context stats, modules, plugins, losses
    list                   the modules
    show MODULE            one module's dump
    pause|resume|start|stop MODULE
    reload [PLUGIN]        one plugin (name or path), or config and all
    tail [TOPIC]           published messages and kernel events (topics
                           kernel/<module>/<type>) matching TOPIC (a
                           regular expression, default .*) until Ctrl-C
    probes                 attached kernel sources with event/loss counts

The socket is ``--socket``, else ``$MODULED_SOCKET``, else
``/run/moduled/control.sock``.  Output is an aligned table (or
``name: state`` lines); ``--json`` prints the daemon's result as JSON
instead (``list``: an array of modules; ``status``: an object with
``modules`` and ``plugins``; ``tail``: one event object a line).
Errors go to stderr as ``SUBJECT: ERROR (reason)``.

Exit codes:
    0  success
    1  the daemon refused or failed the command (no such module, wrong
       state, plugin failed to load)
    2  usage error (also --timeout not a finite number of seconds above 0)
    3  cannot connect to the daemon, or no reply in time
    4  permission denied (by the socket's mode or by the daemon)
    5  protocol error (the reply made no sense, the daemon hung up)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from ..daemon.config import DEFAULT_SOCKET
from ..daemon.protocol import ProtocolError
from .client import ConnectError, ControlClient, ReplyError
from .table import render

__all__ = ["main"]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONNECT = 3
EXIT_DENIED = 4
EXIT_PROTOCOL = 5

_MODULE_CALLS = {
    "pause": "paused",
    "resume": "resumed",
    "start": "started",
    "stop": "stopped",
}


def _timeout(text: str) -> float:
    """argparse type of ``--timeout``: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a finite number of seconds above 0"
        )
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modulectl",
        description="Query and steer a running moduled.",
        epilog="exit codes: 0 ok, 1 error reply, 2 usage, 3 cannot connect, "
        "4 permission denied, 5 protocol error",
    )
    p.add_argument("--socket", metavar="PATH", help="control socket")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")
    p.add_argument(
        "--timeout",
        type=_timeout,
        default=10.0,
        metavar="S",
        help="seconds to wait for a reply (default 10)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub.add_parser("status", help="daemon, context, modules and plugins")
    sub.add_parser("list", help="the modules")
    sub.add_parser("probes", help="attached kernel sources")
    show = sub.add_parser("show", help="one module's dump")
    show.add_argument("module")
    for cmd in _MODULE_CALLS:
        sp = sub.add_parser(cmd, help=f"{cmd} a module")
        sp.add_argument("module")
    reload = sub.add_parser("reload", help="reload a plugin, or everything")
    reload.add_argument("plugin", nargs="?")
    tail = sub.add_parser("tail", help="stream messages and kernel events")
    tail.add_argument("topic", nargs="?", default=".*")
    return p


def _err(subject: str, reason: str) -> None:
    prefix = f"{subject}: "
    if reason.startswith(prefix):
        reason = reason[len(prefix) :]
    print(f"{subject}: ERROR ({reason})", file=sys.stderr)


def _duration(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m {s}s"
    if minutes:
        return f"{minutes}m {s}s"
    return f"{seconds:.1f}s"


def _modules_table(modules: list[dict[str, Any]]) -> str:
    rows = [
        (
            m["name"],
            m["state"],
            m.get("plugin"),
            m.get("sources"),
            m.get("recv"),
            m.get("sent"),
            m.get("lost"),
            m.get("restarts"),
            m.get("failure"),
        )
        for m in modules
    ]
    headers = ("MODULE", "STATE", "PLUGIN", "SOURCES", "RECV", "SENT", "LOST")
    return render((*headers, "RESTARTS", "FAILURE"), rows)


def _plugins_table(plugins: list[dict[str, Any]]) -> str:
    rows = [
        (
            p["name"],
            p["state"],
            ",".join(p.get("modules") or []),
            p["path"],
            p.get("error"),
        )
        for p in plugins
    ]
    return render(("PLUGIN", "STATE", "MODULES", "PATH", "ERROR"), rows)


def _probes_table(probes: list[dict[str, Any]]) -> str:
    rows = [
        (
            p.get("module"),
            p.get("type"),
            p.get("key"),
            p.get("state", "attached"),
            p.get("events"),
            p.get("lost"),
            p.get("error"),
        )
        for p in probes
    ]
    headers = ("MODULE", "TYPE", "KEY", "STATE", "EVENTS", "LOST", "ERROR")
    return render(headers, rows)


def _print_status(st: dict[str, Any]) -> None:
    d, c, pr = st["daemon"], st["context"], st["probes"]
    print(
        f"moduled {d['version']}, pid {d['pid']}, up {_duration(d['uptime_s'])}, "
        f"socket {d['socket']}"
    )
    print(
        f"context: {c['num_modules']} modules ({c['running_modules']} running), "
        f"busy {c['activity_freq'] * 100:.2f}%, {c['recv_msgs']} messages, "
        f"{st['lost']} events lost"
    )
    print(
        f"probes: {pr['attached']} attached, {pr['events']} events, {pr['lost']} lost"
    )
    print()
    print(_modules_table(st["modules"]))
    print()
    print(_plugins_table(st["plugins"]) if st["plugins"] else "no plugins")


def _print_show(dump: dict[str, Any]) -> None:
    skip = {"sources", "stats", "failure"}
    for key, value in dump.items():
        if key in skip or isinstance(value, (dict, list)):
            continue
        print(f"{key}: {'-' if value is None else value}")
    for key, value in (dump.get("stats") or {}).items():
        print(f"stats.{key}: {value}")
    subs = dump.get("subscriptions")
    if isinstance(subs, list) and subs:
        print("subscriptions: " + ", ".join(str(s) for s in subs))
    sources = dump.get("sources") or []
    if sources:
        print()
        rows = [
            (s.get("type"), s.get("key"), s.get("events"), s.get("lost"))
            for s in sources
        ]
        print(render(("TYPE", "KEY", "EVENTS", "LOST"), rows))
    failure = dump.get("failure")
    if isinstance(failure, dict) and failure.get("traceback"):
        print()
        print(failure["traceback"].rstrip())


def _tail(client: ControlClient, topic: str, as_json: bool) -> int:
    client.request("tail", {"topic": topic})
    try:
        for event in client.events():
            if as_json:
                print(json.dumps(event), flush=True)
                continue
            if "lost" in event and "topic" not in event:
                print(f"-- {event['lost']} messages lost (reader too slow)", flush=True)
                continue
            stamp = time.strftime("%H:%M:%S")
            message = json.dumps(event.get("message"), separators=(",", ":"))
            sender = event.get("sender") or "-"
            print(f"{stamp} {event['topic']} {sender} {message}", flush=True)
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK


def _run(args: argparse.Namespace, client: ControlClient) -> int:
    cmd = args.command
    if cmd == "tail":
        return _tail(client, args.topic, args.json)
    if cmd in _MODULE_CALLS:
        result = client.request(cmd, {"module": args.module})
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{args.module}: {_MODULE_CALLS[cmd]}")
        return EXIT_OK
    if cmd == "reload":
        req = {"plugin": args.plugin} if args.plugin else {}
        result = client.request("reload", req)
        if args.json:
            print(json.dumps(result))
            return EXIT_OK
        code = EXIT_OK
        for p in result["plugins"]:
            if p["state"] == "failed":
                _err(p["name"], p.get("error") or "failed")
                code = EXIT_ERROR
            else:
                word = "reloaded" if p["state"] == "loaded" else p["state"]
                print(f"{p['name']}: {word}")
        return code
    if cmd == "show":
        result = client.request("show", {"module": args.module})
    else:
        result = client.request(cmd)
    if args.json:
        print(json.dumps(result, indent=None))
    elif cmd == "status":
        _print_status(result)
    elif cmd == "list":
        print(_modules_table(result))
    elif cmd == "probes":
        print(_probes_table(result) if result else "no probes attached")
    elif cmd == "show":
        _print_show(result)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``modulectl`` console script."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_USAGE
        if argv is None:
            raise
        return code
    path = args.socket or os.environ.get("MODULED_SOCKET") or DEFAULT_SOCKET
    subject = getattr(args, "module", None) or getattr(args, "plugin", None)
    subject = subject or args.command
    try:
        with ControlClient(path, timeout=args.timeout) as client:
            code = _run(args, client)
    except ConnectError as exc:
        _err("modulectl", str(exc))
        code = EXIT_DENIED if exc.denied else EXIT_CONNECT
    except ReplyError as exc:
        _err(subject, str(exc))
        code = EXIT_DENIED if exc.code == "permission" else EXIT_ERROR
    except ProtocolError as exc:
        _err("modulectl", f"protocol error: {exc}")
        code = EXIT_PROTOCOL
    except KeyboardInterrupt:
        code = EXIT_OK if args.command == "tail" else 130
    except BrokenPipeError:
        code = EXIT_OK
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
