#!/usr/bin/env bash
# `kubectl-kleidia backup --components data` against the sandbox (real
# PostgreSQL in the demo data release, installed by the sandbox's Helm
# engine), compared in the same run with
#   (a) `kubectl exec -i <pod> -- pg_dumpall -U yubiuser > file` through the
#       same sandbox API server, and
#   (b) a local `pg_dumpall > file` at the same PostgreSQL server (its unix
#       socket), the floor no API path can beat.
# Each method runs once to warm the page cache, then ROUNDS times in turn;
# the table gives medians. Wall time, CPU time (user + system) and the
# plugin's peak RSS come from /usr/bin/time -v.
#
#   bench/backup_sandbox.sh [SIZE_MB [ROUNDS]]   default 32 (quick) and 3; 600 for the >= 500 MB run
#
# The plugin and the sandbox (the test process of
# tests/backup_sandbox_bench.rs) are release builds: a debug API server
# would spend more CPU relaying the stream than a real one, and on a small
# machine that CPU is taken from the clients being compared. Writes
# bench/backup_sandbox.results.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-${KLEIDIA_BENCH_MB:-32}}
rounds=${2:-${KLEIDIA_BENCH_ROUNDS:-3}}
[ -x .venv/bin/kubectl ] || { echo "backup_sandbox: .venv/bin/kubectl is missing; run scripts/setup first" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "backup_sandbox: /usr/bin/time is missing (apt-get install time)" >&2; exit 2; }
cargo build -q --release --bin kubectl-kleidia -p kleidia
load=$(cut -d' ' -f1 /proc/loadavg)
table=$(KLEIDIA_BENCH_MB=$size KLEIDIA_BENCH_ROUNDS=$rounds KLEIDIA_BENCH_PLUGIN="$PWD/target/release/kubectl-kleidia" \
  cargo test -q --release --test backup_sandbox_bench -- --ignored --nocapture --test-threads 1 2>/dev/null |
  sed -n '/^Size parameter/,/^Peak RSS/p')
[ -n "$table" ] || { echo "backup_sandbox: the measurement printed nothing; run cargo test --release --test backup_sandbox_bench -- --ignored --nocapture" >&2; exit 1; }
results=bench/backup_sandbox.results.md
{
  echo "# backup through the sandbox: results"
  echo
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores (load average before the run: $load); release plugin and sandbox."
  echo
  echo "$table"
  echo
  echo "The plugin's time includes release discovery, zstd compression, the"
  echo "SHA-256 manifest, the dump-completeness check and the fsync of the bundle;"
  echo "kubectl and pg_dumpall only write the plain dump. \"Our throughput vs"
  echo "this\" is that method's time divided by ours (above 1.00: we are faster)."
  echo "\"Client CPU s\" is the CPU time of the process that receives the dump."
  echo
  echo "On one machine the API server's relay (TLS, WebSocket frames), the"
  echo "PostgreSQL server, pg_dumpall and the client share the same cores, so no"
  echo "path through the API server gets near the local dump: compare the"
  echo "kubectl exec line, which does no compression or hashing at all."
} >"$results"
cat "$results"
