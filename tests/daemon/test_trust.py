"""Which plugin files a root daemon trusts."""

from __future__ import annotations

import os

import pytest

from moduled.daemon.trust import check_trusted
from moduled.errors import PermissionDenied

pytestmark = pytest.mark.root


@pytest.fixture
def plugin(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to own files as root and as others")
    os.chmod(tmp_path, 0o755)
    path = tmp_path / "p.py"
    path.write_text("x = 1\n")
    os.chmod(path, 0o644)
    return path


def test_root_owned_file_in_a_root_owned_directory_is_trusted(plugin):
    check_trusted(str(plugin), euid=0)


def test_world_writable_file_is_refused_with_the_fix(plugin):
    os.chmod(plugin, 0o646)

    with pytest.raises(PermissionDenied) as info:
        check_trusted(str(plugin), euid=0)

    assert "writable by others (mode 0646)" in str(info.value)
    assert f"chmod o-w {plugin}" in str(info.value)


def test_group_writable_directory_is_refused(plugin):
    os.chmod(plugin.parent, 0o775)

    with pytest.raises(PermissionDenied, match=r"directory .* writable by group"):
        check_trusted(str(plugin), euid=0)


def test_symlink_to_a_foreign_file_is_refused(plugin, tmp_path):
    os.chown(plugin, 65534, 65534)
    link = tmp_path / "link.py"
    link.symlink_to(plugin)

    with pytest.raises(PermissionDenied, match="owned by uid 65534"):
        check_trusted(str(link), euid=0)


def test_unprivileged_daemon_does_not_check(plugin):
    os.chmod(plugin, 0o666)

    check_trusted(str(plugin), euid=1000)
