#!/usr/bin/env bash
# Real servers for sheaf's storage integration tests, on loopback ports of this machine:
#   HDFS  a one-DataNode Apache Hadoop MiniDFSCluster (testservers/minidfs, built with Maven)
#   S3    moto in server mode (PyPI moto[s3] + Flask, in .venv at the repo root)
#   Azure Azurite's blob service (npm azurite, in testservers/azurite/node_modules)
#
#   scripts/servers.sh start  [--hdfs] [--s3] [--azure]   start them (all when none is named)
#   scripts/servers.sh stop   [--hdfs] [--s3] [--azure]   stop them and check nothing is left
#   scripts/servers.sh status [--hdfs] [--s3] [--azure]   say what runs; exit 1 if one does not
#   scripts/servers.sh install [--hdfs] [--s3] [--azure]  only install/build what they need
#   scripts/servers.sh dfs ARGS...              Hadoop's `hdfs dfs ARGS` against the running HDFS
#
# `start` installs what is missing (Debian packages when root, the Maven build, the venv, the
# npm packages), waits until each server really answers, and writes target/test-servers.env:
#   SHEAF_TEST_HDFS=hdfs://127.0.0.1:PORT
#   SHEAF_TEST_HDFS_CONF_DIR=...            core-site.xml/hdfs-site.xml for a Hadoop client
#   SHEAF_TEST_MINIDFS_ARGS=...             java @argfile to start another MiniDFS (class path)
#   SHEAF_TEST_S3_ENDPOINT=http://127.0.0.1:PORT
#   SHEAF_TEST_S3_BUCKET=sheaf-test         made empty at start (object_store cannot make one)
#   AWS_ACCESS_KEY_ID=testing  AWS_SECRET_ACCESS_KEY=testing  AWS_REGION=us-east-1
#   AWS_ALLOW_HTTP=true
#   AZURE_STORAGE_USE_EMULATOR=true         object_store's Azurite mode: account devstoreaccount1
#   AZURITE_BLOB_STORAGE_URL=http://127.0.0.1:PORT
#   SHEAF_TEST_AZURE_CONTAINER=sheaf-test   made at start (object_store cannot make one)
# Use it with `set -a; . target/test-servers.env; set +a`. Servers already running are kept.
# Logs and PID files are in target/test-servers/. A server that is not ready within
# SHEAF_TEST_SERVERS_TIMEOUT seconds (default 180) makes `start` print its log and fail.
#
# Knobs (environment): SHEAF_TEST_HDFS_PORT (NameNode RPC port; default: one the kernel
# picks), SHEAF_TEST_S3_PORT and SHEAF_TEST_AZURE_PORT (default: a free one),
# SHEAF_MINIDFS_XMX (default 512m), SHEAF_TEST_SERVERS_TIMEOUT.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE="$ROOT/target/test-servers"
ENV_FILE="$ROOT/target/test-servers.env"
MINIDFS_SRC="$ROOT/testservers/minidfs"
MINIDFS_BUILD="$MINIDFS_SRC/target"
MINIDFS_MAIN=sheaf.testservers.MiniDfs
VENV="$ROOT/.venv"
MOTO_REQ="$ROOT/testservers/moto/requirements.txt"
MOTO_CONSTRAINTS="$ROOT/testservers/moto/constraints.txt"
AZURITE_DIR="$ROOT/testservers/azurite"
AZURITE_BIN="$AZURITE_DIR/node_modules/.bin/azurite-blob"
TIMEOUT=${SHEAF_TEST_SERVERS_TIMEOUT:-180}
XMX=${SHEAF_MINIDFS_XMX:-512m}
S3_BUCKET=sheaf-test
AZURE_CONTAINER=sheaf-test
# Azurite's one account and its well-known key (published by Microsoft for the emulator).
AZURE_ACCOUNT=devstoreaccount1
AZURE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

say() { printf 'servers: %s\n' "$*" >&2; }
die() { printf 'servers: ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- installing

apt_install() {
  [ "$(id -u)" -eq 0 ] || die "please install the Debian packages: $* (needs root)"
  say "installing Debian packages: $*"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

java_major() {
  java -XshowSettings:properties -version 2>&1 |
    sed -n 's/^ *java\.specification\.version = \([0-9]*\).*/\1/p'
}

ensure_java_maven() {
  local pkgs=()
  if ! command -v javac >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ] 2>/dev/null; then
    pkgs+=(openjdk-17-jdk-headless)
  fi
  command -v mvn >/dev/null 2>&1 || pkgs+=(maven)
  [ ${#pkgs[@]} -eq 0 ] || apt_install "${pkgs[@]}"
  local major
  major=$(java_major)
  [ -n "$major" ] && [ "$major" -ge 17 ] ||
    die "MiniDFS (Hadoop 3.5) needs Java 17 or newer; 'java' here is ${major:-unknown}"
}

# The build is redone only when a source file changed or a dependency jar went missing, so a
# warm start runs no Maven at all.
minidfs_stamp() {
  (cd "$MINIDFS_SRC" && find pom.xml src -type f -print0 | LC_ALL=C sort -z |
    xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

minidfs_built() {
  [ -f "$MINIDFS_BUILD/sheaf-build.stamp" ] && [ -f "$MINIDFS_BUILD/java.args" ] || return 1
  [ "$(cat "$MINIDFS_BUILD/sheaf-build.stamp")" = "$(minidfs_stamp)" ] || return 1
  local jar
  while IFS= read -r jar; do
    [ -f "$jar" ] || return 1
  done < <(tr ':' '\n' < "$MINIDFS_BUILD/classpath.txt")
}

build_minidfs() {
  ensure_java_maven
  minidfs_built && return 0
  say "building testservers/minidfs with Maven (the first time this downloads ~110 MB of Hadoop jars)"
  local log="$STATE/minidfs-build.log"
  mkdir -p "$STATE"
  if ! (cd "$MINIDFS_SRC" && mvn -B -q -e package dependency:build-classpath \
          -Dmdep.outputFile="$MINIDFS_BUILD/classpath.txt") >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    die "the MiniDFS Maven build failed (whole log: $log)"
  fi
  local jar
  jar=$(ls "$MINIDFS_BUILD"/minidfs-*.jar)
  # A java @argfile keeps the long class path off the command line (and out of `ps`).
  printf -- '-cp %s:%s\n' "$jar" "$(cat "$MINIDFS_BUILD/classpath.txt")" >"$MINIDFS_BUILD/java.args"
  minidfs_stamp >"$MINIDFS_BUILD/sheaf-build.stamp"
}

moto_stamp() { cat "$MOTO_REQ" "$MOTO_CONSTRAINTS" | sha256sum | cut -d' ' -f1; }

ensure_moto() {
  if [ ! -x "$VENV/bin/python" ]; then
    if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
      command -v python3 >/dev/null 2>&1 && apt_install python3-venv || apt_install python3 python3-venv
    fi
    say "creating $VENV"
    python3 -m venv "$VENV" || die "python3 -m venv $VENV failed"
  fi
  if [ -x "$VENV/bin/moto_server" ] && [ "$(cat "$VENV/.sheaf-moto.stamp" 2>/dev/null)" = "$(moto_stamp)" ]; then
    return 0
  fi
  say "installing moto (server mode, S3) into .venv (pinned in testservers/moto/)"
  local log="$STATE/moto-install.log"
  mkdir -p "$STATE"
  if ! "$VENV/bin/python" -m pip install --disable-pip-version-check -q \
        -r "$MOTO_REQ" -c "$MOTO_CONSTRAINTS" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "pip install of moto failed (whole log: $log)"
  fi
  moto_stamp >"$VENV/.sheaf-moto.stamp"
}

azurite_stamp() { sha256sum <"$AZURITE_DIR/package-lock.json" | cut -d' ' -f1; }

ensure_azurite() {
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
  fi
  if [ -x "$AZURITE_BIN" ] &&
     [ "$(cat "$AZURITE_DIR/node_modules/.sheaf-azurite.stamp" 2>/dev/null)" = "$(azurite_stamp)" ]; then
    return 0
  fi
  say "installing azurite into testservers/azurite/node_modules (pinned in its package-lock.json)"
  local log="$STATE/azurite-install.log"
  mkdir -p "$STATE"
  if ! (cd "$AZURITE_DIR" && npm ci --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "npm ci of azurite failed (whole log: $log)"
  fi
  azurite_stamp >"$AZURITE_DIR/node_modules/.sheaf-azurite.stamp"
}

# ---------------------------------------------------------------- processes

pid_file() { echo "$STATE/$1.pid"; }
log_file() { echo "$STATE/$1.log"; }
# What the process's command line must contain, so a recycled PID is never taken for ours.
marker() { case $1 in hdfs) echo "$MINIDFS_MAIN" ;; s3) echo moto_server ;; azure) echo azurite-blob ;; esac; }

# Prints the PID when the server's recorded process is alive and is ours.
running_pid() {
  local f pid
  f=$(pid_file "$1")
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$(marker "$1")" || return 1
  echo "$pid"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts "$@" in its own session (so a Ctrl-C or the end of the calling shell does not reach
# it) with its output in the server's log; the process writes its own PID before exec'ing.
spawn() {
  local name=$1; shift
  : >"$(log_file "$name")"
  rm -f "$(pid_file "$name")"
  setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' spawn "$(pid_file "$name")" "$@" \
    </dev/null >>"$(log_file "$name")" 2>&1 &
  local i
  for i in $(seq 50); do [ -s "$(pid_file "$name")" ] && return 0; sleep 0.1; done
  die "could not start $name"
}

fail_start() {
  local name=$1 why=$2
  say "$why; last lines of $(log_file "$name"):"
  tail -n 60 "$(log_file "$name")" >&2 || true
  stop_one "$name" >/dev/null 2>&1 || true
  die "$name did not start"
}

start_hdfs() {
  local pid
  if pid=$(running_pid hdfs) && [ -s "$STATE/hdfs.url" ]; then
    say "HDFS already running (pid $pid) at $(cat "$STATE/hdfs.url")"
    return 0
  fi
  stop_one hdfs >/dev/null 2>&1 || true
  build_minidfs
  local base="$STATE/hdfs" ready="$STATE/hdfs.url"
  rm -rf "$base" "$ready"
  mkdir -p "$base/tmp"
  spawn hdfs java -Xmx"$XMX" -Xss1m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Djava.net.preferIPv4Stack=true -Djava.io.tmpdir="$base/tmp" \
    @"$MINIDFS_BUILD/java.args" "$MINIDFS_MAIN" \
    --port "${SHEAF_TEST_HDFS_PORT:-0}" --base-dir "$base" --ready-file "$ready"
  local t0=$SECONDS deadline=$((SECONDS + TIMEOUT))
  until [ -s "$ready" ]; do
    running_pid hdfs >/dev/null || fail_start hdfs "MiniDFS exited before it was ready"
    [ $SECONDS -lt $deadline ] || fail_start hdfs "MiniDFS was not ready after ${TIMEOUT}s"
    sleep 0.5
  done
  say "HDFS ready at $(cat "$ready") (pid $(cat "$(pid_file hdfs)"), $((SECONDS - t0)) s)"
}

s3_answers() {
  curl -fsS -o /dev/null --max-time 5 "http://127.0.0.1:$1/" 2>/dev/null
}

start_s3() {
  local pid port
  if pid=$(running_pid s3) && [ -s "$STATE/s3.port" ] && s3_answers "$(cat "$STATE/s3.port")"; then
    say "S3 (moto) already running (pid $pid) at http://127.0.0.1:$(cat "$STATE/s3.port")"
    return 0
  fi
  stop_one s3 >/dev/null 2>&1 || true
  ensure_moto
  command -v curl >/dev/null 2>&1 || apt_install curl
  port=${SHEAF_TEST_S3_PORT:-$(free_port)}
  rm -f "$STATE/s3.port"
  spawn s3 "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port"
  local t0=$SECONDS deadline=$((SECONDS + TIMEOUT))
  until s3_answers "$port"; do
    running_pid s3 >/dev/null || fail_start s3 "moto_server exited before it answered on port $port"
    [ $SECONDS -lt $deadline ] || fail_start s3 "moto_server did not answer on port $port after ${TIMEOUT}s"
    sleep 0.3
  done
  # object_store cannot create buckets, so one is made here for the tests to use.
  curl -fsS -o /dev/null --max-time 10 -X PUT "http://127.0.0.1:$port/$S3_BUCKET" ||
    fail_start s3 "moto_server did not create the bucket $S3_BUCKET"
  echo "$port" >"$STATE/s3.port"
  say "S3 (moto) ready at http://127.0.0.1:$port (pid $(cat "$(pid_file s3)"), $((SECONDS - t0)) s)"
}

# Any HTTP answer will do (an unsigned request gets 403): the blob service is listening.
azure_answers() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
    "http://127.0.0.1:$1/$AZURE_ACCOUNT?comp=list" 2>/dev/null) || true
  [ -n "$code" ] && [ "$code" != 000 ]
}

start_azure() {
  local pid port
  if pid=$(running_pid azure) && [ -s "$STATE/azure.port" ] && azure_answers "$(cat "$STATE/azure.port")"; then
    say "Azure (azurite) already running (pid $pid) at http://127.0.0.1:$(cat "$STATE/azure.port")"
    return 0
  fi
  stop_one azure >/dev/null 2>&1 || true
  ensure_azurite
  command -v curl >/dev/null 2>&1 || apt_install curl
  port=${SHEAF_TEST_AZURE_PORT:-$(free_port)}
  rm -f "$STATE/azure.port"
  # In memory (at most 4 GiB of blob data), nothing written to disk; --loose and
  # --skipApiVersionCheck accept the headers and API version object_store sends.
  spawn azure "$AZURITE_BIN" --blobHost 127.0.0.1 --blobPort "$port" --inMemoryPersistence \
    --extentMemoryLimit 4096 --skipApiVersionCheck --loose
  local t0=$SECONDS deadline=$((SECONDS + TIMEOUT))
  until azure_answers "$port"; do
    running_pid azure >/dev/null || fail_start azure "azurite-blob exited before it answered on port $port"
    [ $SECONDS -lt $deadline ] || fail_start azure "azurite-blob did not answer on port $port after ${TIMEOUT}s"
    sleep 0.3
  done
  python3 "$AZURITE_DIR/create_container.py" "http://127.0.0.1:$port" "$AZURE_ACCOUNT" "$AZURE_KEY" \
    "$AZURE_CONTAINER" >>"$(log_file azure)" 2>&1 ||
    fail_start azure "azurite did not create the container $AZURE_CONTAINER"
  echo "$port" >"$STATE/azure.port"
  say "Azure (azurite) ready at http://127.0.0.1:$port (pid $(cat "$(pid_file azure)"), $((SECONDS - t0)) s)"
}

stop_one() {
  local name=$1 pid f
  f=$(pid_file "$name")
  if pid=$(running_pid "$name"); then
    kill -TERM "$pid" 2>/dev/null || true
    local i
    for i in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      say "$name (pid $pid) ignored SIGTERM for 30 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
    fi
    kill -0 "$pid" 2>/dev/null && die "$name (pid $pid) is still running"
    say "stopped $name (pid $pid)"
  elif [ -f "$f" ]; then
    say "$name was not running (stale PID file removed)"
  fi
  rm -f "$f"
  case $name in
    hdfs) rm -f "$STATE/hdfs.url"; rm -rf "$STATE/hdfs" ;;
    s3) rm -f "$STATE/s3.port" ;;
    azure) rm -f "$STATE/azure.port" ;;
  esac
}

write_env() {
  local tmp="$ENV_FILE.tmp" any=
  mkdir -p "$(dirname "$ENV_FILE")"
  : >"$tmp"
  if running_pid hdfs >/dev/null && [ -s "$STATE/hdfs.url" ]; then
    echo "SHEAF_TEST_HDFS=$(cat "$STATE/hdfs.url")" >>"$tmp"
    echo "SHEAF_TEST_HDFS_CONF_DIR=$STATE/hdfs/conf" >>"$tmp"
    echo "HADOOP_CONF_DIR=$STATE/hdfs/conf" >>"$tmp"
    echo "SHEAF_TEST_MINIDFS_ARGS=$MINIDFS_BUILD/java.args" >>"$tmp"
    any=1
  fi
  if running_pid s3 >/dev/null && [ -s "$STATE/s3.port" ]; then
    cat >>"$tmp" <<EOF
SHEAF_TEST_S3_ENDPOINT=http://127.0.0.1:$(cat "$STATE/s3.port")
AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$STATE/s3.port")
SHEAF_TEST_S3_BUCKET=$S3_BUCKET
AWS_ACCESS_KEY_ID=testing
AWS_SECRET_ACCESS_KEY=testing
AWS_REGION=us-east-1
AWS_ALLOW_HTTP=true
EOF
    any=1
  fi
  if running_pid azure >/dev/null && [ -s "$STATE/azure.port" ]; then
    cat >>"$tmp" <<EOF
AZURE_STORAGE_USE_EMULATOR=true
AZURITE_BLOB_STORAGE_URL=http://127.0.0.1:$(cat "$STATE/azure.port")
SHEAF_TEST_AZURE_CONTAINER=$AZURE_CONTAINER
EOF
    any=1
  fi
  if [ -n "$any" ]; then mv "$tmp" "$ENV_FILE"; else rm -f "$tmp" "$ENV_FILE"; fi
}

# ---------------------------------------------------------------- commands

cmd=${1:-}
[ $# -gt 0 ] && shift
if [ "$cmd" = dfs ]; then
  [ -s "$STATE/hdfs.url" ] && running_pid hdfs >/dev/null || die "HDFS is not running"
  CLASSPATH="$STATE/hdfs/conf:$(sed 's/^-cp //' "$MINIDFS_BUILD/java.args")" \
    exec java -Xmx256m org.apache.hadoop.fs.FsShell "$@"
fi

want_hdfs= want_s3= want_azure=
for arg in "$@"; do
  case $arg in
    --hdfs) want_hdfs=1 ;;
    --s3) want_s3=1 ;;
    --azure) want_azure=1 ;;
    *) die "unknown option $arg (usage: $0 start|stop|status|install [--hdfs] [--s3] [--azure])" ;;
  esac
done
[ -n "$want_hdfs$want_s3$want_azure" ] || { want_hdfs=1; want_s3=1; want_azure=1; }
names=()
[ -z "$want_hdfs" ] || names+=(hdfs)
[ -z "$want_s3" ] || names+=(s3)
[ -z "$want_azure" ] || names+=(azure)
mkdir -p "$STATE"

case $cmd in
  install)
    [ -z "$want_hdfs" ] || build_minidfs
    [ -z "$want_s3" ] || ensure_moto
    [ -z "$want_azure" ] || ensure_azurite
    say "installed"
    ;;
  start)
    for n in "${names[@]}"; do "start_$n"; write_env; done
    say "environment in ${ENV_FILE#"$ROOT"/}:"
    sed 's/^/  /' "$ENV_FILE" >&2
    ;;
  stop)
    for n in "${names[@]}"; do stop_one "$n"; done
    write_env
    # Belt and braces: no process of ours may be left behind, PID file or not.
    pats=()
    [ -z "$want_hdfs" ] || pats+=(-e "--base-dir $STATE/hdfs ")
    [ -z "$want_s3" ] || pats+=(-e "$VENV/bin/moto_server")
    [ -z "$want_azure" ] || pats+=(-e "$AZURITE_BIN --blobHost")
    leftover=$(ps -eo pid=,args= | grep -F "${pats[@]}" | grep -v -e grep -e "$0" || true)
    if [ -n "$leftover" ]; then
      say "still running after stop (not started through this checkout's PID files?):"
      echo "$leftover" >&2
      exit 1
    fi
    ;;
  status)
    rc=0
    for n in "${names[@]}"; do
      if pid=$(running_pid "$n"); then
        case $n in
          hdfs) say "hdfs: running (pid $pid) at $(cat "$STATE/hdfs.url" 2>/dev/null || echo '(not ready yet)')" ;;
          s3) say "s3: running (pid $pid) at http://127.0.0.1:$(cat "$STATE/s3.port" 2>/dev/null || echo '?')" ;;
          azure) say "azure: running (pid $pid) at http://127.0.0.1:$(cat "$STATE/azure.port" 2>/dev/null || echo '?')" ;;
        esac
      else
        say "$n: not running"; rc=1
      fi
    done
    exit $rc
    ;;
  *)
    die "usage: $0 start|stop|status|install [--hdfs] [--s3] [--azure]  |  $0 dfs ARGS..."
    ;;
esac
