"""Path sources on real inotify watches."""

from __future__ import annotations

import os
import pathlib

import pytest

import moduled as md

from .helpers import Probe, run

QUEUE_LIMIT = pathlib.Path("/proc/sys/fs/inotify/max_queued_events")


def _names(probe, mask=md.IN_CREATE):
    return {(ev.path, ev.name) for ev in probe.of(md.SrcType.PATH) if ev.mask & mask}


def test_file_creation_and_modification_are_reported(tmp_path):
    def start(m):
        m.register(md.Path(tmp_path, md.IN_CREATE | md.IN_MODIFY))
        (tmp_path / "a").write_text("one")

    def evt(m, events):
        if any(ev.data.mask & md.IN_MODIFY for ev in events):
            m.ctx.quit(0)

    probe = Probe(start, evt)

    assert run(probe) == 0

    evs = probe.of(md.SrcType.PATH)
    assert evs[0] == md.PathEvent(str(tmp_path), "a", md.IN_CREATE, 0)
    assert any(ev.mask == md.IN_MODIFY and ev.name == "a" for ev in evs)


def test_watching_a_file_reports_events_about_itself(tmp_path):
    target = tmp_path / "f"
    target.write_text("")

    def start(m):
        m.register(md.Path(target, md.IN_CLOSE_WRITE))
        target.write_text("x")

    probe = Probe(start, lambda m, evs: m.ctx.quit(0))

    assert run(probe) == 0

    assert probe.of(md.SrcType.PATH)[0] == md.PathEvent(
        str(target), "", md.IN_CLOSE_WRITE, 0
    )


def test_the_key_is_the_absolute_normalised_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    src = md.Path("./x/../.", md.IN_CREATE)

    assert src.key == str(tmp_path)


def test_recursive_watch_sees_entries_made_in_a_new_subdirectory(tmp_path):
    (tmp_path / "old").mkdir()

    def start(m):
        src = m.register(md.Path(tmp_path, md.IN_CREATE, recursive=True))
        m.state_["src"] = src
        # All made before the loop reads a single event: the watch on "new"
        # cannot exist yet when "new/a" and "new/deep/b" appear.
        os.makedirs(tmp_path / "new" / "deep")
        (tmp_path / "new" / "a").write_text("")
        (tmp_path / "new" / "deep" / "b").write_text("")
        (tmp_path / "old" / "c").write_text("")

    def evt(m, events):
        if ("new/deep", "b") in {
            (os.path.relpath(p, tmp_path), n) for p, n in _names(m)
        }:
            m.state_["watches"] = m.state_["src"].dump()["watches"]
            # and a file made after the watch exists is a real event
            (tmp_path / "new" / "deep" / "later").write_text("")
        if any(ev.data.name == "later" for ev in events):
            m.ctx.quit(0)

    probe = Probe(start, evt)

    assert run(probe) == 0

    seen = {(os.path.relpath(p, tmp_path), n) for p, n in _names(probe)}
    assert {
        (".", "new"),
        ("new", "a"),
        ("new", "deep"),
        ("new/deep", "b"),
        ("old", "c"),
        ("new/deep", "later"),
    } <= seen
    assert probe.state_["watches"] == 4  # tmp_path, old, new, new/deep
    dirs = [ev for ev in probe.of(md.SrcType.PATH) if ev.name == "deep"]
    assert dirs[0].mask == md.IN_CREATE | md.IN_ISDIR


def test_recursive_watch_forgets_a_removed_directory(tmp_path):
    (tmp_path / "sub").mkdir()

    def start(m):
        m.state_["src"] = src = m.register(
            md.Path(tmp_path, md.IN_DELETE, recursive=True)
        )
        m.state_["before"] = src.dump()["watches"]
        (tmp_path / "sub").rmdir()

    def evt(m, events):
        if any(ev.data.mask & md.IN_IGNORED for ev in events):
            m.state_["after"] = m.state_["src"].dump()["watches"]
            m.ctx.quit(0)

    probe = Probe(start, evt)

    assert run(probe) == 0

    assert probe.state_["before"] == 2
    assert probe.state_["after"] == 1
    masks = [ev.mask for ev in probe.of(md.SrcType.PATH)]
    assert md.IN_DELETE | md.IN_ISDIR in masks


def test_recursive_watch_does_not_deliver_events_outside_the_mask(tmp_path):
    def start(m):
        m.register(md.Path(tmp_path, md.IN_CLOSE_WRITE, recursive=True))
        (tmp_path / "d").mkdir()  # IN_CREATE is watched internally only
        (tmp_path / "f").write_text("")

    probe = Probe(start, lambda m, evs: m.ctx.quit(0))

    assert run(probe) == 0

    evs = probe.of(md.SrcType.PATH)
    assert evs == [md.PathEvent(str(tmp_path), "f", md.IN_CLOSE_WRITE, 0)]


@pytest.fixture
def small_inotify_queue():
    if os.geteuid() != 0:
        pytest.skip("needs root to lower /proc/sys/fs/inotify/max_queued_events")
    old = QUEUE_LIMIT.read_text()
    QUEUE_LIMIT.write_text("16\n")
    try:
        yield 16
    finally:
        QUEUE_LIMIT.write_text(old)


@pytest.mark.kernel
def test_queue_overflow_is_counted_logged_and_delivered(
    tmp_path, small_inotify_queue, caplog
):
    def start(m):
        m.state_["src"] = m.register(md.Path(tmp_path, md.IN_CREATE))
        for i in range(small_inotify_queue * 4):
            (tmp_path / f"f{i}").write_text("")

    def evt(m, events):
        if any(ev.data.mask & md.IN_Q_OVERFLOW for ev in events):
            m.state_["dump"] = m.state_["src"].dump()
            m.state_["stats"] = m.stats()
            m.ctx.quit(0)

    probe = Probe(start, evt)

    with caplog.at_level("WARNING", logger="moduled.sources.path"):
        assert run(probe) == 0

    evs = probe.of(md.SrcType.PATH)
    assert len(evs) <= small_inotify_queue + 1  # the overflow itself
    assert evs[-1] == md.PathEvent(str(tmp_path), "", md.IN_Q_OVERFLOW, 0)
    assert probe.state_["dump"]["overflows"] == 1
    assert probe.state_["dump"]["lost"] == 1
    assert probe.state_["stats"].lost_events >= 1
    assert "overflow" in caplog.text


def test_missing_path_raises_not_found_and_registers_nothing(tmp_path):
    def start(m):
        with pytest.raises(md.NotFound, match="does not exist"):
            m.register(md.Path(tmp_path / "nope", md.IN_CREATE))
        m.state_["left"] = m.sources()
        m.ctx.quit(0)

    probe = Probe(start)

    assert run(probe) == 0
    assert probe.state_["left"] == []


def test_onlydir_on_a_file_is_an_invalid_argument(tmp_path):
    (tmp_path / "f").write_text("")

    def start(m):
        with pytest.raises(md.InvalidArgument, match="not a directory"):
            m.register(md.Path(tmp_path / "f", md.IN_CREATE | md.IN_ONLYDIR))
        m.ctx.quit(0)

    assert run(Probe(start)) == 0


@pytest.mark.parametrize(
    "mask", [0, md.IN_ONLYDIR, True, 1.0, "IN_CREATE", None, 1 << 40, md.IN_ISDIR]
)
def test_path_rejects_a_mask_without_events_or_with_unknown_bits(tmp_path, mask):
    with pytest.raises(md.InvalidArgument):
        md.Path(tmp_path, mask)


@pytest.mark.parametrize("path", ["", 5, None, "a\0b"])
def test_path_rejects_a_bad_path(path):
    with pytest.raises(md.InvalidArgument):
        md.Path(path, md.IN_CREATE)


def test_path_dump_has_what_modulectl_shows(tmp_path):
    def start(m):
        m.state_["dump"] = m.register(
            md.Path(tmp_path, md.IN_CREATE, recursive=True)
        ).dump()
        m.ctx.quit(0)

    probe = Probe(start)

    run(probe)

    dump = probe.state_["dump"]
    assert dump["path"] == str(tmp_path)
    assert dump["mask"] == md.IN_CREATE
    assert dump["recursive"] is True
    assert dump["watches"] == 1
    assert dump["overflows"] == 0


def test_recursive_watch_follows_directories_moved_in_and_out(tmp_path):
    tree, outside = tmp_path / "tree", tmp_path / "outside"
    tree.mkdir()
    (outside / "inner").mkdir(parents=True)
    (outside / "inner" / "x").write_text("")

    def start(m):
        m.state_["src"] = m.register(
            md.Path(tree, md.IN_CREATE | md.IN_MOVED_TO, recursive=True)
        )
        os.rename(outside, tree / "moved")

    def evt(m, events):
        src = m.state_["src"]
        if "in" not in m.state_:
            m.state_["in"] = src.dump()["watches"]
            os.rename(tree / "moved", tmp_path / "gone")
            (tree / "tick").write_text("")  # something to wake us after
        elif any(ev.data.name == "tick" for ev in events):
            m.state_["out"] = src.dump()["watches"]
            m.ctx.quit(0)

    probe = Probe(start, evt)

    assert run(probe) == 0

    seen = {(os.path.relpath(p, tree), n) for p, n in _names(probe, ~0)}
    assert {(".", "moved"), ("moved", "inner"), ("moved/inner", "x")} <= seen
    assert probe.state_["in"] == 3  # tree, moved, moved/inner
    assert probe.state_["out"] == 1
