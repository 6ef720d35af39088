"""``make install`` (scripts/install.sh) into a temporary root."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from moduled.daemon.config import load_config
from moduled.daemon.trust import check_trusted

ROOT = Path(__file__).parents[2]


def run_install(paths: dict[str, Path]) -> None:
    env = dict(os.environ, **{k: str(v) for k, v in paths.items()})
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """One install under a temporary root: nothing touches /opt or /etc."""
    base = tmp_path_factory.mktemp("install")
    os.chmod(base, 0o755)
    paths = {
        "PREFIX": base / "opt" / "moduled",
        "BINDIR": base / "bin",
        "SYSCONFDIR": base / "etc",
        "UNITDIR": base / "units",
    }
    run_install(paths)
    return paths


def test_install_links_working_commands_into_bindir(installed):
    moduled = installed["BINDIR"] / "moduled"
    modulectl = installed["BINDIR"] / "modulectl"

    version = subprocess.run(
        [str(moduled), "--version"], capture_output=True, text=True, timeout=60
    )
    usage = subprocess.run(
        [str(modulectl), "--timeout=0", "status"], capture_output=True, text=True
    )

    assert os.readlink(moduled) == str(installed["PREFIX"] / "bin" / "moduled")
    assert version.returncode == 0 and version.stdout.startswith("moduled ")
    assert usage.returncode == 2


def test_installed_unit_points_at_the_install_and_verifies(installed):
    unit = installed["UNITDIR"] / "moduled.service"
    shipped = (ROOT / "systemd" / "moduled.service").read_text()
    text = unit.read_text()
    bindir, etc = installed["BINDIR"], installed["SYSCONFDIR"]

    exec_start = next(line for line in text.splitlines() if line.startswith("Exec"))

    assert exec_start.startswith(f"ExecStart={bindir}/moduled --config {etc}/moduled/")
    back = text.replace(f"{bindir}/moduled", "/usr/local/bin/moduled")
    assert back.replace(f"{etc}/moduled/", "/etc/moduled/") == shipped
    for key in ("Type=notify", "WatchdogSec=", "ExecReload=", "RuntimeDirectory="):
        assert key in text
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "moduled.service" not in result.stderr, result.stderr


def test_installed_config_loads_the_installed_plugins(installed):
    config = installed["SYSCONFDIR"] / "moduled" / "moduled.toml"

    loaded = load_config(str(config))

    assert loaded.plugin_dirs == (str(installed["SYSCONFDIR"] / "moduled/plugins"),)


def test_install_ships_trusted_stock_plugins(installed):
    confdir = installed["SYSCONFDIR"] / "moduled"

    plugins = sorted(p.name for p in (confdir / "plugins").glob("*.py"))

    assert plugins == sorted(p.name for p in (ROOT / "daemon/plugins").glob("*.py"))
    for name in plugins:
        path = confdir / "plugins" / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
        if os.geteuid() == 0:
            assert path.stat().st_uid == 0
            check_trusted(str(path), euid=0)


def test_reinstall_keeps_the_admins_config(installed):
    config = installed["SYSCONFDIR"] / "moduled" / "moduled.toml"
    config.write_text("# mine\n")

    run_install(installed)

    assert config.read_text() == "# mine\n"
