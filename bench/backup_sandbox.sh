#!/usr/bin/env bash
# `kubectl-kleidia backup --components data` against a sandbox holding the
# demo releases, compared in the same run with
#   (a) `kubectl exec -i <pod> -- pg_dumpall -U yubiuser > file` through the
#       same sandbox API server, and
#   (b) a local `pg_dumpall > file` straight at the same PostgreSQL server
#       (its unix socket), the floor no API path can beat.
# Peak RSS of the plugin comes from /usr/bin/time -v (else /proc sampling).
#
#   bench/backup_sandbox.sh [SIZE_MB]      default 32 (quick); 600 for the >= 500 MB run
#   KLEIDIA_BENCH_PROFILE=dev bench/...    use debug builds (no optimised build)
#
# Writes bench/backup_sandbox.results.md and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-${KLEIDIA_BENCH_MB:-32}}
profile=${KLEIDIA_BENCH_PROFILE:-release}
KUBECTL="$PWD/.venv/bin/kubectl"
[ -x "$KUBECTL" ] || { echo "backup_sandbox: $KUBECTL is missing; run scripts/setup first" >&2; exit 2; }
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$pgbin/pg_dumpall" ] || { echo "backup_sandbox: no pg_dumpall under /usr/lib/postgresql/*/bin; run scripts/setup" >&2; exit 2; }

if [ "$profile" = release ]; then
  cargo build -q --release --bin kubectl-kleidia -p kleidia
  cargo build -q --release -p kleidia-sandbox
  dir_profile=release
else
  cargo build -q --bin kubectl-kleidia -p kleidia
  cargo build -q -p kleidia-sandbox
  dir_profile=debug
fi
PLUGIN="$PWD/target/$dir_profile/kubectl-kleidia"
SANDBOX="$PWD/target/$dir_profile/kleidia-sandbox"

work=$(mktemp -d)
chmod 700 "$work"
cleanup() {
  "$SANDBOX" down --dir "$work/sb" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# The runtimes find bao (OpenBao) and helm's Python in .venv.
export PATH="$pgbin:$PWD/.venv/bin:$PATH"
echo "starting the sandbox with the demo data release..." >&2
"$SANDBOX" up --dir "$work/sb" --detach --empty >/dev/null
export KUBECONFIG="$work/sb/kubeconfig"
ns=kleidia
# The demo data release (all `--components data` needs), installed by the
# sandbox's real Helm engine.
for r in kleidia-data; do
  sandbox/helm/helm install "$r" "sandbox/charts/1.0.0/$r" -n "$ns" --create-namespace --wait --timeout 180s >/dev/null
done
pod=kleidia-data-postgres-cluster-0
# `up --detach` may return before the demo's pods are ready.
for _ in $(seq 1 120); do
  if "$KUBECTL" get pod -n "$ns" "$pod" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null | grep -q True; then
    break
  fi
  sleep 1
done
"$KUBECTL" get pod -n "$ns" "$pod" >/dev/null || {
  echo "backup_sandbox: $pod never appeared; sandbox files:" >&2
  ls -R "$work/sb" | head -40 >&2
  tail -20 "$work"/sb/*.log 2>/dev/null >&2 || true
  exit 1
}
kx() { "$KUBECTL" exec -n "$ns" "$pod" -c postgres -- "$@"; }

# ~300 bytes of dump per row.
rows=$(( size * 1024 * 1024 / 300 ))
echo "filling $pod with $rows rows (~${size} MB of dump)..." >&2
kx psql -q -U yubiuser -d kleidia -c "DROP TABLE IF EXISTS bench_fill; CREATE TABLE bench_fill AS SELECT g AS id, repeat(md5(g::text), 8) AS payload FROM generate_series(1, $rows) g" >/dev/null

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
mibs() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.1f", n / 1048576 / s; else print "n/a" }'; }

# 1. The plugin.
timing="$work/time.txt"
t0=$(now)
if [ -x /usr/bin/time ]; then
  /usr/bin/time -v -o "$timing" "$PLUGIN" -n "$ns" backup --components data --dir "$work/bundles" -o json >"$work/created.json"
  rss_kib=$(awk -F: '/Maximum resident/ { gsub(/ /, "", $2); print $2 }' "$timing")
  rss_how="/usr/bin/time -v"
else
  "$PLUGIN" -n "$ns" backup --components data --dir "$work/bundles" -o json >"$work/created.json" &
  p=$!; rss_kib=0
  while kill -0 "$p" 2>/dev/null; do
    r=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    [ "${r:-0}" -gt "$rss_kib" ] && rss_kib=$r
    sleep 0.05
  done
  wait "$p"
  rss_how="/proc VmHWM sampling"
fi
t1=$(now)
ours=$(secs "$t0" "$t1")
bundle=$(sed -n 's/.*"path": *"\([^"]*\)".*/\1/p' "$work/created.json" | head -1)
stored=$(stat -c %s "$bundle/postgres.sql.zst")

# 2. kubectl exec through the same API server.
t0=$(now)
"$KUBECTL" exec -i -n "$ns" "$pod" -c postgres -- pg_dumpall -U yubiuser >"$work/kubectl.sql"
t1=$(now)
kube=$(secs "$t0" "$t1")
dump_bytes=$(stat -c %s "$work/kubectl.sql")

# 3. Local pg_dumpall at the same server's socket.
env_lines=$(kx env)
pghost=$(echo "$env_lines" | sed -n 's/^PGHOST=//p')
pgport=$(echo "$env_lines" | sed -n 's/^PGPORT=//p')
t0=$(now)
"$pgbin/pg_dumpall" -h "$pghost" -p "$pgport" -U yubiuser >"$work/local.sql"
t1=$(now)
local_s=$(secs "$t0" "$t1")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "n/a" }'; }
results=bench/backup_sandbox.results.md
{
  echo "# backup through the sandbox: results"
  echo
  echo "Run: $(date -u +%Y-%m-%dT%H:%MZ), size parameter ${size} MB, ${dir_profile} builds, $(nproc) cores."
  echo "Dump size (kubectl exec pg_dumpall): $(( dump_bytes / 1048576 )) MiB; stored by kleidia (zstd): $(( stored / 1048576 )) MiB."
  echo
  echo "| method | seconds | MiB/s of dump | time vs kubectl exec |"
  echo "|---|---|---|---|"
  echo "| kubectl-kleidia backup --components data | $ours | $(mibs "$dump_bytes" "$ours") | $(ratio "$kube" "$ours") |"
  echo "| kubectl exec -i pod -- pg_dumpall > file | $kube | $(mibs "$dump_bytes" "$kube") | 1.00 |"
  echo "| local pg_dumpall > file (same server) | $local_s | $(mibs "$dump_bytes" "$local_s") | $(ratio "$kube" "$local_s") |"
  echo
  echo "Peak RSS of kubectl-kleidia: $(( rss_kib / 1024 )) MiB ($rss_how)."
  echo
  echo "The plugin's time includes release discovery, zstd compression, the"
  echo "sha256 manifest and the dump-completeness check. Re-run with"
  echo "\`bench/backup_sandbox.sh 600\` for the >= 500 MB figures."
} >"$results"
cat "$results"
