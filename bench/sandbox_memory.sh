#!/usr/bin/env bash
# Measures the resident memory of a sandbox holding 1,000 objects with 10
# open watches, against the 200 MiB budget. Uses the real kubectl from
# .venv (run scripts/setup first) and a debug build unless BUILD=release.
#
#   bench/sandbox_memory.sh            # prints RSS before/after, exit 1 over budget
set -euo pipefail
cd "$(dirname "$0")/.."
KUBECTL="$PWD/.venv/bin/kubectl"
[ -x "$KUBECTL" ] || { echo "sandbox_memory: $KUBECTL is missing; run scripts/setup first" >&2; exit 2; }
PROFILE=${BUILD:-debug}
if [ "$PROFILE" = release ]; then cargo build -q -p kleidia-sandbox --release; else cargo build -q -p kleidia-sandbox; fi
BIN="$PWD/target/$PROFILE/kleidia-sandbox"
OBJECTS=${OBJECTS:-1000}
WATCHES=${WATCHES:-10}
BUDGET_MIB=${BUDGET_MIB:-200}

DIR=$(mktemp -d)
WATCH_PIDS=()
cleanup() {
  for p in "${WATCH_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  "$BIN" down --dir "$DIR/sb" >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT

"$BIN" up --dir "$DIR/sb" --detach --empty >/dev/null
export KUBECONFIG="$DIR/sb/kubeconfig"
PID=$(sed -n 's/.*"pid":\([0-9]*\).*/\1/p' "$DIR/sb/sandbox.json")
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$PID/status"; }

BEFORE=$(rss_kib)
# Objects of a realistic size: ConfigMaps with 1 KiB of data and labels.
PAYLOAD=$(head -c 768 /dev/urandom | base64 -w0)
{
  for i in $(seq 1 "$OBJECTS"); do
    printf -- '---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bench-%d\n  labels: {bench: "yes", shard: "s%d"}\ndata:\n  payload: "%s"\n' "$i" $((i % 10)) "$PAYLOAD"
  done
} > "$DIR/objects.yaml"
"$KUBECTL" create -f "$DIR/objects.yaml" >/dev/null
for i in $(seq 1 "$WATCHES"); do
  "$KUBECTL" get configmaps -l "shard=s$((i % 10))" --watch >/dev/null 2>&1 &
  WATCH_PIDS+=($!)
done
sleep 2
# Churn so the watch history fills: every object modified once.
"$KUBECTL" label configmaps -l bench=yes round=2 >/dev/null
sleep 1
AFTER=$(rss_kib)
COUNT=$("$KUBECTL" get configmaps -l bench=yes -o name | wc -l)

printf 'objects: %s, open watches: %s\n' "$COUNT" "${#WATCH_PIDS[@]}"
printf 'rss before: %d MiB, after: %d MiB (budget %d MiB, %s build)\n' $((BEFORE / 1024)) $((AFTER / 1024)) "$BUDGET_MIB" "$PROFILE"
if [ $((AFTER / 1024)) -gt "$BUDGET_MIB" ]; then
  echo "sandbox_memory: over budget" >&2
  exit 1
fi
