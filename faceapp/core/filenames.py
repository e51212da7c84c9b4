"""File names as text, and what kind of thing a name points at.

A name on Linux is bytes: it need not be UTF-8, and may hold control characters.
Python hands such names over as str with lone surrogates, which SQLite, JSON and a
strict terminal refuse. display_name() is the one place a path becomes text: the name
as the file system holds it, undecodable bytes written as \\xNN (b'Jos\\xe9.jpg' ->
'Jos\\\\xe9.jpg'), control and bidi characters escaped so a name cannot forge a line
of output or hide its extension.
"""

from __future__ import annotations

import os
import re
import stat

# C0/C1 controls, DEL, and the bidi controls that reorder what a terminal shows
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def display_name(path: str | bytes | os.PathLike) -> str:
    """The path as printable, storable text (see the module's docstring)."""
    try:
        raw = os.fsencode(path)
    except UnicodeEncodeError:  # a str with surrogates that no file name gave
        raw = os.fspath(path).encode("utf-8", "backslashreplace")
    return _UNSAFE.sub(_escape, raw.decode("utf-8", "backslashreplace"))


def special_kind(mode: int) -> str | None:
    """What a stat mode is, when it is neither a regular file nor a folder: reading a
    FIFO waits for a writer for ever, a device never ends (/dev/zero) or has side
    effects, a socket cannot be read at all. None for files and folders."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def special_file(path: str | os.PathLike) -> str | None:
    """Why `path` (a link followed) must not be opened as a file, or None. Only stats:
    nothing is opened. A link pointing nowhere is reported too."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "a link to nothing" if os.path.islink(path) else None
    except OSError:
        return None  # the reader says what is wrong when it tries
    kind = special_kind(st.st_mode)
    return f"{kind}, not a photo file: left unread" if kind else None
