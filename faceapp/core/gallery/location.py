"""Where a gallery is: a file path, or a PostgreSQL server's URL. Decided without
loading the database driver, which only a gallery on a server needs."""

from __future__ import annotations

import os
from urllib.parse import parse_qs, urlsplit

SERVER_SCHEMES = ("postgresql://", "postgres://")


def is_server_location(location) -> bool:
    return isinstance(location, str) and location.startswith(SERVER_SCHEMES)


def has_password(url: str) -> bool:
    """Whether a server URL carries a password (kept out of settings and command
    lines: libpq reads it from ~/.pgpass or a service file)."""
    parts = urlsplit(url)
    try:
        in_user = parts.password
    except ValueError:
        in_user = None
    return bool(in_user) or bool(parse_qs(parts.query).get("password"))


def describe(location: str | os.PathLike) -> str:
    """The location as shown to a person (a server's without its password)."""
    if is_server_location(location):
        from .server import display_location

        return display_location(location)
    return str(location)
