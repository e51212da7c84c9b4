"""What can go wrong with a gallery, as exceptions whose message says why (either
backend)."""

from __future__ import annotations

class GalleryError(Exception):
    """The gallery file cannot be used or an operation on it failed; the message says why."""


class GalleryLocked(GalleryError):
    """Another program held the gallery locked for longer than the timeout."""


class GalleryUnavailable(GalleryError):
    """The gallery's server cannot be reached now (stopped, restarting, network)."""


class NotFound(GalleryError, LookupError):
    """No person / face / event with that id."""


class NameTaken(GalleryError, ValueError):
    """Another person already has that name (names are compared case-insensitively)."""
