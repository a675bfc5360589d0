"""The CLI's one boundary turns every OSError into one line with the path and a fix (gstore/cli.py)."""
from __future__ import annotations

import errno
import os

import click
import pytest
from click.testing import CliRunner

from gstore.cli import OS_ERROR_FIXES, main, os_error_message


@pytest.mark.parametrize("code", sorted(OS_ERROR_FIXES))
def test_every_mapped_errno_gives_one_line_with_path_and_fix(code):
    what, fix = OS_ERROR_FIXES[code]
    msg = os_error_message(OSError(code, os.strerror(code), "/data/out/indices/c/0"))
    assert msg.startswith("/data/out/indices/c/0: ") and what in msg and f"({fix})" in msg
    assert "\n" not in msg and "Errno" not in msg


def test_unmapped_pathless_and_rename_errors():
    assert os_error_message(OSError(errno.ENOSPC, "No space left on device")) == \
        "disk full [No space left on device] (free space or choose another -o)"
    assert "/a -> /b" in os_error_message(OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b"))
    odd = os_error_message(OSError(errno.ECONNRESET, "Connection reset\nby peer", "/mnt/nfs/x"))
    assert odd == "/mnt/nfs/x: Connection reset by peer (check the path and retry)"
    assert os_error_message(OSError("plain text")) == "plain text (check the path and retry)"


@pytest.mark.parametrize("exc", [OSError(errno.EMFILE, "Too many open files"),
                                 PermissionError(errno.EACCES, "Permission denied", "/srv/s/zarr.json"),
                                 FileNotFoundError(errno.ENOENT, "No such file or directory", "x.csv"),
                                 IsADirectoryError(errno.EISDIR, "Is a directory", "edges")])
def test_oserror_from_any_command_is_one_click_error(monkeypatch, exc):
    @click.command("boom")
    def boom() -> None:
        raise exc

    monkeypatch.setattr(main, "get_command", lambda ctx, name: boom if name == "boom" else None)
    res = CliRunner().invoke(main, ["boom"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0] == "Error: " + os_error_message(exc)
    if exc.filename:
        assert exc.filename in lines[0]
