#!/usr/bin/env bash
# Fuzzes sheaf's parsers with libFuzzer on the stable toolchain (coverage instrumentation,
# overflow checks and debug assertions on; no sanitizer runtime, which needs nightly).
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Runs each target (all of them by default) for SECONDS (default 30) over its kept corpus
# fuzz/corpus/TARGET and the seeds in fuzz/seeds. A crash fails the run and leaves the input
# under target/fuzz-artifacts/TARGET/. With SHEAF_FUZZ_KEEP=1 the inputs that found new
# coverage are merged into fuzz/corpus/TARGET (minimised), to be committed. Prints each
# target's runs and CPU seconds. CI runs every target for a short time.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-30}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(parse_container parse_index parse_generation parse_routes parse_cache parse_cli)
fi

triple="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# --target keeps the instrumentation off build scripts and procedural macros.
cargo build --release --locked --quiet --manifest-path fuzz/Cargo.toml \
  --target-dir target/fuzz-stable --target "$triple"
bin="target/fuzz-stable/$triple/release"

for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  found="target/fuzz-found/$target"
  artifacts="target/fuzz-artifacts/$target"
  mkdir -p "$corpus" "$found" "$artifacts"
  started_cpu="$(awk '{print $14 + $15 + $16 + $17}' /proc/$$/stat)"
  log="$artifacts/run.log"
  if ! "$bin/$target" -max_total_time="$seconds" -print_final_stats=1 \
      -artifact_prefix="$artifacts/" "$found" "$corpus" fuzz/seeds >"$log" 2>&1; then
    tail -n 40 "$log"
    echo "fuzz: $target crashed; the input is in $artifacts/" >&2
    exit 1
  fi
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
  ticks="$(awk -v s="$started_cpu" '{print $14 + $15 + $16 + $17 - s}' /proc/$$/stat)"
  cpu=$((ticks / $(getconf CLK_TCK)))
  echo "fuzz: $target: ${runs:-?} runs in ${seconds} s (${cpu} CPU seconds), no crash"
  if [ "${SHEAF_FUZZ_KEEP:-}" = 1 ]; then
    "$bin/$target" -merge=1 "$corpus" "$found" >>"$log" 2>&1
    echo "fuzz: $target: corpus now $(find "$corpus" -type f | wc -l) inputs"
  fi
done
