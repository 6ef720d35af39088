"""The commands of the control protocol and who may run them.

Permissions come from the peer's credentials (``SO_PEERCRED``):

* queries (``ping``, ``status``, ``list``, ``show``, ``probes``, ``tail``)
  for root, for the daemon's own user, and for members of the socket's
  group (``[daemon] group``: primary or supplementary);
* state changes (``pause``, ``resume``, ``start``, ``stop``, ``reload``)
  for root only.

The socket's mode (0660) already keeps everybody else from connecting;
the check here holds even if someone loosens it.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from ..errors import ModuledError, StateError
from .control import Client, CommandError
from .protocol import COMMANDS, Request

if TYPE_CHECKING:
    from ..module import Module
    from .service import Daemon

__all__ = ["Commands"]

_MODULE_CALLS = ("pause", "resume", "start", "stop")


class Commands:
    """Run control requests against a :class:`~.service.Daemon`."""

    def __init__(self, daemon: Daemon) -> None:
        self._d = daemon
        self._euid = os.geteuid()
        self._gid: int | None = None
        self._gid_known = False

    def _group(self) -> int | None:
        if not self._gid_known:
            self._gid = self._d._group_gid()
            self._gid_known = True
        return self._gid

    def may_query(self, client: Client) -> bool:
        if client.uid in (0, self._euid):
            return True
        gid = self._group()
        return gid is not None and (client.gid == gid or gid in client.groups)

    def handle(self, client: Client, req: Request) -> Any:
        """Run ``req`` for ``client``; the server turns errors into replies."""
        changes = COMMANDS[req.cmd]
        if changes and client.uid != 0:
            raise CommandError(
                "permission", f"{req.cmd}: only root may change the daemon's state"
            )
        if not self.may_query(client):
            raise CommandError(
                "permission",
                f"{req.cmd}: uid {client.uid} may not query this daemon; join "
                "the socket's group",
            )
        if req.cmd in _MODULE_CALLS:
            return self._module_call(req.cmd, req.args)
        return getattr(self, f"_cmd_{req.cmd}")(client, req)

    def closed(self, client: Client) -> None:
        """A connection went away: stop streaming to it."""
        if client.streaming:
            self._d.tap.remove(client)

    # -- arguments ----------------------------------------------------------------

    @staticmethod
    def _str_arg(args: dict[str, Any], key: str, cmd: str) -> str:
        value = args.get(key)
        if not isinstance(value, str) or not value:
            raise CommandError("bad_request", f"{cmd}: give args.{key} as a string")
        return value

    def _module(self, name: str) -> Module:
        module = self._d.ctx.lookup(name)
        if module is None:
            raise CommandError("not_found", f"{name}: no such module")
        return module

    # -- commands -------------------------------------------------------------------

    def _cmd_ping(self, client: Client, req: Request) -> Any:
        return {"pong": True, "pid": os.getpid()}

    def _cmd_status(self, client: Client, req: Request) -> Any:
        return self._d.status()

    def _cmd_list(self, client: Client, req: Request) -> Any:
        return [self._d.module_record(m) for m in self._d.ctx.modules.values()]

    def _cmd_probes(self, client: Client, req: Request) -> Any:
        return self._d.probes()

    def _cmd_show(self, client: Client, req: Request) -> Any:
        module = self._module(self._str_arg(req.args, "module", "show"))
        out = module.dump()
        for key, value in self._d.module_record(module).items():
            if key != "sources":  # keep the dump's list of sources
                out[key] = value
        return out

    def _module_call(self, cmd: str, args: dict[str, Any]) -> Any:
        name = self._str_arg(args, "module", cmd)
        module = self._module(name)
        if module is self._d.supervisor or module is self._d.tap:
            raise CommandError(
                "permission", f"{name}: the daemon's own module cannot be changed"
            )
        if cmd in ("start", "stop"):
            self._d.cancel_restart(name)
        try:
            getattr(module, cmd)()
        except StateError as exc:
            raise CommandError("state", f"{name}: {exc}") from None
        except ModuledError as exc:
            raise CommandError("failed", f"{name}: {exc}") from None
        return self._d.module_record(module)

    def _cmd_reload(self, client: Client, req: Request) -> Any:
        ref = req.args.get("plugin")
        if ref is None:
            self._d.reload_all()
            return {"plugins": [p.record() for p in self._d.plugins.values()]}
        if not isinstance(ref, str) or not ref:
            raise CommandError("bad_request", "reload: args.plugin must be a string")
        plugin = self._d.find_plugin(ref)
        if plugin is None:
            raise CommandError("not_found", f"{ref}: no such plugin")
        if not os.path.isfile(plugin.path):
            self._d.unload_plugin(plugin.path)
            raise CommandError("not_found", f"{ref}: {plugin.path} is gone; unloaded")
        plugin = self._d.load_plugin(plugin.path)
        if plugin.state == "failed":
            raise CommandError("failed", plugin.error or f"{ref}: failed")
        return {"plugins": [plugin.record()]}

    def _cmd_tail(self, client: Client, req: Request) -> Any:
        pattern = req.args.get("topic", ".*")
        if not isinstance(pattern, str) or not pattern:
            raise CommandError("bad_request", "tail: args.topic must be a string")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise CommandError(
                "bad_request", f"tail: {pattern!r} is not a regular expression ({exc})"
            ) from None
        if client.streaming:
            raise CommandError("bad_request", "tail: this connection already tails")
        client.start_stream(req.id)
        self._d.tap.add(client, pattern)
        return {"topic": pattern, "streaming": True}
