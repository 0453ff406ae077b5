"""The Dataset and File classes over the native reader."""

from __future__ import annotations

import ctypes
import io
import os
import threading
import weakref
from ctypes import byref, c_int32, c_size_t, c_uint64, c_uint8, c_void_p
from typing import Iterator, NamedTuple, Optional, Union

from . import _native
from ._native import Bytes, Stat, lib
from .errors import (
    BufferTooSmall,
    Error,
    InvalidPath,
    NotADirectory,
    NotFound,
    WrongKind,
    from_status,
)

PathArg = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

# Every live dataset, so a forked child can give each a fresh lock before any thread of the
# child uses it (a lock held by another parent thread at the fork would never be released).
_LIVE: "weakref.WeakSet[Dataset]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for dataset in list(_LIVE):
        dataset._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _encode(path: PathArg) -> bytes:
    if isinstance(path, str):
        return path.encode("utf-8", "surrogateescape")
    if isinstance(path, bytes):
        return path
    return os.fsencode(path)


_sheaf_read = lib.sheaf_read
_sheaf_bytes_free = lib.sheaf_bytes_free
_string_at = ctypes.string_at


def _raise(status: int) -> None:
    raise from_status(status, _native.last_error())


def _address_of(function) -> int:
    return ctypes.cast(function, c_void_p).value


def _bind_fast_read():
    """`read(handle, path) -> bytes` in one native call that copies and checks the bytes in one
    pass, or None when the optional extension was not built (no C compiler or Python headers at
    install): reads then go through ctypes."""
    try:
        from . import _fastread
    except ImportError:
        return None
    _fastread.bind(_address_of(lib.sheaf_read_alloc), _raise)
    return _fastread.read


_fast_read = _bind_fast_read()


class StatResult(NamedTuple):
    """Metadata of one entry, in the shape of `os.stat_result`'s fields of the same names."""

    st_mode: int
    st_size: int
    st_mtime_ns: int
    #: True when the file was too large to fold and is read from where it lives.
    external: bool = False

    @property
    def st_mtime(self) -> float:
        return self.st_mtime_ns / 1e9

    def is_dir(self) -> bool:
        return self.st_mode & 0o170000 == 0o040000

    def is_file(self) -> bool:
        return self.st_mode & 0o170000 == 0o100000

    def is_symlink(self) -> bool:
        return self.st_mode & 0o170000 == 0o120000


def _stat_result(stat: Stat) -> StatResult:
    return StatResult(stat.mode, stat.size, stat.mtime_ns, bool(stat.flags & _native.STAT_EXTERNAL))


class Dataset:
    """A folded dataset opened for reading. Use `sheaf.open` to make one."""

    def __init__(
        self,
        uri: PathArg,
        *,
        cache: Optional[PathArg] = None,
        fill: bool = False,
        generation: Optional[int] = None,
    ):
        self._uri = os.fsdecode(uri)
        self._cache = os.fsdecode(cache) if cache is not None else None
        self._fill = bool(fill)
        if generation is not None and (not isinstance(generation, int) or generation < 0):
            raise ValueError(f"generation must be a number of 0 or more, not {generation!r}")
        # The generation to open: the one asked for, then the one read (a forked or unpickled
        # copy reads the same snapshot as its parent).
        self._generation = generation
        self._lock = threading.Lock()
        self._handle: Optional[int] = None
        self._stale = False
        self._closed = False
        self._walks = 0
        self._handle = self._open_native()
        _LIVE.add(self)

    def _open_native(self) -> int:
        out = c_void_p()
        cache = _encode(self._cache) if self._cache is not None else None
        flags = _native.OPEN_FILL if self._fill else 0
        generation = _native.NEWEST if self._generation is None else self._generation
        status = lib.sheaf_open_generation(_encode(self._uri), cache, flags, generation, byref(out))
        if status:
            _raise(status)
        self._generation = self._generation_of(out.value)
        return out.value

    @staticmethod
    def _generation_of(handle: int) -> int:
        number = c_uint64()
        status = lib.sheaf_generation(handle, byref(number))
        if status:
            _raise(status)
        return number.value

    @property
    def generation(self) -> int:
        """The generation (snapshot) this reader sees: 0 for a dataset's first fold, one more
        for every change since. It stays the same until `refresh()`."""
        return self._generation_of(self._h())

    def refresh(self) -> bool:
        """Moves to the dataset's newest generation; True when that is a newer one. Reads
        already running finish on the generation they started with."""
        moved = c_int32()
        status = lib.sheaf_refresh(self._h(), byref(moved))
        if status:
            _raise(status)
        if moved.value:
            self._generation = self._generation_of(self._h())
        return bool(moved.value)

    def _forked(self) -> None:
        # The parent's handle is not ours to use or free here: its I/O threads did not come
        # along. It is left alone, and the first call in the child opens the dataset again.
        self._lock = threading.Lock()
        self._stale = True
        self._walks = 0

    def _h(self) -> int:
        if self._stale:
            with self._lock:
                if self._stale and not self._closed:
                    self._handle = self._open_native()
                    self._stale = False
        handle = self._handle
        if handle is None:
            raise ValueError("I/O operation on a closed sheaf dataset")
        return handle

    # --- reading -------------------------------------------------------------------------

    def read(self, path: PathArg) -> bytes:
        """The whole file at `path` (symlinks followed), checked against its checksum."""
        if _fast_read is not None:
            handle = self._handle
            if handle is None or self._stale:
                handle = self._h()
            return _fast_read(handle, _encode(path))
        out = self._read_native(path)
        try:
            return _string_at(out.data, out.len) if out.len else b""
        finally:
            _sheaf_bytes_free(byref(out))

    def view(self, path: PathArg) -> memoryview:
        """A read-only view of the whole file at `path` (symlinks followed), checked against
        its checksum, without a copy: from a mapped container it views the mapping itself.
        The bytes stay valid for as long as the view (or anything made from it) is alive,
        even after the dataset is closed. `torch.frombuffer`, `numpy.frombuffer` and
        `bytes(view)` take it as it is."""
        native = self._read_native(path)
        if not native.len:
            lib.sheaf_bytes_free(byref(native))
            return memoryview(b"")
        array = _array_at(native.data, native.len)
        array._sheaf_owner = _NativeBytes(native)  # freed when the last view goes
        return memoryview(array).cast("B")[: native.len].toreadonly()

    def readinto(self, path: PathArg, buffer) -> int:
        """Reads the whole file at `path` into `buffer` (any writable, contiguous buffer:
        bytearray, memoryview, numpy array, mmap) and returns its length. Raises
        `BufferTooSmall` (with `.needed`) when the file does not fit; the buffer is then
        untouched."""
        view = memoryview(buffer)
        if view.readonly:
            raise TypeError("readinto needs a writable buffer")
        if not view.c_contiguous:
            raise ValueError("readinto needs a contiguous buffer")
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        capacity = view.nbytes
        # A one-byte ctypes object at the buffer's start gives its address (and holds the
        # buffer exported until `del`) without making a ctypes array type per length, which
        # costs more than a small read.
        target = ctypes.c_char.from_buffer(view) if capacity else None
        address = ctypes.addressof(target) if target is not None else None
        encoded = _encode(path)
        length = c_size_t()
        status = lib.sheaf_read_into(
            self._h(), encoded, len(encoded), address, capacity, byref(length)
        )
        del target
        view.release()
        if status == _native.BUFFER_TOO_SMALL:
            raise BufferTooSmall(_native.last_error(), length.value)
        if status:
            _raise(status)
        return length.value

    def open(self, path: PathArg, mode: str = "rb") -> "File":
        """A read-only binary file object over the file at `path`. The file is read and
        checked when opened, then served from memory (for a cached container, from the
        cache file's mapping without a copy)."""
        if mode not in ("r", "rb"):
            raise ValueError(f"sheaf datasets are read-only and binary: mode {mode!r}")
        return File(os.fsdecode(path), self._read_native(path))

    def _read_native(self, path: PathArg) -> Bytes:
        """The file's bytes in library-owned memory; the caller frees them."""
        # The hot path of `read`, `view` and `open`, where a small file's read takes a few
        # microseconds: the native function is bound once and the handle taken directly when it
        # is live, since each lookup and call frame shows in that time.
        encoded = _encode(path)
        handle = self._handle
        if handle is None or self._stale:
            handle = self._h()
        out = Bytes()
        status = _sheaf_read(handle, encoded, len(encoded), byref(out))
        if status:
            _raise(status)
        return out

    # --- metadata ------------------------------------------------------------------------

    def stat(self, path: PathArg, *, follow_symlinks: bool = True) -> StatResult:
        """Metadata of `path`; with `follow_symlinks=False` a final symlink is described
        itself (as `os.lstat`)."""
        encoded = _encode(path)
        out = Stat()
        status = lib.sheaf_stat_path(
            self._h(), encoded, len(encoded), 1 if follow_symlinks else 0, byref(out)
        )
        if status:
            _raise(status)
        return _stat_result(out)

    def lstat(self, path: PathArg) -> StatResult:
        """Metadata of `path` without following a final symlink."""
        return self.stat(path, follow_symlinks=False)

    def exists(self, path: PathArg) -> bool:
        """True when `path` names an entry (symlinks followed), as `os.path.exists`: a symlink
        that leads out of the dataset or round in a loop names nothing."""
        try:
            self.stat(path)
        except (NotFound, NotADirectory, InvalidPath, WrongKind):
            return False
        return True

    def isdir(self, path: PathArg) -> bool:
        """True when `path` is a directory (symlinks followed)."""
        try:
            return self.stat(path).is_dir()
        except (NotFound, NotADirectory, InvalidPath, WrongKind):
            return False

    def isfile(self, path: PathArg) -> bool:
        """True when `path` is a regular file (symlinks followed)."""
        try:
            return self.stat(path).is_file()
        except (NotFound, NotADirectory, InvalidPath, WrongKind):
            return False

    def _entries(self, path: PathArg) -> list[tuple[bytes, StatResult]]:
        encoded = _encode(path)
        listing = c_void_p()
        status = lib.sheaf_list(self._h(), encoded, len(encoded), byref(listing))
        if status:
            _raise(status)
        try:
            name, name_len, stat = ctypes.POINTER(c_uint8)(), c_size_t(), Stat()
            entries = []
            for i in range(lib.sheaf_listing_len(listing)):
                status = lib.sheaf_listing_get(listing, i, byref(name), byref(name_len), byref(stat))
                if status:
                    _raise(status)
                entries.append((ctypes.string_at(name, name_len.value), _stat_result(stat)))
            return entries
        finally:
            lib.sheaf_listing_free(listing)

    def listdir(self, path: PathArg = "") -> list:
        """Names in the directory `path` (the root by default), sorted; bytes when `path` is
        bytes, as `os.listdir`."""
        names = [name for name, _ in self._entries(path)]
        return names if isinstance(path, bytes) else [os.fsdecode(n) for n in names]

    def scandir(self, path: PathArg = "") -> list[tuple[str, StatResult]]:
        """(name, metadata) of every entry in the directory `path`, symlinks not followed."""
        return [(os.fsdecode(name), stat) for name, stat in self._entries(path)]

    def walk(self, top: PathArg = "") -> Iterator[tuple[str, list[str], list[str]]]:
        """(dirpath, dirnames, filenames) for `top` and every directory below it, top-down,
        as `os.walk`: symlinks to directories are listed in dirnames but not walked into.
        Paths are relative to the dataset root (`""` is the root)."""
        pending = [os.fsdecode(top).strip("/") if top not in ("", ".", "/") else ""]
        while pending:
            here = pending.pop()
            dirnames, filenames = [], []
            for name, stat in self.scandir(here):
                child = f"{here}/{name}" if here else name
                is_dir = stat.is_dir() or (stat.is_symlink() and self.isdir(child))
                (dirnames if is_dir else filenames).append(name)
            yield here, dirnames, filenames
            for name in reversed(dirnames):
                child = f"{here}/{name}" if here else name
                if not self.stat(child, follow_symlinks=False).is_symlink():
                    pending.append(child)

    def files(self, under: PathArg = "") -> Iterator[str]:
        """Every regular file below the directory `under` (the whole dataset by default), in
        path order, streamed from the indexes without listing directories one by one."""
        encoded = _encode(under)
        walk = c_void_p()
        status = lib.sheaf_walk_open(self._h(), encoded, len(encoded), byref(walk))
        if status:
            _raise(status)
        self._walks += 1
        try:
            path, path_len, stat = ctypes.POINTER(c_uint8)(), c_size_t(), Stat()
            while True:
                status = lib.sheaf_walk_next(walk, byref(path), byref(path_len), byref(stat))
                if status == _native.END:
                    return
                if status:
                    _raise(status)
                if stat.kind == _native.KIND_FILE:
                    yield ctypes.string_at(path, path_len.value).decode("utf-8", "surrogateescape")
        finally:
            lib.sheaf_walk_free(walk)
            self._walks -= 1
            if self._walks == 0 and self._closed:
                self._close_native()

    def samples(self, under: PathArg = "") -> "Samples":
        """The regular files below `under`, numbered in the order `files(under)` yields them,
        with the container each is stored in: what epoch orders are made of
        (`samples.order(seed=, epoch=, window=, part=, parts=)`)."""
        from ._order import Samples

        return Samples(self._h(), _encode(under))

    def fetch_ahead(self, containers) -> int:
        """Copies the containers at these catalog positions (as `Samples.windows` names them)
        into the dataset's cache, one whole read each, skipping those it holds; returns the
        bytes copied. Blocks (without the GIL): call it from a thread to read ahead. Without a
        cache it reads nothing."""
        from ._order import fetch_ahead

        return fetch_ahead(self._h(), containers)

    def __len__(self) -> int:
        """Entries (files, directories, symlinks) the dataset's catalog records."""
        count = c_uint64()
        status = lib.sheaf_entry_count(self._h(), byref(count))
        if status:
            _raise(status)
        return count.value

    def stats(self) -> dict[str, int]:
        """This process's reader counters: hits, misses, origin_reads, origin_bytes, ..."""
        names = _native.counter_names()
        values = (c_uint64 * len(names))()
        written = c_size_t()
        status = lib.sheaf_stats(self._h(), values, len(names), byref(written))
        if status:
            _raise(status)
        return dict(zip(names, values[: written.value]))

    # --- lifetime ------------------------------------------------------------------------

    @property
    def uri(self) -> str:
        return self._uri

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Releases the native reader (after any running `files()` walk ends)."""
        if self._closed:
            return
        self._closed = True
        if self._walks == 0:
            self._close_native()

    def _close_native(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None and not self._stale:
            lib.sheaf_close(handle)

    def __enter__(self) -> "Dataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_handle", None) is not None and not self._stale:
            try:
                self.close()
            except Exception:
                pass

    def __reduce__(self):
        # Pickling (spawned DataLoader workers) sends how to open the dataset, not the handle.
        return (_reopen, (self._uri, self._cache, self._fill, self._generation))

    def __repr__(self) -> str:
        cache = f", cache={self._cache!r}" if self._cache else ""
        return f"sheaf.Dataset({self._uri!r}{cache})"


_ARRAY_TYPES: dict = {}


def _array_at(address: int, length: int):
    """A ctypes byte array at `address` covering at least `length` bytes. Making a ctypes
    array type costs microseconds, more than copying a small file, so types are kept per power
    of two and callers slice their views to `length`."""
    size = 1 << max(0, length - 1).bit_length()
    kind = _ARRAY_TYPES.get(size)
    if kind is None:
        kind = _ARRAY_TYPES.setdefault(size, c_uint8 * size)
    return kind.from_address(address)


class _NativeBytes:
    """Owns bytes the library handed out; frees them when garbage."""

    __slots__ = ("native",)

    def __init__(self, native: Bytes):
        self.native = native

    def __del__(self) -> None:
        lib.sheaf_bytes_free(byref(self.native))


def _reopen(uri: str, cache: Optional[str], fill: bool, generation: Optional[int] = None) -> Dataset:
    return Dataset(uri, cache=cache, fill=fill, generation=generation)


class Routes(Dataset):
    """The tree a routes table joins (see `sheaf route`), read like one dataset: every path is
    served by the dataset of the longest prefix holding it, and the directories above the
    prefixes list the union of what the rules put there. Use `sheaf.open_routes` to make one.

    Datasets are opened on first use. A dataset whose store cannot be reached raises
    `OriginError` for its paths (at once, for a few seconds after a first failure) while the
    others keep serving, and is tried again after that. `refresh()` reloads the table and
    moves every opened dataset to its newest generation; `generation` is the table's version.
    It survives `fork` and pickling; a forked or unpickled copy reads the newest version of
    the table (and the datasets' newest generations), not necessarily its parent's.
    `files()` and `len()` over the joined tree open every dataset below the path asked, and a
    `files()` walk is gathered whole before its first path is yielded (a `Dataset`'s streams):
    for a very large tree, walk each dataset on its own."""

    def __init__(self, location: PathArg, *, cache: Optional[PathArg] = None, fill: bool = False):
        super().__init__(location, cache=cache, fill=fill)

    def _open_native(self) -> int:
        out = c_void_p()
        cache = _encode(self._cache) if self._cache is not None else None
        flags = _native.OPEN_FILL if self._fill else 0
        status = lib.sheaf_open_routes(_encode(self._uri), cache, flags, byref(out))
        if status:
            _raise(status)
        return out.value

    def __reduce__(self):
        return (_reopen_routes, (self._uri, self._cache, self._fill))

    def __repr__(self) -> str:
        cache = f", cache={self._cache!r}" if self._cache else ""
        return f"sheaf.Routes({self._uri!r}{cache})"


def _reopen_routes(location: str, cache: Optional[str], fill: bool) -> Routes:
    return Routes(location, cache=cache, fill=fill)


class File(io.RawIOBase):
    """A read-only binary file over one entry's bytes, held by the native library."""

    def __init__(self, name: str, native: Bytes):
        super().__init__()
        self.name = name
        self._native = native
        if native.len:
            self._view = memoryview(_array_at(native.data, native.len)).cast("B")[: native.len]
        else:
            self._view = memoryview(b"")
        self._pos = 0

    @property
    def mode(self) -> str:
        return "rb"

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def __len__(self) -> int:
        return self._view.nbytes

    def read(self, size: Optional[int] = -1) -> bytes:
        self._checkClosed()
        end = self._view.nbytes if size is None or size < 0 else min(self._pos + size, self._view.nbytes)
        data = self._view[self._pos : end].tobytes() if end > self._pos else b""
        self._pos = max(self._pos, end)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer) -> int:
        self._checkClosed()
        target = memoryview(buffer).cast("B")
        n = max(0, min(target.nbytes, self._view.nbytes - self._pos))
        target[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._view.nbytes}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        self._checkClosed()
        return self._pos

    def close(self) -> None:
        if not self.closed:
            self._view.release()
            lib.sheaf_bytes_free(byref(self._native))
        super().close()

    def __repr__(self) -> str:
        return f"<sheaf.File name={self.name!r} size={len(self) if not self.closed else '?'}>"


def open(
    uri: PathArg,
    *,
    cache: Optional[PathArg] = None,
    fill: bool = False,
    generation: Optional[int] = None,
) -> Dataset:
    """Opens the folded dataset `uri` names: a local path, `file://`, `s3://`, `hdfs://`,
    `az://` or `gs://`. With `cache`, containers are read from that sheaf cache directory
    when it holds them (see `sheaf preload`), and `fill=True` copies the ones that keep
    missing into it in the background. `generation=N` reads that snapshot instead of the
    newest (`sheaf log` lists them). Raises `NotADataset` when nothing is published there,
    `NotFound` when it has no generation N."""
    return Dataset(uri, cache=cache, fill=fill, generation=generation)


def open_routes(
    location: PathArg,
    *,
    cache: Optional[PathArg] = None,
    fill: bool = False,
) -> Routes:
    """Opens the tree the routes table at `location` joins (a local directory or a store URI,
    as `sheaf route add` made it): a `Routes` with a `Dataset`'s methods over the joined paths
    (`/images/2026/a.jpg`). `cache` and `fill` serve every rule that names no cache of its
    own. Raises `StorageError` when the location holds no routes table."""
    return Routes(location, cache=cache, fill=fill)
