"""What a failed CLI call must look like: exit 1 or 2, no traceback, one `Error` line."""
from __future__ import annotations


def one_line_error(r, *needles, sole: bool = False) -> str:
    """The one `Error` line of click result `r`, which must hold every needle.

    sole: the error line must also be the whole output (no usage text, no log lines).
    """
    assert r.exit_code in (1, 2), (r.exit_code, r.output, repr(r.exception))
    assert "Traceback" not in r.output, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith("Error")]
    assert len(lines) == 1, r.output
    if sole:
        assert r.output.strip() == lines[0], r.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]
