"""The bindings agree with include/sheaf.h: status and kind numbers, structures, signatures.

The header is generated from the C ABI's Rust source (and checked against it by the capi
crate's own test), so a change there that these hand-written ctypes declarations miss fails
here rather than as a misread structure or a wrong exception class at run time.
"""

from __future__ import annotations

import ctypes
import re
from ctypes import POINTER, c_char_p, c_int32, c_int64, c_size_t, c_uint8, c_uint32, c_uint64
from ctypes import c_void_p
from pathlib import Path

import pytest

from sheaf import _native, errors

HEADER = Path(__file__).resolve().parents[2] / "include" / "sheaf.h"

# What each failing status must raise (the exception class users catch).
EXPECTED_EXCEPTIONS = {
    "SHEAF_INVALID_ARGUMENT": ValueError,
    "SHEAF_NOT_FOUND": errors.NotFound,
    "SHEAF_INVALID_PATH": errors.InvalidPath,
    "SHEAF_IS_A_DIRECTORY": errors.IsADirectory,
    "SHEAF_NOT_A_DIRECTORY": errors.NotADirectory,
    "SHEAF_WRONG_KIND": errors.WrongKind,
    "SHEAF_CORRUPT": errors.CorruptData,
    "SHEAF_UNSUPPORTED_VERSION": errors.UnsupportedVersion,
    "SHEAF_NOT_A_DATASET": errors.NotADataset,
    "SHEAF_ORIGIN": errors.OriginError,
    "SHEAF_CACHE_FULL": errors.StorageError,
    "SHEAF_IO": errors.StorageError,
    "SHEAF_INTERNAL": errors.InternalError,
}

# Statuses the bindings handle themselves rather than raise from the table.
HANDLED_APART = {"SHEAF_OK": "OK", "SHEAF_END": "END", "SHEAF_BUFFER_TOO_SMALL": "BUFFER_TOO_SMALL"}

# C types of the header -> the ctypes declarations that pass them faithfully.
C_TO_CTYPES = {
    "void": {None},
    "sheaf_status": {c_int32},
    "const char *": {c_char_p},
    "const uint8_t *": {c_char_p, POINTER(c_uint8)},
    "uint8_t *": {c_void_p, POINTER(c_uint8)},
    "void *": {c_void_p},
    "sheaf_alloc_fn": {c_void_p},
    "uint32_t": {c_uint32},
    "int32_t": {c_int32},
    "int32_t *": {POINTER(c_int32)},
    "uint64_t": {c_uint64},
    "size_t": {c_size_t},
    "size_t *": {POINTER(c_size_t)},
    "uint64_t *": {POINTER(c_uint64)},
    "const uint8_t **": {POINTER(POINTER(c_uint8))},
    "sheaf_stat *": {POINTER(_native.Stat)},
    "sheaf_bytes *": {POINTER(_native.Bytes)},
    "const sheaf_order_settings *": {POINTER(_native.OrderSettings)},
    "const uint64_t *": {POINTER(c_uint64)},
}
HANDLE = re.compile(r"^(const )?sheaf_(dataset|listing|walk|samples) \*$")
HANDLE_OUT = re.compile(r"^sheaf_(dataset|listing|walk|samples) \*\*$")
FIELD_TYPES = {"uint64_t": c_uint64, "int64_t": c_int64, "uint32_t": c_uint32,
               "const uint8_t *": c_void_p, "size_t": c_size_t, "void *": c_void_p}


def header_code() -> str:
    """The header without comments."""
    text = HEADER.read_text()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def enum_values(name: str) -> dict[str, int]:
    match = re.search(r"typedef enum \{([^{}]*)\}\s*" + name + r";", header_code(), re.S)
    assert match, f"enum {name} is not in {HEADER}"
    return {k: int(v) for k, v in re.findall(r"(\w+)\s*=\s*(-?\d+)", match.group(1))}


def struct_fields(name: str) -> list[tuple[str, str]]:
    match = re.search(r"typedef struct \{([^{}]*)\}\s*" + name + r";", header_code(), re.S)
    assert match, f"struct {name} is not in {HEADER}"
    fields = []
    for declaration in match.group(1).split(";"):
        declaration = " ".join(declaration.split())
        if declaration:
            ctype, field = re.fullmatch(r"(.*?\**)\s*(\w+)", declaration).groups()
            fields.append((field, normalize(ctype)))
    return fields


def normalize(ctype: str) -> str:
    """`const uint8_t*` and `const uint8_t *` alike: one space before the stars."""
    ctype = " ".join(ctype.split())
    return re.sub(r"\s*(\*+)$", r" \1", ctype)


def prototypes() -> dict[str, tuple[str, list[str]]]:
    found = {}
    pattern = r"([A-Za-z_][\w ]*?\**)\s*\b(sheaf_\w+)\s*\(([^()]*)\)\s*;"
    for returns, name, params in re.findall(pattern, header_code()):
        args = [] if params.strip() in ("", "void") else [
            normalize(re.fullmatch(r"(.*?\**)\s*\w+", " ".join(p.split())).group(1))
            for p in params.split(",")
        ]
        found[name] = (normalize(returns), args)
    return found


def test_every_status_maps_to_the_exception_users_expect():
    statuses = enum_values("sheaf_status")
    assert set(statuses) == set(EXPECTED_EXCEPTIONS) | set(HANDLED_APART), (
        "sheaf_status gained or lost a value: extend python/sheaf/errors.py and this test"
    )
    for name, python_name in HANDLED_APART.items():
        assert getattr(_native, python_name) == statuses[name], name
    for name, exception in EXPECTED_EXCEPTIONS.items():
        raised = errors.from_status(statuses[name], "message")
        assert type(raised) is exception, f"{name} raises {type(raised).__name__}"


def test_kinds_and_flags_match():
    kinds = enum_values("sheaf_kind")
    assert (kinds["SHEAF_FILE"], kinds["SHEAF_DIR"], kinds["SHEAF_SYMLINK"]) == (
        _native.KIND_FILE, _native.KIND_DIR, _native.KIND_SYMLINK)
    defines = dict(re.findall(r"#define (SHEAF_\w+) (\d+)", header_code()))
    assert int(defines["SHEAF_STAT_EXTERNAL"]) == _native.STAT_EXTERNAL
    assert int(defines["SHEAF_OPEN_FILL"]) == _native.OPEN_FILL
    assert re.search(r"#define SHEAF_NEWEST UINT64_MAX\b", header_code())
    assert _native.NEWEST == 2**64 - 1


@pytest.mark.parametrize("c_name, structure", [("sheaf_stat", _native.Stat),
                                               ("sheaf_bytes", _native.Bytes),
                                               ("sheaf_order_settings", _native.OrderSettings)])
def test_structures_have_the_header_s_fields_in_order(c_name, structure):
    declared = [(name, FIELD_TYPES[ctype]) for name, ctype in struct_fields(c_name)]
    assert [(name, ctype) for name, ctype in structure._fields_] == declared
    assert ctypes.sizeof(structure) > 0


def test_every_signature_matches_its_prototype():
    header = prototypes()
    assert len(header) >= 20, "the prototype scan found too few functions: it is broken"
    for name, (restype, argtypes) in _native.SIGNATURES.items():
        assert name in header, f"{name} is declared in Python but not in the header"
        returns, params = header[name]
        assert restype in C_TO_CTYPES[returns], f"{name} returns {returns}"
        assert len(argtypes) == len(params), f"{name} takes {len(params)} arguments"
        for i, (declared, ctype) in enumerate(zip(argtypes, params)):
            if HANDLE.match(ctype):
                allowed = {c_void_p}
            elif HANDLE_OUT.match(ctype):
                allowed = {POINTER(c_void_p)}
            else:
                allowed = C_TO_CTYPES[ctype]
            assert declared in allowed, f"{name} argument {i}: {ctype} declared as {declared}"
    unused = set(header) - set(_native.SIGNATURES)
    assert not unused, f"functions of the header the bindings do not declare: {sorted(unused)}"
