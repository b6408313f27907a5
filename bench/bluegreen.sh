#!/usr/bin/env bash
# Blue-green and migrations beside the runbook's commands by hand, in one
# run on one sandbox whose demo (1.0.0) the real Helm 4 CLI installed:
#
#   blue-green start    ours:    kubectl kleidia upgrade --strategy blue-green --charts 1.1.0 --yes --no-backup
#                                (survey, plan, ports from every Service, lock, preflight,
#                                helm install --wait=watcher, gate: rollout, /api/health,
#                                migration lines, history)
#                       runbook: helm install kleidia-services-v2 ... --set backend.nodePort=...
#                                --set frontend.nodePort=... --wait=watcher, then the health check
#   blue-green abort    ours:    kubectl kleidia upgrade --abort --yes
#                       runbook: helm uninstall kleidia-services-v2 --wait
#   migrate --status    ours:    kubectl kleidia migrate --status (every backend pod's lines + applied versions)
#                       runbook: kubectl logs deployment/kleidia-services-backend | grep -i migrate,
#                                psql -c "\dt" (farm-bench, paired runs)
#
# Usage: bench/bluegreen.sh [ROUNDS]   (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}

# shellcheck source=bench/common.sh
. bench/common.sh
bench_setup bluegreen
"$sandbox" up --dir "$work/sb" --detach --helm "$helm" >"$work/sb.env"
# shellcheck disable=SC1090
. "$work/sb.env"
export HELM_BIN="$helm"

now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

: >"$work/ours-start" ; : >"$work/ours-abort" ; : >"$work/rb-start" ; : >"$work/rb-abort"
for round in $(seq 1 "$ROUNDS"); do
  echo "bench: round $round" >&2
  t0=$(now)
  "$ours" upgrade --strategy blue-green --charts "$charts/1.1.0" --yes --no-backup >"$work/ours.out" 2>&1
  t1=$(now)
  "$ours" upgrade --abort --yes >>"$work/ours.out" 2>&1
  t2=$(now)
  ms "$t0" "$t1" >>"$work/ours-start"; ms "$t1" "$t2" >>"$work/ours-abort"

  t0=$(now)
  "$helm" install kleidia-services-v2 "$charts/1.1.0/kleidia-services" -n kleidia \
    --set backend.nodePort=32571 --set frontend.nodePort=30806 --wait=watcher >/dev/null
  "$kubectl" get --raw "/api/v1/namespaces/kleidia/services/kleidia-services-v2-backend:8080/proxy/api/health" >/dev/null
  t1=$(now)
  "$helm" uninstall kleidia-services-v2 -n kleidia --wait >/dev/null
  t2=$(now)
  ms "$t0" "$t1" >>"$work/rb-start"; ms "$t1" "$t2" >>"$work/rb-abort"
done

os=$(median <"$work/ours-start"); rs=$(median <"$work/rb-start")
oa=$(median <"$work/ours-abort"); ra=$(median <"$work/rb-abort")
echo
echo "blue-green start, median of $ROUNDS (ms): ours $os, runbook $rs, ratio $(awk "BEGIN {printf \"%.2f\", $os/$rs}")"
echo "blue-green abort, median of $ROUNDS (ms): ours $oa, runbook $ra, ratio $(awk "BEGIN {printf \"%.2f\", $oa/$ra}")"
echo
echo "migrate --status beside the runbook's grep and psql:"
farm-bench -n 5 --timeout 120 --vs "sh -c '$kubectl logs deployment/kleidia-services-backend -n kleidia | grep -i migrate; $kubectl exec kleidia-data-postgres-cluster-0 -n kleidia -- psql -U yubiuser -d kleidia -c \"\\\\dt\"'" \
  -- "$ours" migrate --status
