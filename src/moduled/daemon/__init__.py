"""The moduled daemon: plugins, control socket, systemd integration.

``moduled.daemon.main:main`` is the ``moduled`` command; the pieces are:
:mod:`.config` (the TOML file), :mod:`.plugins` and :mod:`.trust` (loading
plugin files), :mod:`.restart` (the restart policy), :mod:`.service` (the
daemon's context and its own modules), :mod:`.control`, :mod:`.protocol`
and :mod:`.commands` (the control socket), :mod:`.tap` (``tail``),
:mod:`.notify` (sd_notify) and :mod:`.journal` (log output).
"""
