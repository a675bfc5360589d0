"""Is a text input really UTF-8 text with `\\n` line ends? Checks run on the first bytes of the
decompressed stream, before any delimiter or header detection, so that a wrong file fails with one
line that says what was found instead of a parse error (or a traceback) further on.

- A UTF-8 byte-order mark is dropped (`TextStream` never hands it out): otherwise it would glue onto
  the first field and make a headerless first edge look like a header.
- UTF-16/UTF-32 (by byte-order mark, or text whose every other byte is NUL) are refused: convert
  to UTF-8.
- Binary data (a NUL byte, many control bytes or invalid UTF-8 sequences; well-known archive magic
  bytes) is refused with the byte offset where it starts.
- CR-only line ends (classic Mac OS) are refused with the `tr` command that converts them.
"""
from __future__ import annotations

import re
from pathlib import Path

from gstore.errors import InputError

UTF8_BOM = b"\xef\xbb\xbf"
# longest first: the UTF-32 LE mark starts with the UTF-16 LE one
_OTHER_BOMS = ((b"\x00\x00\xfe\xff", "UTF-32 BE"), (b"\xff\xfe\x00\x00", "UTF-32 LE"),
               (b"\xfe\xff", "UTF-16 BE"), (b"\xff\xfe", "UTF-16 LE"))
# containers that are not (compressed) text; named so the message can say what to do
_ARCHIVES = ((b"PK\x03\x04", "a zip archive", "unzip it and pass the edge file inside"),
             (b"\xfd7zXZ\x00", "an xz stream", "decompress it (xz -d) or re-compress with gzip/zstd"),
             (b"7z\xbc\xaf\x27\x1c", "a 7z archive", "extract the edge file first"),
             (b"\x04\x22\x4d\x18", "an lz4 stream", "decompress it (lz4 -d) or re-compress with zstd"),
             (b"\x89HDF\r\n\x1a\n", "an HDF5 file", "export the edges as .npy, parquet or CSV"))
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")
# fractions of control bytes / undecodable characters above which a sample is binary, not text
# with a few damaged lines (those are reported per line by the parser)
_CONTROL_FRACTION = 0.01
_UNDECODABLE_FRACTION = 0.3
_CONVERT_HINT = "convert it to UTF-8, e.g. iconv -f {enc} -t UTF-8 FILE > FILE.utf8.csv"


def refuse_archive(path: str | Path, head: bytes) -> None:
    """InputError when the first bytes are the magic of a known non-text container."""
    for magic, what, hint in _ARCHIVES:
        if head.startswith(magic):
            raise InputError(f"file is {what}, not an edge list", path=path, hint=hint)


def strip_bom(path: str | Path, head: bytes) -> bytes:
    """`head` (the first >= 4 decompressed bytes, fewer only at end of stream) without a UTF-8
    byte-order mark. Raises InputError for a UTF-16/UTF-32 byte-order mark."""
    if head.startswith(UTF8_BOM):
        return head[len(UTF8_BOM):]
    for mark, enc in _OTHER_BOMS:
        if head.startswith(mark):
            raise InputError(f"file is {enc} text (byte-order mark {mark.hex(' ')}); gstore reads "
                             "UTF-8", path=path, hint=_CONVERT_HINT.format(enc=enc.replace(" ", "")))
    return head


def _utf16_without_bom(sample: bytes) -> str | None:
    """'UTF-16LE'/'UTF-16BE' when the sample looks like ASCII text in UTF-16 (NUL every other
    byte), else None."""
    head = sample[:512]
    if len(head) < 4:
        return None
    even, odd = head[0::2], head[1::2]
    if odd.count(0) >= 0.9 * len(odd) and even.count(0) <= 0.1 * len(even):
        return "UTF-16LE"
    if even.count(0) >= 0.9 * len(even) and odd.count(0) <= 0.1 * len(odd):
        return "UTF-16BE"
    return None


def check_text_sample(path: str | Path, sample: bytes) -> None:
    """Raise InputError when the first decompressed bytes of a text input are not UTF-8 text with
    `\\n` or `\\r\\n` line ends (see the module doc); `sample` comes after any UTF-8 BOM."""
    if not sample:
        return
    enc = _utf16_without_bom(sample)
    if enc is not None:
        raise InputError(f"file looks like {enc} text (every other byte is NUL); gstore reads "
                         "UTF-8", path=path, hint=_CONVERT_HINT.format(enc=enc))
    nul = sample.find(b"\x00")
    if nul >= 0:
        raise InputError(f"binary data at byte {nul} (a NUL byte); not a text edge list", path=path,
                         hint="pass a CSV/TSV/SNAP text file (optionally gzip/bz2/zstd), parquet or .npy")
    controls = len(_CONTROL.findall(sample))
    text = sample.decode("utf-8", errors="replace")
    bad_chars = text.count("\ufffd") - sample.count("\ufffd".encode())
    # a Latin-1 file has a few invalid sequences (its accented letters): those are reported per
    # line ("not valid UTF-8"); binary data has control bytes, or is mostly undecodable
    if controls > _CONTROL_FRACTION * len(sample) + 2 or bad_chars > _UNDECODABLE_FRACTION * len(text):
        first = _CONTROL.search(sample)
        at = _first_invalid_utf8(sample)
        where = min(x for x in (first.start() if first else None, at) if x is not None)
        raise InputError(f"binary data at byte {where} (control bytes or invalid UTF-8); not a "
                         "text edge list", path=path,
                         hint="pass UTF-8 text (CSV/TSV/SNAP, optionally compressed), parquet or .npy")
    lone_cr = len(re.findall(rb"\r(?!\n)", sample))
    newlines = sample.count(b"\n")
    if lone_cr and lone_cr >= newlines:
        raise InputError(f"line endings are CR only (\\r): {lone_cr} CR and {newlines} LF in the "
                         f"first {len(sample)} bytes", path=path,
                         hint="convert with tr '\\r' '\\n' < FILE > FILE.unix")


def _first_invalid_utf8(sample: bytes) -> int | None:
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.reason == "unexpected end of data" and e.start >= len(sample) - 3:
            return None     # a character cut by the end of the sample
        return e.start
    return None
