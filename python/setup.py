"""Builds the native library (the sheaf-capi crate) with cargo and ships it in the package.

`pip install ./python` from a clone runs `cargo build --release -p sheaf -p sheaf-capi` in the
repository (the same build of the library as `cargo build --release`, so after that build it
only links the C ABI), copies `libsheaf_capi.so` next to the Python modules, stripped of its
debug information when `strip` is there, and compiles the small
`sheaf._fastread` extension (one native call per `Dataset.read`) when a C compiler and Python's
headers are there. SHEAF_CARGO_PROFILE=dev builds the debug profile instead (the test suite
does, to reuse its build).
"""

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

REPO = Path(__file__).resolve().parent.parent
LIBRARY = "libsheaf_capi.so"


def build_native_library() -> Path:
    profile = os.environ.get("SHEAF_CARGO_PROFILE", "release")
    if shutil.which("cargo") is None:
        raise SystemExit("building sheaf needs cargo (Rust): install it with rustup first")
    subprocess.run(
        # Building the library with its default features, as `cargo build` does, reuses that
        # build; `-p sheaf-capi` alone would compile the library again with other features.
        ["cargo", "build", "--locked", "--profile", profile, "-p", "sheaf", "-p", "sheaf-capi"],
        cwd=REPO,
        check=True,
    )
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    built = target / ("debug" if profile == "dev" else profile) / LIBRARY
    if not built.exists():
        raise SystemExit(f"cargo finished but {built} is missing")
    return built


class BuildWithNativeLibrary(build_py):
    def run(self):
        super().run()
        package_dir = Path(self.build_lib) / "sheaf"
        package_dir.mkdir(parents=True, exist_ok=True)
        shipped = package_dir / LIBRARY
        shutil.copy2(build_native_library(), shipped)
        strip_debug_info(shipped)


def strip_debug_info(library: Path) -> None:
    """Drops line tables and symbols the package does not need (about 100 MB to 15 MB)."""
    strip = shutil.which("strip")
    if strip is not None:
        subprocess.run([strip, "--strip-unneeded", str(library)], check=True)


class NativeDistribution(Distribution):
    """Marks the wheel as platform-specific: it carries a native library."""

    def has_ext_modules(self):
        return True


# One native call per `Dataset.read` (see sheaf/_fastread.c). Optional: without a C compiler
# or Python's headers the package still works, reading through ctypes alone.
FAST_READ = Extension(
    "sheaf._fastread",
    sources=["sheaf/_fastread.c"],
    include_dirs=[str(REPO / "include")],
    optional=True,
)

setup(
    cmdclass={"build_py": BuildWithNativeLibrary},
    distclass=NativeDistribution,
    ext_modules=[FAST_READ],
)
