"""The daemon's TOML configuration."""

from __future__ import annotations

import pytest

from moduled.daemon.config import Config, load_config
from moduled.errors import InvalidArgument


def test_missing_default_config_gives_the_defaults(tmp_path):
    config = load_config(str(tmp_path / "absent.toml"))

    assert config == Config()
    assert config.socket == "/run/moduled/control.sock"


def test_missing_named_config_is_an_error(tmp_path):
    with pytest.raises(InvalidArgument, match="no such file"):
        load_config(str(tmp_path / "absent.toml"), required=True)


def test_plugin_settings_split_daemon_keys_from_the_plugins_own(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(
        '[daemon]\nrestart = "never"\nrestart_delay = 2\n'
        '[plugins.fim]\nrestart = "on-failure"\npaths = ["/etc"]\n'
    )

    config = load_config(str(path))
    fim = config.plugin("fim")
    other = config.plugin("other")

    assert fim.restart == "on-failure" and fim.restart_delay == 2.0
    assert dict(fim.options) == {"paths": ["/etc"]}
    assert other.restart == "never" and dict(other.options) == {}
    with pytest.raises(TypeError):
        fim.options["paths"] = []  # type: ignore[index]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[daemon\n", "not valid TOML"),
        ("[daemon]\nsokcet = 'x'\n", "unknown key 'sokcet'"),
        ("[daemon]\nrestart = 'always'\n", "restart 'always'"),
        ("[daemon]\nrestart_delay = true\n", "restart_delay must be a number"),
        ("[daemon]\nrestart_delay = -1\n", "must be positive"),
        ("[daemon]\nlog_level = 'loud'\n", "log_level 'loud'"),
        ("[daemon]\nplugins = 'dir'\n", "plugins must be a list"),
        ("[plugins]\nx = 1\n", "[plugins.x]: must be a table"),
        ("[plugins.x]\nenabled = 'yes'\n", "enabled must be a bool"),
        ("[extra]\n", "unknown table [extra]"),
    ],
)
def test_bad_config_names_the_file_and_the_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)

    with pytest.raises(InvalidArgument) as info:
        load_config(str(path))

    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_shipped_config_is_valid():
    from pathlib import Path

    shipped = Path(__file__).parents[2] / "daemon" / "moduled.toml"

    config = load_config(str(shipped), required=True)

    assert config.plugin("write_exec").options["window"] == 60
