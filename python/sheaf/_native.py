"""ctypes bindings to libsheaf_capi, the C ABI in include/sheaf.h.

ctypes releases the GIL for the length of every call, so reads from many threads run in
parallel in the native library.
"""

from __future__ import annotations

import ctypes
import os
from ctypes import POINTER, Structure, c_char_p, c_int32, c_size_t, c_uint8, c_uint32
from ctypes import c_uint64, c_int64, c_void_p
from pathlib import Path

LIBRARY_NAME = "libsheaf_capi.so"

# Status codes (sheaf_status).
OK = 0
END = 1
BUFFER_TOO_SMALL = 14

# sheaf_kind values.
KIND_FILE, KIND_DIR, KIND_SYMLINK = 0, 1, 2
STAT_EXTERNAL = 1
OPEN_FILL = 1
# `sheaf_open_generation` generation meaning the newest one.
NEWEST = 2**64 - 1


class Stat(Structure):
    _fields_ = [
        ("size", c_uint64),
        ("mtime_ns", c_int64),
        ("mode", c_uint32),
        ("kind", c_uint32),
        ("flags", c_uint32),
    ]


class Bytes(Structure):
    _fields_ = [("data", c_void_p), ("len", c_size_t), ("owner", c_void_p)]


class OrderSettings(Structure):
    _fields_ = [
        ("seed", c_uint64),
        ("epoch", c_uint64),
        ("window", c_uint64),
        ("part", c_uint64),
        ("parts", c_uint64),
        ("drop_last", c_uint32),
    ]


def _library_path() -> str:
    override = os.environ.get("SHEAF_LIBRARY")
    if override:
        return override
    bundled = Path(__file__).with_name(LIBRARY_NAME)
    if bundled.exists():
        return str(bundled)
    raise ImportError(
        f"{LIBRARY_NAME} is not next to {__file__}: install the package with "
        "`pip install ./python` from a sheaf clone, or set SHEAF_LIBRARY to the library's path"
    )


_U8P, _STATUS = POINTER(c_uint8), c_int32

# Every function of include/sheaf.h these bindings call: (restype, argtypes). Checked against
# the header by tests/test_abi.py.
SIGNATURES = {
    "sheaf_version": (c_char_p, []),
    "sheaf_last_error": (c_char_p, []),
    "sheaf_open": (_STATUS, [c_char_p, c_char_p, c_uint32, POINTER(c_void_p)]),
    "sheaf_open_generation": (_STATUS, [c_char_p, c_char_p, c_uint32, c_uint64,
                                        POINTER(c_void_p)]),
    "sheaf_open_routes": (_STATUS, [c_char_p, c_char_p, c_uint32, POINTER(c_void_p)]),
    "sheaf_generation": (_STATUS, [c_void_p, POINTER(c_uint64)]),
    "sheaf_refresh": (_STATUS, [c_void_p, POINTER(c_int32)]),
    "sheaf_close": (None, [c_void_p]),
    "sheaf_stat_path": (_STATUS, [c_void_p, c_char_p, c_size_t, c_int32, POINTER(Stat)]),
    "sheaf_read_into": (_STATUS, [c_void_p, c_char_p, c_size_t, c_void_p, c_size_t,
                                 POINTER(c_size_t)]),
    "sheaf_read": (_STATUS, [c_void_p, c_char_p, c_size_t, POINTER(Bytes)]),
    "sheaf_read_alloc": (_STATUS, [c_void_p, c_char_p, c_size_t, c_void_p, c_void_p,
                                  POINTER(c_size_t)]),
    "sheaf_bytes_free": (None, [POINTER(Bytes)]),
    "sheaf_entry_count": (_STATUS, [c_void_p, POINTER(c_uint64)]),
    "sheaf_counter_count": (c_size_t, []),
    "sheaf_counter_name": (c_char_p, [c_size_t]),
    "sheaf_stats": (_STATUS, [c_void_p, POINTER(c_uint64), c_size_t, POINTER(c_size_t)]),
    "sheaf_list": (_STATUS, [c_void_p, c_char_p, c_size_t, POINTER(c_void_p)]),
    "sheaf_listing_len": (c_size_t, [c_void_p]),
    "sheaf_listing_get": (_STATUS, [c_void_p, c_size_t, POINTER(_U8P), POINTER(c_size_t),
                                   POINTER(Stat)]),
    "sheaf_listing_free": (None, [c_void_p]),
    "sheaf_walk_open": (_STATUS, [c_void_p, c_char_p, c_size_t, POINTER(c_void_p)]),
    "sheaf_walk_next": (_STATUS, [c_void_p, POINTER(_U8P), POINTER(c_size_t), POINTER(Stat)]),
    "sheaf_walk_free": (None, [c_void_p]),
    "sheaf_fold_plan": (_STATUS, [c_char_p, POINTER(Bytes)]),
    "sheaf_fold_part": (_STATUS, [c_char_p, c_uint32, POINTER(Bytes)]),
    "sheaf_fold_commit": (_STATUS, [c_char_p, POINTER(Bytes)]),
    "sheaf_fold_branches": (_STATUS, [c_char_p, POINTER(Bytes)]),
    "sheaf_fold_survey": (_STATUS, [c_char_p, POINTER(Bytes)]),
    "sheaf_samples_open": (_STATUS, [c_void_p, c_char_p, c_size_t, POINTER(c_void_p)]),
    "sheaf_samples_len": (_STATUS, [c_void_p, POINTER(c_uint64)]),
    "sheaf_samples_order": (_STATUS, [c_void_p, POINTER(OrderSettings), c_uint64,
                                     POINTER(Bytes)]),
    "sheaf_samples_windows": (_STATUS, [c_void_p, POINTER(OrderSettings), POINTER(Bytes)]),
    "sheaf_samples_free": (None, [c_void_p]),
    "sheaf_fetch_ahead": (_STATUS, [c_void_p, POINTER(c_uint64), c_size_t, POINTER(c_uint64)]),
    "sheaf_preload": (_STATUS, [c_char_p, c_char_p, c_char_p, POINTER(Bytes)]),
}


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    for name, (restype, argtypes) in SIGNATURES.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    return lib


lib = _declare(ctypes.CDLL(_library_path()))


def last_error() -> str:
    message = lib.sheaf_last_error()
    return message.decode("utf-8", "replace") if message else ""


def counter_names() -> list[str]:
    return [lib.sheaf_counter_name(i).decode() for i in range(lib.sheaf_counter_count())]
