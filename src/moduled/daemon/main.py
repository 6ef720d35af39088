"""The ``moduled`` command.

::

    moduled [--config FILE] [--plugins DIR]... [--socket PATH]
            [--log-level LEVEL]          the daemon
    moduled run FILE.py...               one context, those files, no socket
    moduled doctor [--json]              what this machine's kernel offers

The daemon reads ``/etc/moduled/moduled.toml`` (or ``--config``), loads the
plugins of ``--plugins`` (repeatable; else the config's ``plugins``; else
the stock plugins shipped with moduled), serves the control socket
(``--socket``, else ``$MODULED_SOCKET``, else the config's ``socket``,
else ``/run/moduled/control.sock``) and loops until SIGTERM or SIGINT.

``moduled run`` imports the files, registers the modules they define and
loops until they all stop or one calls ``ctx.quit(code)``; its exit code is
the quit code (128 + the signal's number after SIGTERM or SIGINT).

Exit codes: 0 success (and the daemon after SIGTERM/SIGINT), 1 a runtime
failure (the socket cannot be bound, a file to run does not load), 2 a
usage or configuration error.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from collections.abc import Sequence

from .. import __version__
from ..context import Context
from ..errors import ModuledError
from .config import DEFAULT_CONFIG, LOG_LEVELS, load_config
from .journal import setup_logging
from .notify import Notifier
from .plugins import PluginError, import_plugin
from .service import Daemon, default_plugin_dirs

__all__ = ["main"]

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def _daemon_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="moduled",
        description="Run the moduled daemon (subcommands: run FILE.py..., doctor).",
    )
    p.add_argument("--config", metavar="FILE", help=f"default {DEFAULT_CONFIG}")
    p.add_argument(
        "--plugins",
        metavar="DIR",
        action="append",
        default=[],
        help="plugin directory (repeatable)",
    )
    p.add_argument("--socket", metavar="PATH", help="control socket path")
    p.add_argument("--log-level", metavar="LEVEL", choices=LOG_LEVELS)
    p.add_argument("--store", metavar="DB", help="record delivered events")
    p.add_argument("--replay-from", metavar="DB", help="replay recorded events")
    p.add_argument("--version", action="version", version=f"moduled {__version__}")
    return p


def _die(message: str, code: int) -> int:
    print(f"moduled: {message}", file=sys.stderr)
    return code


def run_daemon(argv: Sequence[str]) -> int:
    args = _daemon_parser().parse_args(argv)
    try:
        config = load_config(
            args.config or DEFAULT_CONFIG, required=args.config is not None
        )
        setup_logging(args.log_level or config.log_level)
    except ModuledError as exc:
        return _die(str(exc), EXIT_USAGE)

    plugin_dirs = tuple(os.path.abspath(d) for d in args.plugins)
    cli_dirs = bool(plugin_dirs)
    if not plugin_dirs:
        plugin_dirs = config.plugin_dirs or default_plugin_dirs()
    socket_path = args.socket or os.environ.get("MODULED_SOCKET") or config.socket
    daemon = Daemon(
        config,
        plugin_dirs=plugin_dirs,
        socket_path=os.path.abspath(socket_path),
        config_path=args.config or DEFAULT_CONFIG,
        cli_plugin_dirs=cli_dirs,
        notifier=Notifier(),
    )
    try:
        daemon.record_and_replay(args.store, args.replay_from)
    except ModuledError as exc:
        return _die(str(exc), EXIT_USAGE)
    log.info(
        "daemon: moduled %s, pid %d, plugins from %s",
        __version__,
        os.getpid(),
        ", ".join(plugin_dirs) or "nowhere",
    )
    try:
        return daemon.run()
    except ModuledError as exc:
        log.error("daemon: %s", exc)
        return EXIT_FAILURE


def run_files(argv: Sequence[str]) -> int:
    """``moduled run FILE.py...``: the default main of libmodule."""
    p = argparse.ArgumentParser(
        prog="moduled run", description="Run the modules of FILE.py in one context."
    )
    p.add_argument("files", metavar="FILE.py", nargs="+")
    p.add_argument("--log-level", metavar="LEVEL", choices=LOG_LEVELS)
    args = p.parse_args(argv)
    setup_logging(args.log_level or "warning")

    ctx = Context("main")
    for path in args.files:
        if not os.path.isfile(path):
            return _die(f"{path}: no such file", EXIT_FAILURE)
        try:
            _name, modules = import_plugin(os.path.abspath(path))
            for module in modules:
                ctx.register(module)
        except (PluginError, ModuledError) as exc:
            if isinstance(exc, PluginError) and exc.__cause__ is not None:
                traceback.print_exception(exc.__cause__, file=sys.stderr)
            return _die(str(exc), EXIT_FAILURE)

    # quit() may be called from anywhere: it sets a flag and wakes the loop's
    # eventfd, so the loop ends its round and stops every module properly.
    def stop(signo: int, _frame: object) -> None:
        ctx.quit(128 + signo)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return ctx.loop()


def run_doctor(argv: Sequence[str]) -> int:
    from ..kernel import doctor

    return int(doctor.main(list(argv)) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``moduled`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "run":
        code = run_files(args[1:])
    elif args and args[0] == "doctor":
        try:
            code = run_doctor(args[1:])
        except BrokenPipeError:  # `moduled doctor | head`
            code = EXIT_OK
    else:
        code = run_daemon(args)
    if argv is None:
        sys.exit(code)
    return code


if __name__ == "__main__":
    main()
