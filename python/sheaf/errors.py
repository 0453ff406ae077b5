"""The exceptions the sheaf reader raises, one per status code of the C ABI.

Every one is a `sheaf.Error`; those with a natural built-in counterpart are that too, so
`except FileNotFoundError` catches a missing path as it would for plain files.
"""

from __future__ import annotations


class Error(Exception):
    """Anything the sheaf reader fails with."""


class NotFound(Error, FileNotFoundError):
    """The dataset holds no such path."""


class InvalidPath(Error, ValueError):
    """A path that cannot name an entry (`..`, a NUL byte, ...)."""


class IsADirectory(Error, IsADirectoryError):
    """A directory where a file was needed."""


class NotADirectory(Error, NotADirectoryError):
    """Not a directory where one was needed."""


class WrongKind(Error, OSError):
    """A path that cannot be used as asked (a symlink out of the dataset, a link loop)."""


class CorruptData(Error):
    """Stored bytes are damaged (checksum mismatch, corrupt container or index); the
    wrong bytes are never returned."""


class UnsupportedVersion(Error):
    """A file written by a format version this library cannot read: upgrade sheaf."""


class NotADataset(Error):
    """The URI names no published dataset (or an unfinished fold)."""


class OriginError(Error, OSError):
    """The store holding the dataset (S3, HDFS, ...) failed after its retries."""


class StorageError(Error, OSError):
    """An operating-system error on a local file (permissions, a full disk, ...)."""


class BufferTooSmall(Error, ValueError):
    """The caller's buffer is smaller than the file; `needed` is the size it must have."""

    def __init__(self, message: str, needed: int):
        super().__init__(message)
        self.needed = needed


class InternalError(Error):
    """A bug in the native library (a caught panic). Please report it."""


_BY_STATUS: dict[int, type[Error]] = {
    2: ValueError,  # SHEAF_INVALID_ARGUMENT: a bug in these bindings if it ever surfaces
    3: NotFound,
    4: InvalidPath,
    5: IsADirectory,
    6: NotADirectory,
    7: WrongKind,
    8: CorruptData,
    9: UnsupportedVersion,
    10: NotADataset,
    11: OriginError,
    12: StorageError,  # SHEAF_CACHE_FULL: only cache writes (preload) meet it, not reads
    13: StorageError,
    15: InternalError,
}


def from_status(status: int, message: str) -> Exception:
    """The exception for a failed call's status and message."""
    kind = _BY_STATUS.get(status)
    if kind is None:
        return InternalError(f"unknown status {status} from the native library: {message}")
    return kind(message)
