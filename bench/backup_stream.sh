#!/usr/bin/env bash
# Throughput and memory of the backup writer against plain `pg_dumpall > file`,
# in the same run, on a throwaway local PostgreSQL filled with generate_series.
#
#   bench/backup_stream.sh [SIZE_MB]        default 64; use 600 for the >= 500 MB run
#   KLEIDIA_BENCH_PROFILE=dev bench/...     skip the optimised build (slower zstd)
#
# Prints a table (seconds, MiB/s of dump, ratio to the baseline, stored size,
# peak RSS per phase), then /usr/bin/time's view of the whole process.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-${KLEIDIA_BENCH_MB:-64}}
profile=${KLEIDIA_BENCH_PROFILE:-release}

build_log=$(cargo test --profile "$profile" --test backup_bench --no-run 2>&1) || {
  echo "$build_log" >&2; exit 1; }
exe=$(echo "$build_log" | grep -o 'target/[^ )]*/deps/backup_bench-[0-9a-f]*' | tail -1)
[ -x "$exe" ] || { echo "bench: test binary not found in cargo output:" >&2; echo "$build_log" >&2; exit 1; }

timing=$(mktemp)
trap 'rm -f "$timing"' EXIT
run=("$exe" --ignored --exact bench_backup_stream --nocapture --test-threads 1)
if [ -x /usr/bin/time ]; then
  KLEIDIA_BENCH_MB=$size /usr/bin/time -v -o "$timing" "${run[@]}"
  echo "whole process (/usr/bin/time -v, includes data generation):"
  grep -E "Maximum resident|Elapsed \(wall" "$timing" | sed 's/^\s*/  /'
else
  KLEIDIA_BENCH_MB=$size "${run[@]}"
fi
echo "profile: $profile, size parameter: ${size} MB"
