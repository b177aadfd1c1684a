#!/usr/bin/env bash
# Builds csi-driver-host-path's hostpathplugin (the reference CSI driver) for the benchmark,
# cached under ${KUBEXT_CACHE:-~/.cache/kubext}/bin/csi-driver-host-path-<version>/.
#
# From its published source when HOSTPATH_SRC names a checkout or an unpacked archive of the tag
# (go build ./cmd/hostpathplugin there: its vendor/ when present and consistent, else its go.mod
# through the module proxy); otherwise `go install ...@version` from the module proxy, which
# refuses this module here. HOSTPATH_VERSION (default v1.18.0) names the cache and the binary's
# version: it must be the tag HOSTPATH_SRC holds. Prints the binary's path; exit 3 says why it
# could not build (the bench then reports the peer as not built).
set -euo pipefail
version=${HOSTPATH_VERSION:-v1.18.0}
src=${HOSTPATH_SRC:-}
cache=${KUBEXT_CACHE:-$HOME/.cache/kubext}
dir=$cache/bin/csi-driver-host-path-$version
bin=$dir/hostpathplugin
log() { printf '[build-hostpath] %s\n' "$*" >&2; }
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
command -v go >/dev/null || { log "go is not installed"; exit 3; }
export GOTOOLCHAIN=local CGO_ENABLED=0
ldflags="-s -w -X main.version=$version"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
if [ -n "$src" ]; then
  if [ ! -f "$src/go.mod" ] || [ ! -d "$src/cmd/hostpathplugin" ]; then
    log "HOSTPATH_SRC=$src is not csi-driver-host-path's source (no go.mod, cmd/hostpathplugin)"
    exit 3
  fi
  build() {
    (cd "$src" && GOFLAGS="-buildvcs=false -mod=$1" go build -trimpath -ldflags "$ldflags" \
      -o "$tmp/bin/hostpathplugin" ./cmd/hostpathplugin) 2>"$tmp/err"
  }
  log "go build ./cmd/hostpathplugin in $src ($version)"
  if [ -f "$src/vendor/modules.txt" ] && build vendor; then
    :
  elif build mod; then  # no vendor/, or one that no longer matches go.mod
    :
  else
    log "go build failed: $(tail -n 2 "$tmp/err" | tr '\n' ' ')"
    exit 3
  fi
else
  log "go install github.com/kubernetes-csi/csi-driver-host-path/cmd/hostpathplugin@$version"
  if ! GOBIN=$tmp/bin GOFLAGS=-buildvcs=false go install -trimpath -ldflags "$ldflags" \
      "github.com/kubernetes-csi/csi-driver-host-path/cmd/hostpathplugin@$version" 2>"$tmp/err"; then
    log "go install failed: $(tail -n 2 "$tmp/err" | tr '\n' ' ')"
    exit 3
  fi
fi
mkdir -p "$dir"; mv -f "$tmp/bin/hostpathplugin" "$bin"
log "built $bin"
echo "$bin"
