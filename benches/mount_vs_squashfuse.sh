#!/usr/bin/env bash
# Reads every file of one tree through several systems, side by side in one run:
#
#   plain        the files themselves on the local filesystem
#   sheaf        `sheaf mount` of the folded tree (no cache: the dataset is local)
#   squashfuse   squashfuse_ll over a mksquashfs image of the same tree (uncompressed, like
#                the fold's default)
#   ratarmount   ratarmount over a `tar -cf` of the same tree (with --ratarmount; installed
#                from PyPI into bench-out/peers-venv)
#
#   bash benches/mount_vs_squashfuse.sh [--files N | --corpus DIR] [--runs R] [--threads T,T]
#                                       [--ratarmount] [--reader c|python]
#
# For each system, order (sorted = sequential, shuffled = random) and thread count, one cold
# pass (page cache dropped with `echo 3 > /proc/sys/vm/drop_caches`, and the FUSE mounts made
# afresh), then warm-up passes until a pass is no longer 5% faster than the previous one, then
# R timed warm passes (medians) of benches/read_files.c: open, read to the end, close (with
# --reader python, benches/read_files.py: `open(p, "rb").read()`, which also asks `isatty`).
# Every pass must return the same bytes (file count, byte count and a checksum). Also reports
# each mount's time to come up and the sheaf daemon's peak RSS (VmHWM).
#
# Needs root (drop_caches, mounts), /dev/fuse, gcc, python3, and the Debian packages
# squashfs-tools, squashfuse and fuse3 (installed with apt-get when missing).
# Results: a table on stdout and bench-out/mount_vs_squashfuse.csv.
set -euo pipefail

FILES=20000
RUNS=3
THREADS="1,4"
CORPUS_ARG=""
RATARMOUNT=0
READER=c
while [[ $# -gt 0 ]]; do
    case "$1" in
        --files) FILES="${2:?}"; shift 2 ;;
        --runs) RUNS="${2:?}"; shift 2 ;;
        --threads) THREADS="${2:?}"; shift 2 ;;
        --corpus) CORPUS_ARG="${2:?}"; shift 2 ;;
        --ratarmount) RATARMOUNT=1; shift ;;
        --reader) READER="${2:?}"; shift 2 ;;
        -h|--help) sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "mount_vs_squashfuse: unknown argument $1" >&2; exit 2 ;;
    esac
done

die() { printf 'mount_vs_squashfuse: %s\n' "$*" >&2; exit 1; }
log() { printf '==> %s\n' "$*" >&2; }
[[ $(id -u) -eq 0 ]] || die "run as root (drop_caches and mounts)"
[[ -e /dev/fuse ]] || die "/dev/fuse is missing"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
WORK="$ROOT/bench-out/mount"
mkdir -p "$WORK"

need=()
command -v mksquashfs >/dev/null || need+=(squashfs-tools)
command -v squashfuse_ll >/dev/null || need+=(squashfuse)
command -v fusermount3 >/dev/null || need+=(fuse3)
if [[ ${#need[@]} -gt 0 ]]; then
    log "installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

log "building the release binary and the reader"
(cd "$ROOT" && cargo build --release --quiet)
install -m 0755 "$ROOT/target/release/sheaf" "$WORK/sheaf"
gcc -O2 -pthread -o "$WORK/read_files" "$ROOT/benches/read_files.c"
case "$READER" in
    c) READ_FILES=("$WORK/read_files") ;;
    python) READ_FILES=(python3 "$ROOT/benches/read_files.py") ;;
    *) echo "mount_vs_squashfuse: --reader is c or python, not $READER" >&2; exit 2 ;;
esac

SYSTEMS="plain sheaf squashfuse"
if [[ $RATARMOUNT == 1 ]]; then
    SYSTEMS+=" ratarmount"
    PEERS="$ROOT/bench-out/peers-venv"
    if [[ ! -x "$PEERS/bin/ratarmount" ]]; then
        log "installing ratarmount into $PEERS"
        python3 -m venv "$PEERS"
        "$PEERS/bin/pip" install -q ratarmount==1.3.0
    fi
fi

if [[ -n $CORPUS_ARG ]]; then
    CORPUS="$(cd "$CORPUS_ARG" && pwd -P)"
else
    CORPUS="$ROOT/bench-out/corpus-n$FILES-s0"
fi
if [[ -z $CORPUS_ARG && ! -f "$CORPUS.done" ]]; then
    log "generating $FILES files into $CORPUS"
    rm -rf "$CORPUS"
    python3 "$ROOT/benches/make_corpus.py" "$CORPUS" --files "$FILES" --seed 0 >/dev/null
    touch "$CORPUS.done"
fi
(cd "$CORPUS" && find . -type f ! -name '.*' | sed 's|^\./||' | LC_ALL=C sort) >"$WORK/sorted.txt"
python3 -c 'import random,sys; p=open(sys.argv[1]).read().split("\n")[:-1]; random.Random(42).shuffle(p); open(sys.argv[2],"w").write("\n".join(p)+"\n")' \
    "$WORK/sorted.txt" "$WORK/shuffled.txt"

log "folding and building the squashfs image"
rm -rf "$WORK/ds" "$WORK/image.sqfs"
"$WORK/sheaf" fold --quiet "$CORPUS" "$WORK/ds" >/dev/null
mksquashfs "$CORPUS" "$WORK/image.sqfs" -noappend -quiet -noI -noD -noF -noX >/dev/null
if [[ $RATARMOUNT == 1 ]]; then
    log "building the tar archive for ratarmount"
    rm -f "$WORK/image.tar" "$WORK/image.tar.index.sqlite"
    tar -cf "$WORK/image.tar" -C "$CORPUS" .
fi

SHEAF_MNT="$WORK/mnt-sheaf"
SQ_MNT="$WORK/mnt-squashfuse"
RAT_MNT="$WORK/mnt-ratarmount"
mkdir -p "$SHEAF_MNT" "$SQ_MNT" "$RAT_MNT"
unmount_all() {
    fusermount3 -u "$SHEAF_MNT" 2>/dev/null || true
    fusermount3 -u "$SQ_MNT" 2>/dev/null || true
    if mountpoint -q "$RAT_MNT"; then
        fusermount3 -u "$RAT_MNT" 2>/dev/null || true
        # ratarmount's daemon flushes its index on exit; wait for it to go.
        while pgrep -f "ratarmount .*$WORK/image.tar" >/dev/null; do sleep 0.1; done
    fi
}
trap unmount_all EXIT

now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
mount_sheaf() {
    local t0; t0=$(now)
    "$WORK/sheaf" mount "$WORK/ds" "$SHEAF_MNT"
    SHEAF_MOUNT_SECS=$(calc "$(now) - $t0")
}
mount_squashfuse() {
    local t0; t0=$(now)
    squashfuse_ll "$WORK/image.sqfs" "$SQ_MNT"
    until mountpoint -q "$SQ_MNT"; do sleep 0.01; done
    SQ_MOUNT_SECS=$(calc "$(now) - $t0")
}
mount_ratarmount() {
    [[ $RATARMOUNT == 1 ]] || return 0
    local t0; t0=$(now)
    # The first mount builds ratarmount's index (next to the archive); later ones reuse it.
    "$PEERS/bin/ratarmount" "$WORK/image.tar" "$RAT_MNT" >/dev/null
    until mountpoint -q "$RAT_MNT"; do sleep 0.01; done
    RAT_MOUNT_SECS=$(calc "$(now) - $t0")
    [[ -n ${RAT_FIRST_MOUNT_SECS:-} ]] || RAT_FIRST_MOUNT_SECS=$RAT_MOUNT_SECS
}
remount() { unmount_all; sleep 0.2; mount_sheaf; mount_squashfuse; mount_ratarmount; }

dir_of() {
    case "$1" in
        plain) echo "$CORPUS" ;;
        sheaf) echo "$SHEAF_MNT" ;;
        squashfuse) echo "$SQ_MNT" ;;
        ratarmount) echo "$RAT_MNT/." ;;
    esac
}

CSV="$ROOT/bench-out/mount_vs_squashfuse.csv"
echo "order,threads,system,pass,seconds,files_per_sec" >"$CSV"
read -r _ files bytes sum <<<"$("$WORK/read_files" "$WORK/sorted.txt" "$CORPUS" 1)"
EXPECTED="$files/$bytes/$sum"
run_pass() { # system order threads pass; prints the seconds
    local out secs files bytes sum
    out=$("${READ_FILES[@]}" "$WORK/$2.txt" "$(dir_of "$1")" "$3")
    read -r secs files bytes sum <<<"$out"
    [[ "$files/$bytes/$sum" == "$EXPECTED" ]] ||
        die "$1 returned other bytes ($files/$bytes/$sum, expected $EXPECTED)"
    echo "$2,$3,$1,$4,$secs,$(calc "$files / $secs")" >>"$CSV"
    echo "$secs"
}
median() { tr ' ' '\n' | grep -v '^$' | LC_ALL=C sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

remount
mount_times="sheaf mount ${SHEAF_MOUNT_SECS}s, squashfuse_ll ${SQ_MOUNT_SECS}s"
[[ $RATARMOUNT == 0 ]] || mount_times+=", ratarmount ${RAT_MOUNT_SECS}s (first, building its index: ${RAT_FIRST_MOUNT_SECS}s)"
printf '%-10s %-7s %-11s %10s %10s %12s %12s\n' order threads system cold_s warm_s cold_files/s warm_files/s
for order in shuffled sorted; do
    for threads in ${THREADS//,/ }; do
        remount
        sync; echo 3 >/proc/sys/vm/drop_caches
        declare -A COLD=() WARM=()
        for system in $SYSTEMS; do
            COLD[$system]=$(run_pass "$system" "$order" "$threads" cold)
        done
        for system in $SYSTEMS; do
            # Warm until a pass is no longer 5% faster than the one before (at most 8 passes):
            # a FUSE mount's page cache fills over several passes.
            last=$(run_pass "$system" "$order" "$threads" settle)
            for ((w = 1; w < 8; w++)); do
                t=$(run_pass "$system" "$order" "$threads" settle)
                awk "BEGIN { exit !($t < 0.95 * $last) }" || break
                last=$t
            done
            times=""
            for ((r = 1; r <= RUNS; r++)); do
                times+=" $(run_pass "$system" "$order" "$threads" "warm$r")"
            done
            WARM[$system]=$(echo "$times" | median)
        done
        count=$(wc -l <"$WORK/$order.txt")
        for system in $SYSTEMS; do
            printf '%-10s %-7s %-11s %10.3f %10.3f %12.0f %12.0f\n' "$order" "$threads" "$system" \
                "${COLD[$system]}" "${WARM[$system]}" \
                "$(calc "$count / ${COLD[$system]}")" "$(calc "$count / ${WARM[$system]}")"
        done
    done
done
pid=$(pgrep -f "$WORK/sheaf mount" | head -1)
echo "mount time: $mount_times (last mount)"
# VmHWM counts the container pages the daemon mapped and touched; RssAnon is its own memory.
echo "sheaf mount daemon: peak RSS (VmHWM, mapped files included) $(awk '/VmHWM/ {print $2, $3}' "/proc/$pid/status"), anonymous RSS now $(awk '/RssAnon/ {print $2, $3}' "/proc/$pid/status")"
FACTS="$ROOT/bench-out/mount_facts.csv"
{
    echo "fact,value"
    echo "sheaf_mount_secs,$SHEAF_MOUNT_SECS"
    echo "squashfuse_mount_secs,$SQ_MOUNT_SECS"
    [[ $RATARMOUNT == 0 ]] || echo "ratarmount_mount_secs,$RAT_MOUNT_SECS"
    [[ $RATARMOUNT == 0 ]] || echo "ratarmount_first_mount_secs,$RAT_FIRST_MOUNT_SECS"
    echo "sheaf_rss_anon_kib,$(awk '/RssAnon/ {print $2}' "/proc/$pid/status")"
    echo "sheaf_vmhwm_kib,$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
    echo "files,$files"
    echo "bytes,$bytes"
} >"$FACTS"
echo "every pass returned the same bytes ($EXPECTED); runs in $CSV, mount facts in $FACTS"
