#!/usr/bin/env bash
# The main job, end to end on the local filesystem: fold a tree into a dataset, read it back
# by its original paths, verify every checksum, unfold it and compare with the source.
#
#   bash scripts/demo.sh            # on a generated sample tree (2,000 files)
#   bash scripts/demo.sh DIR        # on a directory of yours (it is only read)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
# Checked before anything else, so a mistyped DIR leaves the previous demo's output alone.
if [ $# -ge 1 ] && [ ! -d "$1" ]; then
  echo "demo: $1 is not a directory" >&2
  exit 2
fi
src_arg=${1:+$(cd "$1" && pwd)}
cd "$repo"
bash scripts/setup.sh
# SHEAF_DEMO_PROFILE=dev reuses a debug build (CI runs the demo that way after the tests).
case ${SHEAF_DEMO_PROFILE:-release} in
  release) cargo build --release --locked --quiet; profile_dir=release ;;
  dev) cargo build --locked --quiet; profile_dir=debug ;;
  *) echo "SHEAF_DEMO_PROFILE must be release or dev" >&2; exit 2 ;;
esac
sheaf=${CARGO_TARGET_DIR:-$repo/target}/$profile_dir/sheaf

work=$repo/demo-out
rm -rf "$work/dataset" "$work/unfolded"
mkdir -p "$work"
if [ -n "$src_arg" ]; then
  src=$src_arg
else
  src=$work/sample
  if [ ! -d "$src" ]; then
    python3 benches/make_corpus.py "$src" --files 2000 --seed 1
  fi
fi

echo "== fold $src -> $work/dataset"
"$sheaf" fold "$src" "$work/dataset"

echo "== ls (top level)"
"$sheaf" ls "$work/dataset" -l | sed -n '1,10p'

# sed reads all of its input, so no writer in this pipeline dies of SIGPIPE under pipefail.
first=$(cd "$src" && find . -type f | LC_ALL=C sort | sed -n '1s|^\./||p')
echo "== stat $first"
"$sheaf" stat "$work/dataset" "$first"
echo "== cat $first | cmp with the original"
"$sheaf" cat "$work/dataset" "$first" | cmp - "$src/$first" && echo "identical"

echo "== verify"
"$sheaf" verify "$work/dataset"

echo "== unfold and diff -r against the source"
"$sheaf" unfold "$work/dataset" "$work/unfolded"
diff -r --no-dereference "$src" "$work/unfolded" && echo "unfolded tree is identical to the source"
