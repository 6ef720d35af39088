"""Which plugin files a root daemon trusts."""

from __future__ import annotations

import os

import pytest

from moduled.daemon.trust import check_trusted, read_plugin
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


def test_root_owned_directory_inside_a_foreign_directory_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to own files as root and as others")
    outer = tmp_path / "outer"
    inner = outer / "plugins"
    inner.mkdir(parents=True)
    os.chmod(outer, 0o755)
    os.chmod(inner, 0o755)
    path = inner / "p.py"
    path.write_text("x = 1\n")
    os.chmod(path, 0o644)
    os.chown(outer, 65534, 65534)

    with pytest.raises(PermissionDenied) as info:
        check_trusted(str(path), euid=0)

    assert f"directory {outer} is owned by uid 65534" in str(info.value)
    assert f"chown root {outer}" in str(info.value)


def test_sticky_world_writable_ancestor_is_fine_when_the_next_is_roots(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to own files as root and as others")
    os.chmod(tmp_path, 0o755)
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    mine = sticky / "mine"
    mine.mkdir()
    os.chmod(mine, 0o755)
    (mine / "p.py").write_text("x = 1\n")
    os.chmod(mine / "p.py", 0o644)

    check_trusted(str(mine / "p.py"), euid=0)
    os.chown(mine, 65534, 65534)

    with pytest.raises(PermissionDenied, match=f"directory {mine} is owned by uid"):
        check_trusted(str(mine / "p.py"), euid=0)


def test_world_writable_directory_without_sticky_bit_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to own files as root and as others")
    os.chmod(tmp_path, 0o755)
    loose = tmp_path / "loose"
    (loose / "plugins").mkdir(parents=True)
    os.chmod(loose, 0o777)
    os.chmod(loose / "plugins", 0o755)
    (loose / "plugins" / "p.py").write_text("x = 1\n")
    os.chmod(loose / "plugins" / "p.py", 0o644)

    with pytest.raises(PermissionDenied, match=f"directory {loose} is writable by"):
        check_trusted(str(loose / "plugins" / "p.py"), euid=0)


def test_read_plugin_returns_the_text_of_the_file_it_checked(plugin, tmp_path):
    link = tmp_path / "link.py"
    link.symlink_to(plugin)

    assert read_plugin(str(link), euid=0) == b"x = 1\n"


def test_fifo_is_refused_without_blocking(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to own files as root and as others")
    os.chmod(tmp_path, 0o755)
    fifo = tmp_path / "p.py"
    os.mkfifo(fifo, 0o644)

    with pytest.raises(PermissionDenied, match="not a regular file"):
        read_plugin(str(fifo), euid=0)
