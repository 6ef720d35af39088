"""The daemon's configuration file, ``/etc/moduled/moduled.toml``.

::

    [daemon]
    plugins = ["/etc/moduled/plugins"]   # plugin directories, in load order
    socket = "/run/moduled/control.sock"
    group = "adm"              # may query the socket (mode 0660); optional
    log_level = "info"
    restart = "on-failure"     # default policy: "on-failure" or "never"
    restart_delay = 1.0        # first restart after 1 s, then 2, 4, 8 ...
    restart_max_delay = 60.0   # ... never more than this
    request_timeout = 5.0      # control clients must complete a request in time

    [plugins.exec_logger]      # one table per plugin file (its stem)
    enabled = true             # false: the file is not loaded
    restart = "never"          # overrides the daemon-wide policy
    ignore = ["cron"]          # anything else: the plugin's own settings

Per-plugin keys other than ``enabled``, ``restart``, ``restart_delay`` and
``restart_max_delay`` are the plugin's own settings: the loader gives them
to every module of the file as the read-only mapping ``self.config``.

Command-line flags win over the file; the file wins over the defaults.
Every error names the file, the table and the key.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import InvalidArgument

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_SOCKET",
    "LOG_LEVELS",
    "RESTART_POLICIES",
    "Config",
    "PluginSettings",
    "load_config",
]

DEFAULT_CONFIG = "/etc/moduled/moduled.toml"
DEFAULT_SOCKET = "/run/moduled/control.sock"
RESTART_POLICIES = ("on-failure", "never")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
_PLUGIN_KEYS = ("enabled", "restart", "restart_delay", "restart_max_delay")


@dataclasses.dataclass(frozen=True)
class PluginSettings:
    """What the config says about one plugin file."""

    enabled: bool = True
    restart: str = "on-failure"
    restart_delay: float = 1.0
    restart_max_delay: float = 60.0
    #: The plugin's own settings, given to its modules as ``self.config``.
    options: Mapping[str, Any] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )


@dataclasses.dataclass(frozen=True)
class Config:
    """The daemon's settings, after the file and the command line."""

    path: str | None = None
    plugin_dirs: tuple[str, ...] = ()
    socket: str = DEFAULT_SOCKET
    group: str | None = None
    log_level: str = "info"
    restart: str = "on-failure"
    restart_delay: float = 1.0
    restart_max_delay: float = 60.0
    request_timeout: float = 5.0
    plugins: Mapping[str, Mapping[str, Any]] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )

    def plugin(self, name: str) -> PluginSettings:
        """The settings of the plugin whose file stem is ``name``."""
        table = dict(self.plugins.get(name, {}))
        options = {k: v for k, v in table.items() if k not in _PLUGIN_KEYS}
        return PluginSettings(
            enabled=table.get("enabled", True),
            restart=table.get("restart", self.restart),
            restart_delay=float(table.get("restart_delay", self.restart_delay)),
            restart_max_delay=float(
                table.get("restart_max_delay", self.restart_max_delay)
            ),
            options=types.MappingProxyType(options),
        )


def _check_type(where: str, key: str, value: Any, kind: type | tuple) -> None:
    # TOML booleans are Python bools, which are ints: refuse them as numbers.
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if not ok:
        names = kind.__name__ if isinstance(kind, type) else "number"
        raise InvalidArgument(f"{where}: {key} must be a {names}, not {value!r}")


def _check_restart(where: str, table: Mapping[str, Any]) -> None:
    if "restart" in table and table["restart"] not in RESTART_POLICIES:
        raise InvalidArgument(
            f"{where}: restart {table['restart']!r}: expected one of "
            + ", ".join(repr(p) for p in RESTART_POLICIES)
        )
    for key in ("restart_delay", "restart_max_delay"):
        if key in table:
            _check_type(where, key, table[key], (int, float))
            if table[key] <= 0:
                raise InvalidArgument(f"{where}: {key} must be positive")


def _parse_daemon(where: str, table: Mapping[str, Any]) -> dict[str, Any]:
    known: dict[str, type | tuple[type, ...]] = {
        "plugins": list,
        "socket": str,
        "group": str,
        "log_level": str,
        "restart": str,
        "restart_delay": (int, float),
        "restart_max_delay": (int, float),
        "request_timeout": (int, float),
    }
    out: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise InvalidArgument(
                f"{where}: unknown key {key!r}; known keys: {', '.join(known)}"
            )
        _check_type(where, key, value, known[key])
        out[key] = value
    _check_restart(where, out)
    if "request_timeout" in out and out["request_timeout"] <= 0:
        raise InvalidArgument(f"{where}: request_timeout must be positive")
    if "plugins" in out:
        for item in out["plugins"]:
            if not isinstance(item, str) or not item:
                raise InvalidArgument(f"{where}: plugins must list directory paths")
        out["plugin_dirs"] = tuple(out.pop("plugins"))
    if "log_level" in out and out["log_level"].lower() not in LOG_LEVELS:
        raise InvalidArgument(
            f"{where}: log_level {out['log_level']!r}: expected one of "
            + ", ".join(LOG_LEVELS)
        )
    return out


def _parse_plugins(path: str, table: Any) -> dict[str, Mapping[str, Any]]:
    if not isinstance(table, dict):
        raise InvalidArgument(f"{path}: [plugins] must be a table of tables")
    out: dict[str, Mapping[str, Any]] = {}
    for name, sub in table.items():
        where = f"{path}: [plugins.{name}]"
        if not isinstance(sub, dict):
            raise InvalidArgument(f"{where}: must be a table")
        if "enabled" in sub:
            _check_type(where, "enabled", sub["enabled"], bool)
        _check_restart(where, sub)
        out[name] = types.MappingProxyType(dict(sub))
    return out


def load_config(path: str | None, *, required: bool = False) -> Config:
    """Read the TOML file at ``path``; defaults when it is absent.

    Args:
        path: the file; None for the defaults only.
        required: a missing file is an error (it was named on the command
            line) rather than a reason to use the defaults.

    Raises:
        InvalidArgument: unreadable file, bad TOML, unknown key, bad value.
    """
    if path is None:
        return Config()
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        if required:
            raise InvalidArgument(
                f"config {path}: no such file; create it or leave out --config"
            ) from None
        return Config()
    except OSError as exc:
        raise InvalidArgument(f"config {path}: cannot read ({exc.strerror})") from None
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidArgument(f"config {path}: not valid TOML ({exc})") from None
    fields: dict[str, Any] = {"path": path}
    for key, value in doc.items():
        if key == "daemon":
            if not isinstance(value, dict):
                raise InvalidArgument(f"config {path}: [daemon] must be a table")
            fields.update(_parse_daemon(f"{path}: [daemon]", value))
        elif key == "plugins":
            fields["plugins"] = types.MappingProxyType(_parse_plugins(path, value))
        else:
            raise InvalidArgument(
                f"config {path}: unknown table [{key}]; expected [daemon] or "
                "[plugins.NAME]"
            )
    return Config(**fields)
