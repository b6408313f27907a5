#!/bin/sh
# Install and update hook of the helm-kleidia plugin. Puts the helm-kleidia
# binary in bin/ of the plugin folder, from the first of:
#   1. $KLEIDIA_BINARY, a prebuilt binary;
#   2. a cargo build, when the plugin folder is plugins/helm-kleidia of a
#      source checkout (profile $KLEIDIA_CARGO_PROFILE, default release);
#   3. the helm-kleidia of this plugin's version beside the plugin folder
#      (an unpacked release archive holds both);
#   4. the release archive of this plugin's version for this OS and
#      architecture, checked against its published SHA-256
#      ($KLEIDIA_RELEASE_URL replaces the GitHub release folder, e.g. a
#      mirror or file:///path/to/dist).
# The binary is written under a temporary name and renamed: an interrupted
# install never leaves a half-written bin/helm-kleidia.
set -eu
# Helm installs a local folder as a symlink: resolve it, so a checkout is
# recognised by its physical path.
dir=$(cd -P "${HELM_PLUGIN_DIR:-$(dirname "$0")}" && pwd -P)
mkdir -p "$dir/bin"
dest="$dir/bin/helm-kleidia"
fail() { echo "install-binary.sh: $*" >&2; exit 1; }
tmp=""
cleanup() {
  rm -f "$dest.tmp.$$"
  if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
}
# Interrupted or not, leave no temporary file behind.
trap cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

place() { # <file> <where it came from>
  cp "$1" "$dest.tmp.$$"
  chmod 0755 "$dest.tmp.$$"
  mv -f "$dest.tmp.$$" "$dest"
  echo "helm-kleidia installed from $2"
}

if [ -n "${KLEIDIA_BINARY:-}" ]; then
  [ -f "$KLEIDIA_BINARY" ] && [ -x "$KLEIDIA_BINARY" ] ||
    fail "KLEIDIA_BINARY=$KLEIDIA_BINARY is not an executable file; point it at a helm-kleidia binary or unset it"
  place "$KLEIDIA_BINARY" "$KLEIDIA_BINARY"
  exit 0
fi

repo=$(cd -P "$dir/../.." 2>/dev/null && pwd -P || true)
if [ -n "$repo" ] && [ -f "$repo/Cargo.toml" ] && grep -q '^name = "kleidia"' "$repo/Cargo.toml"; then
  command -v cargo >/dev/null 2>&1 ||
    fail "this is a source checkout ($repo) but cargo is not installed: install Rust (https://rustup.rs), or set KLEIDIA_BINARY to a prebuilt helm-kleidia"
  profile=${KLEIDIA_CARGO_PROFILE:-release}
  echo "building helm-kleidia ($profile profile) with cargo in $repo"
  cargo build --locked --profile "$profile" --manifest-path "$repo/Cargo.toml" --bin helm-kleidia
  case $profile in dev | test) out=debug ;; *) out=$profile ;; esac
  place "${CARGO_TARGET_DIR:-$repo/target}/$out/helm-kleidia" "a $profile build of $repo"
  exit 0
fi

version=$(sed -n 's/^version: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$dir/plugin.yaml" | head -n 1)
[ -n "$version" ] || fail "no version in $dir/plugin.yaml"

# An unpacked release archive: its helm-kleidia sits beside helm-plugin/.
beside="$dir/../helm-kleidia"
if [ -f "$beside" ] && [ -x "$beside" ] && [ "$("$beside" --version 2>/dev/null)" = "helm kleidia $version" ]; then
  place "$beside" "$(cd -P "$dir/.." && pwd -P)/helm-kleidia"
  exit 0
fi
case $(uname -s) in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  *) fail "no release archive for $(uname -s): build from source (cargo install --git https://github.com/kleidia/kleidia) and set KLEIDIA_BINARY" ;;
esac
case $(uname -m) in
  x86_64 | amd64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) fail "no release archive for $(uname -m): build from source and set KLEIDIA_BINARY" ;;
esac
base=${KLEIDIA_RELEASE_URL:-https://github.com/kleidia/kleidia/releases/download/v$version}
archive="kleidia_v${version}_${os}_${arch}.tar.gz"

tmp=$(mktemp -d)
fetch() { # <url> <file>
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 3 -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O "$2" "$1"
  else
    fail "neither curl nor wget is installed to download $1"
  fi
}
echo "downloading $base/$archive"
fetch "$base/$archive" "$tmp/$archive" ||
  fail "cannot download $base/$archive; set KLEIDIA_BINARY to a prebuilt helm-kleidia, or KLEIDIA_RELEASE_URL to a folder holding $archive"
fetch "$base/$archive.sha256" "$tmp/$archive.sha256" ||
  fail "cannot download $base/$archive.sha256 to check the archive; not installing an unchecked binary"
want=$(cut -d ' ' -f 1 <"$tmp/$archive.sha256")
if command -v sha256sum >/dev/null 2>&1; then
  got=$(sha256sum "$tmp/$archive" | cut -d ' ' -f 1)
else
  got=$(shasum -a 256 "$tmp/$archive" | cut -d ' ' -f 1)
fi
[ "$got" = "$want" ] ||
  fail "$archive has SHA-256 $got, but $archive.sha256 says $want: the download is damaged or altered; not installing it"
tar -xzf "$tmp/$archive" -C "$tmp" helm-kleidia ||
  fail "$archive holds no helm-kleidia"
place "$tmp/helm-kleidia" "$base/$archive"
