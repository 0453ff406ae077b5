#!/usr/bin/env bash
# Installs what building and testing sheaf needs on a fresh Debian machine, and nothing when
# it is already there. Run by the demo and by .ci/run; safe to run again.
set -euo pipefail

need_rust_component() {
  local tool=$1 component=$2
  if ! cargo "$tool" --version >/dev/null 2>&1; then
    echo "setup: installing the Rust component $component"
    rustup component add "$component"
  fi
}

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is not installed; install Rust (rustup) first" >&2
  exit 1
fi
need_rust_component fmt rustfmt
need_rust_component clippy clippy

# Debian packages the tests and demo use: python3 makes the sample corpus, g++ builds
# libFuzzer for the fuzz targets, and the C compiler builds zstd and ring.
packages=()
command -v python3 >/dev/null 2>&1 || packages+=(python3)
command -v cc >/dev/null 2>&1 || packages+=(gcc)
command -v g++ >/dev/null 2>&1 || packages+=(g++)
# Python's headers compile the Python package's one-call read (python/sheaf/_fastread.c).
python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  >/dev/null 2>&1 || packages+=(python3-dev)
# fusermount3 mounts `sheaf mount`; its tests really mount.
command -v fusermount3 >/dev/null 2>&1 || packages+=(fuse3)
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: please install: ${packages[*]} (needs root)" >&2
    exit 1
  fi
  echo "setup: installing ${packages[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"
fi
