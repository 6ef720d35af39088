"""Log lines carry syslog priorities under systemd's journal."""

from __future__ import annotations

import logging
import os

from moduled.daemon.journal import JournalFormatter, under_journal


def test_journal_lines_start_with_the_syslog_priority():
    fmt = JournalFormatter()
    rec = logging.LogRecord("moduled.x", logging.ERROR, __file__, 1, "a\nb", (), None)
    info = logging.LogRecord("moduled.x", logging.INFO, __file__, 1, "up", (), None)

    assert fmt.format(rec) == "<3>moduled.x: a\n<3>b"
    assert fmt.format(info) == "<6>moduled.x: up"


def test_journal_stream_is_recognised_by_device_and_inode(tmp_path, monkeypatch):
    path = tmp_path / "stream"
    with open(path, "w") as stream:
        st = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert under_journal(stream) is True
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
        assert under_journal(stream) is False
