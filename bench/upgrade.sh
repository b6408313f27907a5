#!/usr/bin/env bash
# The upgrade's own overhead, and the whole upgrade beside the runbook's
# commands run by hand, in one run, each on a fresh sandbox whose demo
# (1.0.0) was installed by the real Helm 4 CLI:
#
#   ours:    kubectl kleidia upgrade --charts sandbox/charts/1.1.0 --yes
#            (plan, lock, preflight, backup, three helm upgrades, gates,
#            OpenBao's OnDelete pod rolled, history)
#   runbook: pg_dumpall over exec, raft snapshot save + kubectl cp, helm get
#            values x3, then per release helm upgrade --wait=watcher, kubectl
#            wait / rollout status, vault status, psql SELECT version(), the
#            health check (it leaves OpenBao's OnDelete pod on the old
#            version: the runbook does not know to roll it)
#
# "Own overhead" is everything but helm and the waits, summed from the
# run's recorded phase timings (`upgrade --history -o json`); target < 2 s.
# Usage: bench/upgrade.sh [ROUNDS]   (default 1; each round two sandboxes)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-1}

# shellcheck source=bench/common.sh
. bench/common.sh
bench_setup upgrade

up() { # <dir>: a sandbox with the demo installed by Helm 4; exports its env
  "$sandbox" up --dir "$1" --detach --helm "$helm" >"$1.env"
  # shellcheck disable=SC1090
  . "$1.env"
}

now() { date +%s%N; }

runbook() {
  set -e
  local ns=kleidia day; day=$(date +%Y%m%d)
  # 1. Backup current state
  "$kubectl" exec -i kleidia-data-postgres-cluster-0 -n $ns -- pg_dumpall -U yubiuser >"$work/backup-$day.sql"
  printf '%s\n' "$BAO_TOKEN" | "$kubectl" exec -i kleidia-platform-openbao-0 -n $ns -- \
    sh -c 'read -r BAO_TOKEN; export BAO_TOKEN; export BAO_ADDR="${BAO_ADDR:-http://127.0.0.1:8200}"; bao operator raft snapshot save /tmp/vault-backup.snap' >/dev/null
  "$kubectl" cp kleidia-platform-openbao-0:/tmp/vault-backup.snap "$work/vault-backup-$day.snap" -n $ns >/dev/null
  for r in platform data services; do
    # -o yaml: the runbook's plain `helm get values` prints a
    # "USER-SUPPLIED VALUES:" header that --values cannot read back.
    "$helm" get values "kleidia-$r" -n $ns -o yaml >"$work/$r-values-$day.yaml"
  done
  # 3. Upgrade platform (OpenBao)
  "$helm" upgrade kleidia-platform "$charts/1.1.0/kleidia-platform" -n $ns --values "$work/platform-values-$day.yaml" --wait=watcher >/dev/null
  "$kubectl" wait --for=condition=ready pod -l app.kubernetes.io/name=openbao -n $ns --timeout=300s >/dev/null
  "$kubectl" exec kleidia-platform-openbao-0 -n $ns -- bao status >/dev/null
  # 4. Upgrade data layer (PostgreSQL)
  "$helm" upgrade kleidia-data "$charts/1.1.0/kleidia-data" -n $ns --values "$work/data-values-$day.yaml" --wait=watcher >/dev/null
  "$kubectl" wait --for=condition=ready pod -l app=postgres-cluster -n $ns --timeout=300s >/dev/null
  "$kubectl" exec kleidia-data-postgres-cluster-0 -n $ns -- psql -U yubiuser -d kleidia -c "SELECT version();" >/dev/null
  # 5. Upgrade services
  "$helm" upgrade kleidia-services "$charts/1.1.0/kleidia-services" -n $ns --values "$work/services-values-$day.yaml" --wait=watcher >/dev/null
  "$kubectl" rollout status deployment/kleidia-services-backend -n $ns >/dev/null
  "$kubectl" rollout status deployment/kleidia-services-frontend -n $ns >/dev/null
  "$kubectl" get --raw "/api/v1/namespaces/$ns/services/kleidia-services-backend:8080/proxy/api/health" >/dev/null
}

for round in $(seq 1 "$ROUNDS"); do
  echo "bench: round $round: sandbox for kubectl kleidia upgrade" >&2
  up "$work/sb-ours-$round"
  t0=$(now)
  HELM_BIN="$helm" "$ours" upgrade --charts "$charts/1.1.0" --yes --backup-dir "$work/bundles-$round" \
    >"$work/ours-$round.out" 2>"$work/ours-$round.err" || {
    echo "bench: the upgrade failed:" >&2; cat "$work/ours-$round.out" "$work/ours-$round.err" >&2; exit 1; }
  t1=$(now)
  HELM_BIN="$helm" "$ours" upgrade --history -o json >"$work/history-$round.json"
  "$sandbox" down --dir "$work/sb-ours-$round" >/dev/null

  echo "bench: round $round: sandbox for the runbook by hand" >&2
  up "$work/sb-runbook-$round"
  t2=$(now)
  ( runbook ) || { echo "bench: the runbook sequence failed" >&2; exit 1; }
  t3=$(now)
  "$sandbox" down --dir "$work/sb-runbook-$round" >/dev/null

  python3 - "$work/history-$round.json" $(((t1 - t0) / 1000000)) $(((t3 - t2) / 1000000)) "$round" <<'PY'
import json, sys
runs = json.load(open(sys.argv[1]))
run = runs[-1]
ours_ms, runbook_ms, rnd = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
own = sum(p["millis"] for p in run["phases"] if not p.get("waiting"))
waited = sum(p["millis"] for p in run["phases"] if p.get("waiting"))
print(f"round {rnd}: kubectl kleidia upgrade {ours_ms} ms ({run['outcome']}), runbook by hand {runbook_ms} ms, ratio {ours_ms / runbook_ms:.2f}")
print(f"round {rnd}: own overhead {own} ms (target < 2000), helm and waits {waited} ms; phases:")
for p in run["phases"]:
    print(f"  {p['name']:<28} {p['millis']:>7} ms{'  (helm / waiting)' if p.get('waiting') else ''}")
PY
done
