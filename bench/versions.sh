#!/usr/bin/env bash
# Wall time of `kubectl kleidia versions` next to the runbook's equivalent
# sequence of commands, against the same sandbox in the same run:
#   helm list -n kleidia
#   kubectl get --raw .../services/kleidia-services-backend:8080/proxy/api/health
#   kubectl exec kleidia-data-postgres-cluster-0 -- psql -U yubiuser -d kleidia -c 'SELECT version();'
#   kubectl exec kleidia-platform-openbao-0 -- bao status      (the runbook's `vault status`)
# Prints the mean of RUNS runs of each and the ratio (target: ours < 0.5).
# The sandbox runs real PostgreSQL/OpenBao/backend; helm is the sandbox's
# (the real Helm v4 engine behind a helm-compatible command).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-5}

scripts/setup
cargo build --quiet --bin kubectl-kleidia --example versions-bench-sandbox
ours=target/debug/kubectl-kleidia
kubectl=.venv/bin/kubectl
helm=sandbox/helm/helm

dir=$(mktemp -d /tmp/kleidia-bench-XXXXXX)
chmod 700 "$dir"
target/debug/examples/versions-bench-sandbox "$dir/sandbox" >"$dir/out" 2>"$dir/log" &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

for _ in $(seq 1 300); do
  grep -q '^ready' "$dir/out" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { echo "bench: the sandbox exited:" >&2; cat "$dir/log" >&2; exit 1; }
  sleep 0.1
done
grep -q '^ready' "$dir/out" || { echo "bench: the sandbox did not start within 30 s" >&2; exit 1; }
export KUBECONFIG="$dir/sandbox/kubeconfig"

echo "bench: installing the demo charts" >&2
for r in kleidia-platform kleidia-data kleidia-services; do
  "$helm" install "$r" "sandbox/charts/1.0.0/$r" -n kleidia --wait --timeout 180s >/dev/null
done

runbook() {
  "$helm" list -n kleidia >/dev/null
  "$kubectl" get --raw /api/v1/namespaces/kleidia/services/kleidia-services-backend:8080/proxy/api/health >/dev/null
  "$kubectl" exec kleidia-data-postgres-cluster-0 -n kleidia -- \
    psql -U yubiuser -d kleidia -c "SELECT version();" >/dev/null
  # exit code 2 means sealed: an answer, as for the plugin
  "$kubectl" exec kleidia-platform-openbao-0 -n kleidia -- bao status >/dev/null || [ $? = 2 ]
}

plugin() {
  HELM_BIN="$PWD/$helm" "$ours" versions -o json >/dev/null
}

# One untimed run of each: both must work before they are compared.
plugin || { echo "bench: kubectl kleidia versions failed:" >&2; HELM_BIN="$PWD/$helm" "$ours" versions >&2 || true; exit 1; }
runbook || { echo "bench: the runbook sequence failed" >&2; exit 1; }

now() { date +%s%N; }
total_ours=0
total_runbook=0
for i in $(seq 1 "$RUNS"); do
  t0=$(now); plugin; t1=$(now); runbook; t2=$(now)
  total_ours=$((total_ours + t1 - t0))
  total_runbook=$((total_runbook + t2 - t1))
  printf 'run %d: kubectl kleidia versions %d ms, runbook sequence %d ms\n' \
    "$i" $(((t1 - t0) / 1000000)) $(((t2 - t1) / 1000000))
done
awk -v o="$total_ours" -v r="$total_runbook" -v n="$RUNS" 'BEGIN {
  printf "mean over %d runs: kubectl kleidia versions %.0f ms, runbook sequence %.0f ms, ratio %.2f (target < 0.50)\n",
    n, o / n / 1e6, r / n / 1e6, o / r
}'
