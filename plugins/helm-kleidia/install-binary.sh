#!/bin/sh
# Install hook of the helm-kleidia plugin. Puts a helm-kleidia binary in
# bin/ of the plugin folder, from the first of:
#   1. $KLEIDIA_BINARY (a prebuilt binary),
#   2. helm-kleidia on PATH (already installed, e.g. from a release archive),
#   3. a cargo build of the checkout this folder belongs to.
set -eu
dir=${HELM_PLUGIN_DIR:-$(cd "$(dirname "$0")" && pwd)}
mkdir -p "$dir/bin"

if [ -n "${KLEIDIA_BINARY:-}" ]; then
  [ -x "$KLEIDIA_BINARY" ] || { echo "install-binary.sh: KLEIDIA_BINARY=$KLEIDIA_BINARY is not an executable file" >&2; exit 1; }
  cp "$KLEIDIA_BINARY" "$dir/bin/helm-kleidia"
  echo "helm-kleidia installed from $KLEIDIA_BINARY"
  exit 0
fi

if found=$(command -v helm-kleidia 2>/dev/null); then
  ln -sf "$found" "$dir/bin/helm-kleidia"
  echo "helm-kleidia linked from $found"
  exit 0
fi

# The plugin folder is plugins/helm-kleidia inside the source checkout.
repo=$(cd "$dir/../.." 2>/dev/null && pwd || true)
if [ -n "$repo" ] && [ -f "$repo/Cargo.toml" ] && grep -q '^name = "kleidia"' "$repo/Cargo.toml"; then
  if ! command -v cargo >/dev/null 2>&1; then
    echo "install-binary.sh: cargo is not installed; install Rust (https://rustup.rs) or set KLEIDIA_BINARY to a prebuilt helm-kleidia" >&2
    exit 1
  fi
  echo "building helm-kleidia with cargo in $repo"
  cargo build --release --locked --manifest-path "$repo/Cargo.toml" --bin helm-kleidia
  cp "$repo/target/release/helm-kleidia" "$dir/bin/helm-kleidia"
  echo "helm-kleidia installed from $repo/target/release"
  exit 0
fi

echo "install-binary.sh: no helm-kleidia found: set KLEIDIA_BINARY to a prebuilt binary, put helm-kleidia on PATH, or install the plugin from a source checkout with cargo available" >&2
exit 1
