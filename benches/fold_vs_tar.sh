#!/usr/bin/env bash
# Side-by-side wall time of `sheaf fold` against `tar -cf` on the same tree.
#
#   bash benches/fold_vs_tar.sh [--files N] [--runs R] [--corpus DIR] [--seed S] [--keep]
#
#   --files N     files in the generated corpus (default 20000, about 1.9 GiB)
#   --runs R      timed runs of each command (default 5)
#   --corpus DIR  benchmark an existing directory instead of generating one
#   --seed S      corpus seed (default 0)
#   --keep        keep the last outputs under bench-out/out/
#
# Steps: `cargo build --release` in the repository root (the binary is copied to
# bench-out/bin/ so a rebuild during the run cannot swap it); the corpus is generated with
# benches/make_corpus.py into bench-out/corpus-nN-sS/ (reused when already complete); every
# file is read once to warm the page cache; one untimed warm-up round; then R rounds, each
# running every command once, the order rotated by one each round (see round_order):
#
#   tar            tar -cf bench-out/out/corpus.tar -C CORPUS .
#   tar+fsync      the same, then `sync FILE` (fsync): sheaf syncs its containers, tar does not
#   sheaf          sheaf fold --quiet CORPUS bench-out/out/fold
#   sheaf-j1       sheaf fold --quiet --jobs 1 CORPUS bench-out/out/fold
#   floor          dd of as many bytes as the corpus holds, from memory (/dev/zero), then
#                  fsync: what a plain durable write of that size costs here, with no file
#                  read at all (on a virtual disk the fold's early writeback can beat it)
#
# Before every timed command the outputs are removed and `sync` is run (untimed), so no
# command pays for writing back another's dirty pages. Timing uses hyperfine when available
# (installed with apt-get when missing and running as root; set NO_HYPERFINE=1 to force the
# fallback), else a bash loop around `date +%s.%N`. Then one more fold under `/usr/bin/time -v`
# gives sheaf's peak RSS, and its output is checked with `sheaf verify`, file and byte counts,
# and a few `sheaf cat` spot checks against the originals.
#
# Results: a table on stdout, bench-out/fold_vs_tar.csv (medians; tar_over_this = tar median /
# this median, so > 1 means faster than tar), bench-out/fold_vs_tar_runs.csv (every run),
# bench-out/fold_facts.csv (peak RSS, objects left) and bench-out/fold_vs_tar_env.txt
# (machine, versions, commit).
set -euo pipefail

FILES=20000
RUNS=5
SEED=0
CORPUS=""
KEEP=0

usage() { sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
die() { printf 'fold_vs_tar: %s\n' "$*" >&2; exit 1; }
log() { printf '==> %s\n' "$*" >&2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --files) FILES="${2:?--files needs a value}"; shift 2 ;;
        --files=*) FILES="${1#*=}"; shift ;;
        --runs) RUNS="${2:?--runs needs a value}"; shift 2 ;;
        --runs=*) RUNS="${1#*=}"; shift ;;
        --corpus) CORPUS="${2:?--corpus needs a value}"; shift 2 ;;
        --corpus=*) CORPUS="${1#*=}"; shift ;;
        --seed) SEED="${2:?--seed needs a value}"; shift 2 ;;
        --seed=*) SEED="${1#*=}"; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ "$FILES" =~ ^[1-9][0-9]*$ ]] || die "--files must be a positive integer"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ "$SEED" =~ ^[0-9]+$ ]] || die "--seed must be a non-negative integer"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
WORK="$ROOT/bench-out"
OUT="$WORK/out"
mkdir -p "$WORK"
command -v python3 >/dev/null || die "python3 is required"
if [[ -n "$CORPUS" ]]; then
    [[ -d "$CORPUS" ]] || die "--corpus $CORPUS is not a directory"
    CORPUS="$(cd "$CORPUS" && pwd -P)"
    case "$OUT/" in "$CORPUS"/*) die "the outputs ($OUT) would land inside the corpus $CORPUS" ;; esac
    case "$CORPUS/" in "$OUT"/*) die "the corpus lies inside the output directory $OUT" ;; esac
fi

# --- tools -----------------------------------------------------------------------------------
apt_install() {
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        log "installing $* with apt-get"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 &&
              DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1; } ||
            log "could not install $*"
    fi
}
USE_HYPERFINE=0
if [[ "${NO_HYPERFINE:-0}" != 1 ]]; then
    command -v hyperfine >/dev/null || apt_install hyperfine
    command -v hyperfine >/dev/null && USE_HYPERFINE=1
fi
[[ -x /usr/bin/time ]] || apt_install time
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (Debian package: time)"

# --- build -----------------------------------------------------------------------------------
log "cargo build --release (in $ROOT)"
BUILT="$(cd "$ROOT" && cargo build --release --bin sheaf --message-format=json-render-diagnostics |
    python3 -c '
import json, sys
exe = None
for line in sys.stdin:
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "sheaf" \
            and "bin" in msg["target"]["kind"] and msg.get("executable"):
        exe = msg["executable"]
print(exe or "")
')"
[[ -n "$BUILT" && -x "$BUILT" ]] || die "cargo build did not produce the sheaf binary"
mkdir -p "$WORK/bin"
cp -f "$BUILT" "$WORK/bin/sheaf.new" && mv -f "$WORK/bin/sheaf.new" "$WORK/bin/sheaf"
SHEAF="$WORK/bin/sheaf"
COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$ROOT" status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock 2>/dev/null)" ]]; then
    COMMIT="$COMMIT+dirty"
fi

# --- corpus ----------------------------------------------------------------------------------
if [[ -z "$CORPUS" ]]; then
    CORPUS="$WORK/corpus-n$FILES-s$SEED"
    STAMP="$CORPUS.done"
    GEN_HASH="$(sha256sum "$ROOT/benches/make_corpus.py" | cut -c1-16)"
    if [[ -d "$CORPUS" && -f "$STAMP" && "$(head -n1 "$STAMP")" == "$GEN_HASH" ]]; then
        log "reusing corpus $CORPUS ($(tail -n1 "$STAMP"))"
    else
        rm -rf -- "$CORPUS" "$STAMP"
        log "generating corpus: $FILES files, seed $SEED"
        SUMMARY="$(python3 "$ROOT/benches/make_corpus.py" "$CORPUS" --files "$FILES" --seed "$SEED")"
        printf '%s\n%s\n' "$GEN_HASH" "$SUMMARY" > "$STAMP"
        log "$SUMMARY"
    fi
fi

read -r N_FILES N_BYTES < <(find "$CORPUS" -type f -printf '%s\n' | awk '{n++; b+=$1} END {printf "%d %d\n", n, b}')
N_DIRS="$(find "$CORPUS" -type d | wc -l)"
MEM_AVAIL_KB="$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)"
if (( N_BYTES / 1024 * 3 > MEM_AVAIL_KB )); then
    log "WARNING: corpus ($((N_BYTES >> 20)) MiB) plus two outputs may not fit in the page cache" \
        "($((MEM_AVAIL_KB >> 10)) MiB available): results will include disk reads"
fi

# --- environment record ----------------------------------------------------------------------
HF_VERSION="none (date +%s.%N loop)"
(( USE_HYPERFINE )) && HF_VERSION="$(hyperfine --version)"
{
    echo "date:      $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "sheaf:     $("$SHEAF" --version) @ $COMMIT"
    echo "tar:       $(tar --version | head -n1)"
    echo "timer:     $HF_VERSION"
    echo "kernel:    $(uname -sr)"
    echo "cpus:      $(nproc) ($(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo))"
    echo "memory:    $(awk '/^MemTotal:/ {printf "%d MiB", $2/1024}' /proc/meminfo)"
    echo "fs:        $(df -PT "$WORK" | awk 'NR==2 {print $2 " on " $1}')"
    echo "corpus:    $CORPUS"
    echo "files:     $N_FILES regular files, $N_BYTES bytes ($((N_BYTES >> 20)) MiB), $N_DIRS directories"
    echo "runs:      $RUNS (after 1 warm-up round)"
} > "$WORK/fold_vs_tar_env.txt"
cat "$WORK/fold_vs_tar_env.txt" >&2

# --- warm the page cache ---------------------------------------------------------------------
# GNU tar skips reading file contents when writing to /dev/null, so read them with cat.
log "warming the page cache"
find "$CORPUS" -type f -exec cat {} + > /dev/null

# --- commands --------------------------------------------------------------------------------
q() { printf '%q' "$1"; }
TAR_OUT="$OUT/corpus.tar"
FOLD_OUT="$OUT/fold"
PREPARE="rm -rf $(q "$OUT") && mkdir -p $(q "$OUT") && sync"
NAMES=(tar tar+fsync sheaf sheaf-j1 floor)
CMDS=(
    "tar -cf $(q "$TAR_OUT") -C $(q "$CORPUS") ."
    "tar -cf $(q "$TAR_OUT") -C $(q "$CORPUS") . && sync $(q "$TAR_OUT")"
    "$(q "$SHEAF") fold --quiet $(q "$CORPUS") $(q "$FOLD_OUT")"
    "$(q "$SHEAF") fold --quiet --jobs 1 $(q "$CORPUS") $(q "$FOLD_OUT")"
    "dd if=/dev/zero of=$(q "$OUT/floor.bin") bs=64K count=$(((N_BYTES + 65535) >> 16)) conv=fsync status=none"
)
RAW="$WORK/fold_vs_tar_runs.csv"
mkdir -p "$WORK/raw"
rm -f "$WORK"/raw/round-*.json

# The command indexes in the order round $1 runs them: rotated by one each round, because a
# command pays for the file deleted and the writeback left by the one before it (measured: the
# command after `tar+fsync` was up to 2x slower whichever it was), so no command always
# follows the same one.
round_order() {
    local n=${#NAMES[@]} k
    for ((k = 0; k < n; k++)); do echo $(((k + $1) % n)); done
}

# One round: every command once; appends "round,command,wall_s,user_s,sys_s" rows.
run_round() {
    local round="$1" i json t0 t1 tf
    if (( USE_HYPERFINE )); then
        json="$WORK/raw/round-$round.json"
        local args=()
        for i in $(round_order "$round"); do args+=(-n "${NAMES[$i]}" "${CMDS[$i]}"); done
        hyperfine --shell=bash --runs 1 --style none --prepare "$PREPARE" \
            --export-json "$json" "${args[@]}" >/dev/null
        python3 - "$json" "$round" >> "$RAW" <<'EOF'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(f'{sys.argv[2]},{r["command"]},{r["times"][0]:.6f},{r["user"]:.6f},{r["system"]:.6f}')
EOF
    else
        tf="$(mktemp)"
        for i in $(round_order "$round"); do
            bash -c "$PREPARE"
            t0="$(date +%s.%N)"
            /usr/bin/time -f '%U %S' -o "$tf" bash -c "${CMDS[$i]}" >/dev/null ||
                { rm -f "$tf"; die "failed: ${CMDS[$i]}"; }
            t1="$(date +%s.%N)"
            read -r user sys < "$tf"
            awk -v r="$round" -v n="${NAMES[$i]}" -v a="$t0" -v b="$t1" -v u="$user" -v s="$sys" \
                'BEGIN {printf "%s,%s,%.6f,%.6f,%.6f\n", r, n, b - a, u, s}' >> "$RAW"
        done
        rm -f "$tf"
    fi
}

log "timing with ${HF_VERSION}"
echo "round,command,wall_s,user_s,sys_s" > "$RAW"
log "warm-up round (not counted)"
run_round 0
for ((r = 1; r <= RUNS; r++)); do
    run_round "$r"
    log "round $r/$RUNS: $(awk -F, -v r="$r" '$1 == r {printf "%s %.3fs  ", $2, $3}' "$RAW")"
done

# --- summary ---------------------------------------------------------------------------------
python3 - "$RAW" "$WORK/fold_vs_tar.csv" <<'EOF'
import csv, statistics, sys
raw, out = sys.argv[1], sys.argv[2]
runs = {}
for row in csv.DictReader(open(raw)):
    if row["round"] != "0":
        runs.setdefault(row["command"], []).append(row)
tar_median = statistics.median(float(r["wall_s"]) for r in runs["tar"])
fields = ["command", "runs", "median_s", "mean_s", "min_s", "max_s", "user_median_s",
          "sys_median_s", "tar_over_this"]
table = []
for name, rows in runs.items():
    wall = [float(r["wall_s"]) for r in rows]
    med = statistics.median(wall)
    table.append({
        "command": name, "runs": str(len(wall)), "median_s": f"{med:.3f}",
        "mean_s": f"{statistics.fmean(wall):.3f}", "min_s": f"{min(wall):.3f}",
        "max_s": f"{max(wall):.3f}",
        "user_median_s": f'{statistics.median(float(r["user_s"]) for r in rows):.3f}',
        "sys_median_s": f'{statistics.median(float(r["sys_s"]) for r in rows):.3f}',
        "tar_over_this": f"{tar_median / med:.2f}",
    })
with open(out, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields)
    w.writeheader()
    w.writerows(table)
widths = {k: max(len(k), *(len(t[k]) for t in table)) for k in fields}
print("  ".join(k.ljust(widths[k]) if k == "command" else k.rjust(widths[k]) for k in fields))
for t in table:
    print("  ".join(t[k].ljust(widths[k]) if k == "command" else t[k].rjust(widths[k])
                    for k in fields))
print("tar_over_this = tar median / this median: > 1 means faster than tar")
EOF
echo "wrote $WORK/fold_vs_tar.csv (medians) and $RAW (every run)"

# --- peak RSS and correctness of one fold ----------------------------------------------------
log "one more fold under /usr/bin/time -v, then sheaf verify"
bash -c "$PREPARE"
/usr/bin/time -v -o "$OUT/time-v.txt" "$SHEAF" fold --quiet --json "$CORPUS" "$FOLD_OUT" \
    > "$OUT/fold.json" || die "sheaf fold failed"
PEAK_KB="$(awk -F': ' '/Maximum resident set size/ {print $2}' "$OUT/time-v.txt")"
echo "sheaf fold peak RSS: $PEAK_KB KiB ($((PEAK_KB / 1024)) MiB)," \
    "wall $(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$OUT/time-v.txt")"
echo "peak RSS:  $PEAK_KB KiB (one sheaf fold, default jobs)" >> "$WORK/fold_vs_tar_env.txt"

VERIFY_RC=0
"$SHEAF" verify --quiet "$FOLD_OUT" || VERIFY_RC=$?
(( VERIFY_RC == 0 )) || die "sheaf verify failed with exit status $VERIFY_RC"

python3 - "$OUT/fold.json" "$N_FILES" "$N_BYTES" <<'EOF' || die "fold summary does not match the corpus"
import json, sys
s = json.load(open(sys.argv[1]))
files, size = int(sys.argv[2]), int(sys.argv[3])
got_files = s["files_folded"] + s["files_kept"]
got_bytes = s["bytes_folded"] + s["bytes_kept"]
print(f'fold summary: {s["files_folded"]} folded + {s["files_kept"]} kept files, '
      f'{s["dirs"]} dirs, {s["containers"]} containers, {got_bytes} bytes '
      f'(corpus: {files} files, {size} bytes)')
sys.exit(0 if (got_files, got_bytes) == (files, size) else 1)
EOF

python3 - "$OUT/fold.json" "$PEAK_KB" > "$WORK/fold_facts.csv" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
print("fact,value")
print(f"peak_rss_kib,{sys.argv[2]}")
for key in ("files_folded", "files_kept", "symlinks", "dirs", "containers"):
    print(f"{key},{s[key]}")
# What is left to track: the containers, the catalog and the files kept as they are.
print(f'objects_after,{s["containers"] + 1 + s["files_kept"]}')
EOF

# Spot-check a few files byte for byte through `sheaf cat`.
mapfile -t SAMPLE < <(cd "$CORPUS" && find . -type f -printf '%P\n' | LC_ALL=C sort |
    awk '{a[NR] = $0} END {if (NR) {print a[1]; print a[int((NR + 1) / 2)]; print a[NR]}}')
for rel in "${SAMPLE[@]}"; do
    "$SHEAF" cat "$FOLD_OUT" "$rel" | cmp -s - "$CORPUS/$rel" || die "sheaf cat differs for $rel"
done
echo "spot check: ${#SAMPLE[@]} files read back through sheaf cat match the originals"
echo "output sizes: tar $(tar -cf - -C "$CORPUS" . | wc -c) bytes, fold $(du -sb "$FOLD_OUT" | cut -f1) bytes"

if (( KEEP )); then
    echo "outputs kept in $OUT"
else
    rm -rf -- "$OUT"
fi
