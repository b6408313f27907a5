#!/usr/bin/env bash
# The whole `kubectl kleidia preflight` on a healthy sandbox beside the
# runbook's pre-upgrade checklist done by hand, in one run, on the same
# sandbox (demo 1.0.0 installed by the real Helm 4 CLI, a fresh backup
# bundle in the folder):
#
#   ours:    kubectl kleidia preflight --backup-dir B --charts sandbox/charts/1.1.0
#            (every check, the target charts rendered through helm template)
#   runbook: the checklist's commands in sequence: kubectl version, helm
#            version, helm list, helm status x3 ("verify current deployment
#            version"), kubectl get pods / deployments,statefulsets,pvc,
#            vault (bao) status, psql SELECT 1, kubectl describe nodes
#            ("check resource availability"), kubectl auth can-i --list, the
#            bundle's checksums (sha256sum), helm get values x3 and helm
#            template x3 of the target charts ("review breaking changes")
#
# farm-bench runs them in turn (A B A B ...) and takes the ratio pair by
# pair; quote the medians. Targets: ours under 2 s and under 0.5x.
# Usage: bench/preflight.sh [RUNS]   (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}

# shellcheck source=bench/common.sh
. bench/common.sh
bench_setup preflight

echo "bench: starting a sandbox with the demo (Helm 4)" >&2
"$sandbox" up --dir "$work/sb" --detach --helm "$helm" >"$work/sb.env"
# shellcheck disable=SC1091
. "$work/sb.env"
export HELM_BIN="$helm"
"$ours" backup create --dir "$work/backups" >/dev/null 2>&1
bundle=$(ls -d "$work"/backups/kleidia-* | head -n 1)
unset BAO_TOKEN

cat >"$work/runbook.sh" <<EOF
set -e
ns=kleidia
"$kubectl" version >/dev/null 2>&1
"$helm" version >/dev/null
"$helm" list -n \$ns >/dev/null
for r in platform data services; do "$helm" status kleidia-\$r -n \$ns >/dev/null; done
"$kubectl" get pods -n \$ns >/dev/null
"$kubectl" get deployments,statefulsets,pvc -n \$ns >/dev/null
"$kubectl" exec kleidia-platform-openbao-0 -n \$ns -- bao status >/dev/null
"$kubectl" exec kleidia-data-postgres-cluster-0 -n \$ns -- psql -U yubiuser -d kleidia -c 'SELECT 1;' >/dev/null
"$kubectl" describe nodes >/dev/null
"$kubectl" auth can-i --list -n \$ns >/dev/null
find "$bundle" -type f ! -name manifest.json -exec sha256sum {} + >/dev/null
for r in platform data services; do
  "$helm" get values kleidia-\$r -n \$ns -o yaml >"$work/\$r-values.yaml"
  "$helm" template kleidia-\$r "$charts/1.1.0/kleidia-\$r" -n \$ns -f "$work/\$r-values.yaml" >/dev/null
done
EOF

# Both must work before they are compared.
"$ours" preflight --backup-dir "$work/backups" --charts "$charts/1.1.0" >"$work/preflight.txt" \
  || { echo "bench: preflight did not pass:" >&2; cat "$work/preflight.txt" >&2; exit 1; }
tail -n 1 "$work/preflight.txt" >&2
bash "$work/runbook.sh" || { echo "bench: the runbook sequence failed" >&2; exit 1; }

farm-bench -n "$RUNS" --timeout 600 \
  --vs "bash $work/runbook.sh" \
  -- "$ours" preflight --backup-dir "$work/backups" --charts "$charts/1.1.0"
