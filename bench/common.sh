# Sourced by the bench scripts that run the plugin against sandboxes:
# installs and builds what they run, names the binaries, and makes a
# private work folder ($work, 0700) holding helm's own folders and the
# sandboxes (each under $work/sb*), all stopped and removed on exit.
# Usage: bench_setup NAME
bench_setup() {
  scripts/setup
  cargo build --quiet --bin kubectl-kleidia && cargo build --quiet -p kleidia-sandbox --bin kleidia-sandbox
  ours="$PWD/target/debug/kubectl-kleidia"
  sandbox="$PWD/target/debug/kleidia-sandbox"
  helm="$PWD/.venv/helm-v4/helm"
  kubectl="$PWD/.venv/bin/kubectl"
  charts="$PWD/sandbox/charts"
  work=$(mktemp -d "/tmp/kleidia-bench-$1-XXXXXX")
  chmod 700 "$work"
  trap bench_cleanup EXIT
  export HELM_CACHE_HOME="$work/helm/cache" HELM_CONFIG_HOME="$work/helm/config" HELM_DATA_HOME="$work/helm/data"
}

bench_cleanup() {
  for d in "$work"/sb*; do
    [ -d "$d" ] && "$sandbox" down --dir "$d" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
