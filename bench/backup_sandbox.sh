#!/usr/bin/env bash
# `kubectl-kleidia backup --components data` against the sandbox (real
# PostgreSQL in the demo data release, installed by the sandbox's Helm
# engine), compared in the same run with
#   (a) `kubectl exec -i <pod> -- pg_dumpall -U yubiuser > file` through the
#       same sandbox API server, and
#   (b) a local `pg_dumpall > file` at the same PostgreSQL server (its unix
#       socket), the floor no API path can beat.
# Peak RSS of the plugin comes from /usr/bin/time -v.
#
#   bench/backup_sandbox.sh [SIZE_MB]      default 32 (quick); 600 for the >= 500 MB run
#
# The plugin is a release build; the sandbox runs in the (debug) test
# process of tests/backup_sandbox_bench.rs. Writes
# bench/backup_sandbox.results.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-${KLEIDIA_BENCH_MB:-32}}
[ -x .venv/bin/kubectl ] || { echo "backup_sandbox: .venv/bin/kubectl is missing; run scripts/setup first" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "backup_sandbox: /usr/bin/time is missing (apt-get install time)" >&2; exit 2; }
cargo build -q --release --bin kubectl-kleidia -p kleidia
table=$(KLEIDIA_BENCH_MB=$size KLEIDIA_BENCH_PLUGIN="$PWD/target/release/kubectl-kleidia" \
  cargo test -q --test backup_sandbox_bench -- --ignored --nocapture --test-threads 1 2>/dev/null |
  sed -n '/^Size parameter/,/^Peak RSS/p')
[ -n "$table" ] || { echo "backup_sandbox: the measurement printed nothing; run cargo test --test backup_sandbox_bench -- --ignored --nocapture" >&2; exit 1; }
results=bench/backup_sandbox.results.md
{
  echo "# backup through the sandbox: results"
  echo
  echo "Run $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores; release plugin, debug sandbox."
  echo
  echo "$table"
  echo
  echo "The plugin's time includes release discovery, zstd compression, the"
  echo "sha256 manifest and the dump-completeness check."
} >"$results"
cat "$results"
