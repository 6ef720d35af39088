"""The daemon: one context, the plugins' modules, and the daemon's own.

The daemon's own work runs in two modules of its context, so it shares the
loop with the plugins and never blocks it:

* ``moduled`` (the supervisor): the control socket, SIGTERM / SIGINT /
  SIGHUP, inotify watches on the plugin directories, the systemd watchdog
  timer, and ``MOD_STOPPED`` for the restart policy;
* ``moduled.tap``: streams published messages and kernel events to
  ``modulectl tail``.

Both carry ``ModFlag.PERSIST`` and refuse state changes from the socket
and from plugins (see :mod:`.guard`: a plugin cannot stop, pause or bind
them, nor end the loop with ``ctx.quit``).  The daemon blocks SIGTERM,
SIGINT and SIGHUP before it imports any plugin, so they wait for the
supervisor's signalfd rather than interrupting plugin code.

READY is sent once start-up is complete: the loop has run its first
round, every plugin module had its chance to start, and the eBPF programs
their sources asked for are compiled and attached (they are built after
the first round; READY waits until no probe is ``pending``, at most
:data:`READY_WAIT_S` seconds), so a client that sees READY sees the probes
attached.

Hot reload: an inotify event for ``NAME.py`` in a plugin directory is
debounced for a moment (an editor may create, write and rename in quick
succession), then the file is loaded again if it exists and unloaded if it
does not.  ``IN_CREATE`` alone is ignored for regular files (the write is
still going on; ``IN_CLOSE_WRITE`` follows) but honoured for symlinks.
"""

from __future__ import annotations

import grp
import logging
import os
import signal
import time
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..errors import InvalidArgument, ModuledError
from ..flags import ModState, SrcType
from ..module import Module
from ..pubsub import CTX_STARTED, MOD_STOPPED
from ..sources import (
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_ISDIR,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    Path,
    Signal,
    Timer,
)
from . import plugins as _plugins
from .commands import Commands
from .config import Config, load_config
from .control import ControlServer, bind_control_socket
from .guard import DaemonContext, OwnModule
from .notify import Notifier
from .plugins import Plugin, is_plugin_file, plugin_files, plugin_name
from .restart import Backoff
from .tap import Tap

if TYPE_CHECKING:
    import socket

    from ..context import TimerHandle
    from ..events import Event

__all__ = ["KERNEL_TYPES", "READY_WAIT_S", "Daemon", "default_plugin_dirs"]

log = logging.getLogger(__name__)

KERNEL_TYPES = frozenset({SrcType.PROBE, SrcType.PROC, SrcType.UEVENT, SrcType.RTNL})
_WATCH_MASK = IN_CLOSE_WRITE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM | IN_CREATE
_DEBOUNCE_NS = 50_000_000
_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: Longest wait for pending probes before READY is sent anyway.
READY_WAIT_S = 60.0
_READY_POLL_NS = 10_000_000


def _nearest_existing(path: str) -> str:
    """``path``'s nearest ancestor that is an existing directory."""
    parent = os.path.dirname(path)
    while parent != path and not os.path.isdir(parent):
        path, parent = parent, os.path.dirname(parent)
    return parent


def default_plugin_dirs() -> tuple[str, ...]:
    """The stock plugins: inside the wheel, or in the source checkout."""
    pkg = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for candidate in (
        os.path.join(pkg, "_data", "daemon", "plugins"),
        os.path.join(os.path.dirname(os.path.dirname(pkg)), "daemon", "plugins"),
    ):
        if os.path.isdir(candidate):
            return (candidate,)
    return ()


class Supervisor(OwnModule):
    """The daemon's own module: signals, control socket, watches, restarts."""

    name = "moduled"

    def __init__(self, daemon: Daemon) -> None:
        super().__init__(lambda: daemon.stopping)
        self._daemon = daemon
        self._watches: dict[str, Path] = {}
        self._ancestors: dict[str, Path] = {}
        self._missing: list[str] = []
        self._debounce: dict[str, TimerHandle] = {}

    def on_start(self) -> None:
        d = self._daemon
        for signo in _SIGNALS:
            self.register(Signal(signo))
        control = d.control_server()
        if control is not None:
            self.register(control)
        if d.notifier.watchdog_ns:
            self.register(Timer(d.notifier.watchdog_ns))
        self.watch(d.plugin_dirs)
        self.subscribe(MOD_STOPPED)
        self.subscribe(CTX_STARTED)

    def watch(self, dirs: tuple[str, ...]) -> list[str]:
        """Watch exactly ``dirs`` for plugin files coming and going.

        A directory that does not exist yet is waited for: its nearest
        existing ancestor is watched for new subdirectories, and once it
        appears it is watched and its plugins are loaded.

        Returns:
            The directories watched now that were not before.
        """
        for directory in list(self._watches):
            if directory not in dirs:
                self.deregister(self._watches.pop(directory))
        added: list[str] = []
        # A directory tree may be growing while the watches move down it
        # (mkdir -p): look again until nothing appeared in between.
        for _ in range(64):
            if not self._watch_once(dirs, added):
                break
        return added

    def _watch_once(self, dirs: tuple[str, ...], added: list[str]) -> bool:
        """One pass of :meth:`watch`; whether it must look again."""
        missing = []
        for directory in dirs:
            if directory in self._watches:
                continue
            if not os.path.isdir(directory):
                if directory not in self._missing:
                    log.warning(
                        "plugins %s: no such directory; watching for it", directory
                    )
                missing.append(directory)
                continue
            try:
                src = Path(directory, _WATCH_MASK)
                self.register(src)
            except ModuledError as exc:
                log.error("plugins %s: cannot watch: %s", directory, exc)
                continue
            self._watches[directory] = src
            added.append(directory)
        self._missing = missing
        nearest = {d: _nearest_existing(d) for d in missing}
        self._watch_ancestors(set(nearest.values()))
        return any(
            os.path.isdir(d) or _nearest_existing(d) != a for d, a in nearest.items()
        )

    def _watch_ancestors(self, wanted: set[str]) -> None:
        for ancestor in list(self._ancestors):
            if ancestor not in wanted:
                self.deregister(self._ancestors.pop(ancestor))
        for ancestor in wanted:
            if ancestor in self._ancestors or ancestor in self._watches:
                continue  # a plugin directory's own watch sees new dirs too
            try:
                src = Path(ancestor, IN_CREATE | IN_MOVED_TO | IN_ONLYDIR)
                self.register(src)
            except ModuledError as exc:
                log.error("plugins: cannot watch %s for new dirs: %s", ancestor, exc)
                continue
            self._ancestors[ancestor] = src

    def _dirs_appeared(self) -> None:
        """A directory was created where a missing plugin directory waits."""
        for directory in self.watch(self._daemon.plugin_dirs):
            log.info("plugins %s: directory appeared; loading it", directory)
            self._daemon.scan_new(directory)

    def on_evt(self, events: list[Event]) -> None:
        for ev in events:
            # Whatever goes wrong here, the daemon's own module must stay up:
            # it holds the signals, the watches and the control socket.
            try:
                self._handle(ev)
            except Exception:
                log.exception("daemon: handling %r failed", ev)

    def _handle(self, ev: Event) -> None:
        d = self._daemon
        kind = ev.type
        if kind is SrcType.PATH:
            self._path_event(ev.data)
        elif kind is SrcType.SIGNAL:
            if ev.data.signo == signal.SIGHUP:
                d.reload_all()
            else:
                log.info("daemon: signal %d: stopping", ev.data.signo)
                d.shutdown()
        elif kind is SrcType.TIMER:
            d.notifier.watchdog()
        elif kind is SrcType.PS:
            if ev.data.topic == MOD_STOPPED and ev.data.sender is not None:
                d.module_stopped(ev.data.sender)
            elif ev.data.topic == CTX_STARTED:
                d.started()

    def _path_event(self, data: Any) -> None:
        if data.mask & IN_Q_OVERFLOW:
            log.warning("plugins: inotify queue overflowed; rescanning")
            self._daemon.scan()
            if self._missing:
                self._dirs_appeared()
            return
        if self._missing and data.mask & IN_ISDIR:
            self._dirs_appeared()
        if data.path in self._ancestors:
            return
        name = data.name
        if not is_plugin_file(name):
            return
        path = os.path.join(data.path, name)
        if data.mask & IN_CREATE and not os.path.islink(path):
            return
        old = self._debounce.pop(path, None)
        if old is not None:
            old.cancel()
        assert self._ctx is not None
        due = time.monotonic_ns() + _DEBOUNCE_NS
        self._debounce[path] = self._ctx._call_at(due, lambda: self._settle(path))

    def _settle(self, path: str) -> None:
        self._debounce.pop(path, None)
        self._daemon.sync_file(path)

    def on_stop(self) -> None:
        for handle in self._debounce.values():
            handle.cancel()
        self._debounce.clear()
        self._watches.clear()
        self._ancestors.clear()
        self._missing = []
        super().on_stop()


class Daemon:
    """Everything ``moduled`` runs: build it, then call :meth:`run`.

    Args:
        config: the settings (file plus command line).
        plugin_dirs: the plugin directories to load, in order.
        socket_path: where to serve the control protocol; None for none.
        config_path: the file SIGHUP re-reads; None to keep ``config``.
        trust: refuse untrusted plugin files when running as root.
    """

    def __init__(
        self,
        config: Config,
        *,
        plugin_dirs: tuple[str, ...],
        socket_path: str | None,
        config_path: str | None = None,
        cli_plugin_dirs: bool = False,
        trust: bool = True,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self.plugin_dirs = plugin_dirs
        self.socket_path = socket_path
        self.config_path = config_path
        self._cli_plugin_dirs = cli_plugin_dirs
        self.trust = trust
        self.notifier = notifier or Notifier()
        self.ctx = DaemonContext("moduled", describe=self._describe_module)
        self.plugins: dict[str, Plugin] = {}
        self.owner: dict[str, Plugin] = {}
        self.restarts: dict[str, int] = {}
        self._backoff: dict[str, Backoff] = {}
        self._pending: dict[str, tuple[TimerHandle, float]] = {}
        self.started_at = time.time()
        self.started_ns = time.monotonic_ns()
        self.ready_ns: int | None = None
        self.stopping = False
        self.control: ControlServer | None = None
        self.supervisor = Supervisor(self)
        self.tap = Tap(lambda: self.stopping)
        self._sock: socket.socket | None = None
        self._ready_deadline = 0

    # -- life cycle -----------------------------------------------------------

    def _group_gid(self) -> int | None:
        group = self.config.group
        if not group:
            return None
        try:
            return grp.getgrnam(group).gr_gid
        except KeyError:
            if group.isdigit():
                return int(group)
            raise InvalidArgument(
                f"group {group!r}: no such group; create it or fix [daemon] group"
            ) from None

    def run(self) -> int:
        """Bind the socket, load the plugins and loop until told to stop.

        Returns:
            The loop's exit code (0 after SIGTERM / SIGINT).

        Raises:
            ModuledError: the control socket cannot be set up.
        """
        # Blocked from now on: the supervisor's signalfd reads them once the
        # loop runs, and none interrupts a plugin's import (SIGINT would
        # otherwise surface in plugin code as KeyboardInterrupt).
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        self.control_server()
        self.ctx.register(self.supervisor)
        self.ctx.register(self.tap)
        self.scan()
        try:
            return self.ctx.loop()
        finally:
            for handle, _due in self._pending.values():
                handle.cancel()
            self._pending.clear()
            self.notifier.close()

    def control_server(self) -> ControlServer | None:
        """The control server, bound anew if there is none or it was closed.

        Raises:
            ModuledError: the socket cannot be bound.
        """
        if self.socket_path is None:
            return None
        if self.control is None or self.control.spent:
            sock = bind_control_socket(self.socket_path, self._group_gid())
            commands = Commands(self)
            self.control = ControlServer(
                sock,
                commands.handle,
                commands.closed,
                request_timeout=float(self.config.request_timeout),
            )
        return self.control

    def _describe_module(self, module: Module) -> str:
        plugin = self.owner.get(module.name)
        if plugin is not None and module in plugin.modules:
            return f"module {module.name!r} of plugin {plugin.name}"
        return f"module {module.name!r}"

    def record_and_replay(self, store: str | None, replay_from: str | None) -> None:
        """Record delivered events into ``store`` and replay ``replay_from``
        at loop start (DESIGN §5).  The daemon's own modules are left out:
        a replayed SIGHUP or plugin-file event would act again.

        Raises:
            ModuledError: a file that cannot be used, with the reason.
        """
        own = (self.supervisor.name, self.tap.name)
        if store:
            self.ctx.store(os.path.abspath(store), exclude=own)
        if replay_from:
            self.ctx.replay_from(os.path.abspath(replay_from))

    def started(self) -> None:
        """The loop is up and every plugin had its chance to start.

        The eBPF programs the plugins' probes asked for are built by
        callbacks queued for the end of this round; READY waits for them.
        """
        if self.ready_ns is None:
            self._ready_deadline = time.monotonic_ns() + int(READY_WAIT_S * 1e9)
            self.ctx._call_soon(self._maybe_ready)
        self._sweep()

    def pending_probes(self) -> list[str]:
        """The kernel sources still waiting for their program to be built."""
        return [
            f"{module.name}: {src.key}"
            for module in self.ctx.modules.values()
            for src in module.sources()
            if src.type in KERNEL_TYPES and getattr(src, "state", None) == "pending"
        ]

    def _maybe_ready(self) -> None:
        if self.ready_ns is not None or self.stopping:
            return
        pending = self.pending_probes()
        now = time.monotonic_ns()
        if pending and now < self._ready_deadline:
            self.ctx._call_at(now + _READY_POLL_NS, self._maybe_ready)
            return
        if pending:
            log.warning(
                "daemon: probes still pending after %.0f s: %s; ready anyway",
                READY_WAIT_S,
                ", ".join(pending),
            )
        self.ready_ns = now
        self.notifier.ready(self.status_line())
        log.info("daemon: ready (%s)", self.status_line())
        self._sweep()

    def shutdown(self) -> None:
        """Stop every module (detaching every source) and leave the loop.

        The plugins' modules are stopped here, newest first, rather than by
        the loop's exit: stopping drops their queues, whereas the exit
        flushes pending messages first, which a module that keeps telling
        itself (an event storm) would stretch for seconds.
        """
        self.notifier.stopping()
        self.stopping = True
        for handle, _due in self._pending.values():
            handle.cancel()
        self._pending.clear()
        for module in reversed(self.plugin_modules()):
            if module.state in (ModState.RUNNING, ModState.PAUSED):
                try:
                    module.stop()
                except ModuledError as exc:
                    log.error("module %s: cannot stop: %s", module.name, exc)
        self.ctx.shutdown_quit(0)

    def status_line(self) -> str:
        mods = self.plugin_modules()
        running = sum(1 for m in mods if m.state is ModState.RUNNING)
        failed = sum(1 for p in self.plugins.values() if p.state == "failed")
        probes = [
            getattr(src, "state", "attached")
            for m in mods
            for src in m.sources()
            if src.type is SrcType.PROBE
        ]
        attached = probes.count("attached")
        return (
            f"{running}/{len(mods)} modules running, {len(self.plugins)} plugins"
            f" ({failed} failed), {attached}/{len(probes)} probes attached"
        )

    def _changed(self) -> None:
        if self.ready_ns is not None:
            self.notifier.status(self.status_line())

    # -- plugins ----------------------------------------------------------------

    def plugin_modules(self) -> list[Module]:
        return [m for p in self.plugins.values() for m in p.modules]

    def scan(self) -> None:
        """Load every plugin file of every plugin directory."""
        seen = set()
        for directory in self.plugin_dirs:
            for path in plugin_files(directory):
                seen.add(path)
                self.load_plugin(path)
        for path in list(self.plugins):
            if path not in seen:
                self.unload_plugin(path)

    def scan_new(self, directory: str) -> None:
        """Load the plugin files of ``directory`` that are not loaded yet."""
        for path in plugin_files(directory):
            if path not in self.plugins:
                self.load_plugin(path)

    def find_plugin(self, ref: str) -> Plugin | None:
        """A plugin by path or by name."""
        plugin = self.plugins.get(ref) or self.plugins.get(os.path.abspath(ref))
        if plugin is not None:
            return plugin
        for plugin in self.plugins.values():
            if plugin.name == ref:
                return plugin
        return None

    def load_plugin(self, path: str) -> Plugin:
        """(Re)load the plugin file at ``path``."""
        plugin = self.plugins.get(path)
        if plugin is None:
            plugin = Plugin(path=path, name=plugin_name(path))
            self.plugins[path] = plugin
        self._forget(plugin)
        settings = self.config.plugin(plugin.name)
        if not settings.enabled:
            _plugins.unload(self.ctx, plugin)
            plugin.state, plugin.error = "disabled", None
            log.info("plugin %s: disabled in the config", plugin.name)
        else:
            _plugins.load(self.ctx, plugin, settings.options, trust=self.trust)
        for module in plugin.modules:
            self.owner[module.name] = plugin
        self._changed()
        if self.ctx.looping:
            # on_eval runs at the end of this round; look at the outcome then.
            self.ctx._call_at(time.monotonic_ns() + 10_000_000, self._sweep)
        return plugin

    def unload_plugin(self, path: str) -> None:
        plugin = self.plugins.pop(path, None)
        if plugin is None:
            return
        self._forget(plugin)
        _plugins.unload(self.ctx, plugin)
        log.info("plugin %s: removed", plugin.name)
        self._changed()

    def _forget(self, plugin: Plugin) -> None:
        for module in plugin.modules:
            if self.owner.get(module.name) is plugin:
                del self.owner[module.name]
            self.cancel_restart(module.name)
            self._backoff.pop(module.name, None)

    def sync_file(self, path: str) -> None:
        """Bring a plugin file's modules in line with what is on disk."""
        if os.path.isfile(path):
            self.load_plugin(path)
        else:
            self.unload_plugin(path)

    def reload_all(self) -> None:
        """SIGHUP: read the config again, then reload every plugin."""
        self.notifier.reloading()
        if self.config_path is not None:
            try:
                self.config = load_config(self.config_path)
            except ModuledError as exc:
                log.error("daemon: reload: %s; keeping the previous config", exc)
            else:
                if not self._cli_plugin_dirs and self.config.plugin_dirs:
                    self.plugin_dirs = self.config.plugin_dirs
                if self.socket_path and self.config.socket != self.socket_path:
                    log.warning(
                        "daemon: reload: a new socket path applies after a restart"
                    )
        for plugin in list(self.plugins.values()):
            self._forget(plugin)
            _plugins.unload(self.ctx, plugin)
        self.plugins.clear()
        self.supervisor.watch(self.plugin_dirs)
        self.scan()
        log.info("daemon: reloaded (%s)", self.status_line())
        self.notifier.ready(self.status_line())

    # -- restart policy ---------------------------------------------------------

    def module_stopped(self, module: Module) -> None:
        """A module stopped: restart it later if it failed and policy says so."""
        self._changed()
        plugin = self.owner.get(module.name)
        if (
            self.stopping
            or plugin is None
            or module not in plugin.modules
            or module.failure is None
            or module.state is not ModState.STOPPED
            or module.name in self._pending
        ):
            return
        settings = self.config.plugin(plugin.name)
        failure = f"{type(module.failure).__name__}: {module.failure}"
        if settings.restart == "never":
            log.error(
                "plugin %s: module %s failed (%s); restart policy is never",
                plugin.name,
                module.name,
                failure,
            )
            return
        backoff = self._backoff.get(module.name)
        if backoff is None:
            backoff = Backoff(settings.restart_delay, settings.restart_max_delay)
            self._backoff[module.name] = backoff
        delay = backoff.next_delay()
        log.error(
            "plugin %s: module %s failed (%s); restarting in %.1f s",
            plugin.name,
            module.name,
            failure,
            delay,
        )
        due = time.monotonic_ns() + int(delay * 1e9)
        handle = self.ctx._call_at(due, lambda: self._restart(module))
        self._pending[module.name] = (handle, time.monotonic() + delay)

    def _sweep(self) -> None:
        # A module whose on_eval raised is stopped without MOD_STOPPED.
        for module in self.plugin_modules():
            if module.failure is not None and module.state is ModState.STOPPED:
                self.module_stopped(module)

    def cancel_restart(self, name: str) -> None:
        pending = self._pending.pop(name, None)
        if pending is not None:
            pending[0].cancel()

    def restart_in(self, name: str) -> float | None:
        pending = self._pending.get(name)
        if pending is None:
            return None
        return max(0.0, pending[1] - time.monotonic())

    def _restart(self, module: Module) -> None:
        self._pending.pop(module.name, None)
        if module.state is not ModState.STOPPED or module.failure is None:
            return
        self.restarts[module.name] = self.restarts.get(module.name, 0) + 1
        backoff = self._backoff.get(module.name)
        if backoff is not None:
            backoff.started()
        log.info("module %s: restarting", module.name)
        try:
            module.start()
        except ModuledError as exc:
            log.error("module %s: cannot restart: %s", module.name, exc)
        self._changed()

    # -- introspection ----------------------------------------------------------

    def module_record(self, module: Module) -> dict[str, Any]:
        """A module as ``modulectl list`` shows it."""
        state = module.state.value
        failure = None
        if module.failure is not None:
            failure = f"{type(module.failure).__name__}: {module.failure}"
            if module.state is ModState.STOPPED:
                state = "failed"
        plugin = self.owner.get(module.name)
        stats = module.stats()
        return {
            "name": module.name,
            "state": state,
            "plugin": plugin.name if plugin is not None else None,
            "path": plugin.path if plugin is not None else None,
            "failure": failure,
            "restarts": self.restarts.get(module.name, 0),
            "restart_in": self.restart_in(module.name),
            "sources": len(module.sources()),
            "sent": stats.sent_msgs,
            "recv": stats.recv_msgs,
            "lost": stats.lost_events,
            "pending": stats.pending,
        }

    def probes(self) -> list[dict[str, Any]]:
        """Every attached kernel source, with its event and loss counts."""
        out = []
        for module in self.ctx.modules.values():
            for src in module.sources():
                if src.type not in KERNEL_TYPES:
                    continue
                record = src.dump()
                record["module"] = module.name
                out.append(record)
        return out

    def status(self) -> dict[str, Any]:
        modules = [self.module_record(m) for m in self.ctx.modules.values()]
        plugins = [p.record() for p in self.plugins.values()]
        stats = self.ctx.stats()
        probes = self.probes()
        return {
            "daemon": {
                "pid": os.getpid(),
                "version": __version__,
                "uptime_s": round((time.monotonic_ns() - self.started_ns) / 1e9, 3),
                "started_at": self.started_at,
                "config": self.config_path,
                "socket": self.socket_path,
                "plugin_dirs": list(self.plugin_dirs),
                "ready": self.ready_ns is not None,
                "clients": len(self.control.clients) if self.control else 0,
                "tails": self.tap.streams,
                "tap_observing": self.tap.observing,
                "refused_quits": self.ctx.refused_quits,
                "revivals": {m.name: m.revivals for m in (self.supervisor, self.tap)},
                "store": self.ctx._store.dump() if self.ctx._store else None,
                "replay": self.ctx._replay_counts,
            },
            "context": stats._asdict(),
            "modules": modules,
            "plugins": plugins,
            "lost": sum(m["lost"] for m in modules),
            "probes": {
                "attached": len(probes),
                "events": sum(p.get("events", 0) for p in probes),
                "lost": sum(p.get("lost", 0) for p in probes),
            },
        }
