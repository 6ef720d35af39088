"""Plugins: Python files whose ``Module`` subclasses the daemon runs.

Loading a plugin file:

1. The file is opened once; as root,
   :func:`~moduled.daemon.trust.read_plugin` refuses it if someone other
   than root could change it or a directory on the way to it.
2. The text read from that descriptor is compiled and run as a fresh
   Python module with a unique name (``moduled_plugin_<stem>_<n>``), so
   two versions of one file, or two files with the same name in different
   directories, never share state; no bytecode cache is read or written.
3. Every ``moduled.Module`` subclass *defined in that file* (imported ones
   are skipped, and so are names starting with ``_``: abstract helpers) is
   instantiated without arguments — or with ``config=`` when its
   ``__init__`` takes that keyword.
4. Each module gets the plugin's settings, the config table
   ``[plugins.<stem>]`` minus the daemon's own keys, as the read-only
   mapping ``module.config``, before it is registered (so ``on_eval`` and
   ``on_start`` see it).
5. The modules are registered in the daemon's context, all or none.

A plugin whose import, instantiation or registration fails is *failed*: its
error is kept (shown by ``modulectl status``) and logged with the plugin's
name; the daemon carries on.  Reloading a file deregisters the modules of
its previous version first (their ``on_stop`` runs), then loads it anew; if
the new version is broken the plugin stays failed until the file is fixed.

The import runs on the loop thread: a plugin that blocks at import time
delays the daemon, so plugins do their work in hooks and sources.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import logging
import os
import re
import sys
import time
import types
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ModuledError
from ..flags import ModState
from ..module import Module
from .trust import read_plugin

if TYPE_CHECKING:
    from ..context import Context
__all__ = ["Plugin", "PluginError", "import_plugin", "plugin_files"]

log = logging.getLogger(__name__)

_counter = itertools.count(1)


class PluginError(ModuledError):
    """A plugin file could not be loaded; the message says why."""


@dataclasses.dataclass
class Plugin:
    """One plugin file and what became of it."""

    path: str
    name: str
    state: str = "failed"  # "loaded", "failed" or "disabled"
    error: str | None = None
    modules: list[Module] = dataclasses.field(default_factory=list)
    pymodule: str | None = None
    loaded_at: float = 0.0
    loads: int = 0

    def record(self) -> dict[str, Any]:
        """The plugin as ``modulectl`` shows it."""
        return {
            "name": self.name,
            "path": self.path,
            "state": self.state,
            "error": self.error,
            "modules": [m.name for m in self.modules],
            "loaded_at": self.loaded_at or None,
            "loads": self.loads,
        }


def plugin_name(path: str) -> str:
    """The plugin's name: its file name without ``.py``."""
    return os.path.basename(path).removesuffix(".py")


def is_plugin_file(name: str) -> bool:
    """Whether a directory entry is a plugin: ``*.py``, not hidden.

    Editors' and installers' temporary names (``.x.py.swp``, ``x.py~``,
    ``x.py.tmp``, ``.#x.py``) do not end in ``.py`` or start with a dot.
    """
    return name.endswith(".py") and not name.startswith((".", "_"))


def plugin_files(directory: str) -> list[str]:
    """The plugin files of ``directory``, sorted; [] if it does not exist."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.error("plugins %s: cannot list (%s)", directory, exc.strerror)
        return []
    out = []
    for name in sorted(names):
        if is_plugin_file(name):
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                out.append(path)
    return out


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    return f"{type(exc).__name__}: {exc}"


def _module_classes(pymod: types.ModuleType, base: type) -> list[type]:
    found = []
    for attr, obj in vars(pymod).items():
        if (
            isinstance(obj, type)
            and issubclass(obj, base)
            and obj is not base
            and obj.__module__ == pymod.__name__
            and not attr.startswith("_")
            and not inspect.isabstract(obj)
        ):
            found.append(obj)
    return found


def _instantiate(cls: type, options: Mapping[str, Any]) -> Module:
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    module = cls(config=options) if "config" in params else cls()
    module.config = options  # type: ignore[attr-defined]
    return module


def import_plugin(
    path: str, options: Mapping[str, Any] | None = None, *, trust: bool = False
) -> tuple[str, list[Module]]:
    """Import the file at ``path`` and build one module per Module subclass.

    Args:
        path: the plugin file.
        options: the plugin's settings (``module.config``).
        trust: as root, refuse a file others could have changed (see
            :mod:`.trust`); the text compiled is the text checked.

    Returns:
        The unique Python module name it was imported under, and the
        modules (not yet registered).

    Raises:
        PermissionDenied: ``trust`` is set and the file is not trusted.
        PluginError: the file cannot be read, does not import, defines no
            Module subclass, or a constructor raised; the message names the
            plugin and cause.
    """
    options = types.MappingProxyType(dict(options or {}))
    name = plugin_name(path)
    try:
        source = read_plugin(path, trust=trust)
    except OSError as exc:
        raise PluginError(
            f"plugin {name}: cannot read {path} ({exc.strerror})"
        ) from None
    safe = re.sub(r"\W", "_", name)
    modname = f"moduled_plugin_{safe}_{next(_counter)}"
    pymod = types.ModuleType(modname)
    pymod.__file__ = path
    # In sys.modules while it runs, as for any import: dataclasses, pickle and
    # typing look their module up there.
    sys.modules[modname] = pymod
    try:
        # Compiled from the text read above, not through the import system:
        # its bytecode cache keys on (mtime in seconds, size), so a quick
        # in-place edit of the same size would load the old code, and it
        # would write __pycache__ into the plugin directory.
        exec(compile(source, path, "exec"), pymod.__dict__)
        classes = _module_classes(pymod, Module)
        if not classes:
            raise PluginError(
                f"plugin {name}: {path} defines no moduled.Module subclass"
            )
        modules = [_instantiate(cls, options) for cls in classes]
    except PluginError:
        sys.modules.pop(modname, None)
        raise
    except BaseException as exc:
        # Anything a plugin's top level raises (SystemExit and
        # KeyboardInterrupt included: the daemon gets its signals through a
        # signalfd, never as KeyboardInterrupt) is that plugin's failure.
        sys.modules.pop(modname, None)
        raise PluginError(f"plugin {name}: import failed: {_describe(exc)}") from exc
    return modname, modules


def register_all(ctx: Context, plugin: Plugin, modules: Iterable[Module]) -> None:
    """Register ``modules`` for ``plugin``, all or none.

    Raises:
        PluginError: one registration failed; the others were undone.
    """
    done: list[Module] = []
    for module in modules:
        try:
            ctx.register(module)
        except ModuledError as exc:
            for prev in done:
                deregister_quietly(ctx, prev)
            raise PluginError(
                f"plugin {plugin.name}: module {module.name!r}: {exc}"
            ) from exc
        done.append(module)
    plugin.modules = done


def deregister_quietly(ctx: Context, module: Module) -> None:
    """Deregister ``module`` if it is still registered; log what fails."""
    if module.state is ModState.ZOMBIE:
        return
    try:
        ctx.deregister(module)
    except ModuledError as exc:
        log.error("module %s: cannot deregister: %s", module.name, exc)


def load(
    ctx: Context,
    plugin: Plugin,
    options: Mapping[str, Any],
    *,
    trust: bool = True,
) -> None:
    """(Re)load ``plugin`` into ``ctx``, setting its state and error.

    Never raises for a plugin's fault: a broken plugin ends up failed.
    """
    unload(ctx, plugin)
    plugin.loads += 1
    plugin.loaded_at = time.time()
    try:
        modname, modules = import_plugin(plugin.path, options, trust=trust)
        plugin.pymodule = modname
        register_all(ctx, plugin, modules)
    except ModuledError as exc:
        if plugin.pymodule is not None:
            sys.modules.pop(plugin.pymodule, None)
            plugin.pymodule = None
        plugin.state = "failed"
        plugin.error = str(exc)
        # The traceback of what the plugin's code raised, at the same level
        # as a failing hook's: the message alone rarely locates the bug.
        cause = exc.__cause__ if isinstance(exc, PluginError) else None
        log.error("%s", exc, exc_info=cause)
        return
    plugin.state = "loaded"
    plugin.error = None
    log.info(
        "plugin %s: loaded %s from %s",
        plugin.name,
        ", ".join(m.name for m in plugin.modules),
        plugin.path,
    )


def unload(ctx: Context, plugin: Plugin) -> None:
    """Deregister the plugin's modules and forget its Python module."""
    for module in plugin.modules:
        deregister_quietly(ctx, module)
    if plugin.modules:
        log.info("plugin %s: unloaded", plugin.name)
    plugin.modules = []
    if plugin.pymodule is not None:
        sys.modules.pop(plugin.pymodule, None)
        plugin.pymodule = None
