#!/bin/sh
# Runs helm-kleidia: the copy installed in the plugin folder, else the one
# on PATH. Helm's environment and all arguments pass through unchanged.
dir=${HELM_PLUGIN_DIR:-$(dirname "$0")}
if [ -x "$dir/bin/helm-kleidia" ]; then
  exec "$dir/bin/helm-kleidia" "$@"
fi
if command -v helm-kleidia >/dev/null 2>&1; then
  exec helm-kleidia "$@"
fi
echo "helm kleidia: the helm-kleidia binary is missing from $dir/bin and PATH; run $dir/install-binary.sh (or: helm plugin uninstall kleidia && helm plugin install ...), or put helm-kleidia on PATH" >&2
exit 1
