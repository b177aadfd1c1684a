#!/usr/bin/env bash
# Builds csi-driver-host-path's hostpathplugin (the reference CSI driver) for the benchmark,
# cached under ${KUBEXT_CACHE:-~/.cache/kubext}/bin/csi-driver-host-path-<version>/.
# First from Go modules (go install ...@version); if the module proxy refuses, from a source
# snapshot (HOSTPATH_SRC: a git repository holding the version's tag; the repo vendors its deps,
# so that build needs no network). Prints the binary's path; exit 3 says why it could not build.
set -euo pipefail
version=${HOSTPATH_VERSION:-v1.18.0}
cache=${KUBEXT_CACHE:-$HOME/.cache/kubext}
dir=$cache/bin/csi-driver-host-path-$version
bin=$dir/hostpathplugin
log() { printf '[build-hostpath] %s\n' "$*" >&2; }
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
command -v go >/dev/null || { log "go is not installed"; exit 3; }
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
log "go install github.com/kubernetes-csi/csi-driver-host-path/cmd/hostpathplugin@$version"
if GOBIN=$tmp/bin go install -trimpath -ldflags "-s -w -X main.version=$version" \
    "github.com/kubernetes-csi/csi-driver-host-path/cmd/hostpathplugin@$version" 2>"$tmp/err"; then
  :
else
  log "go install failed: $(tail -n 2 "$tmp/err" | tr '\n' ' ')"
  src=${HOSTPATH_SRC:-}
  if [ -z "$src" ]; then log "no HOSTPATH_SRC snapshot to fall back to"; exit 3; fi
  log "building $version from the source snapshot $src (vendored modules)"
  git --git-dir="$src" archive "$version" 2>/dev/null | tar -x -C "$tmp" ||
    git -C "$src" archive "$version" | tar -x -C "$tmp"
  (cd "$tmp" && go build -mod=vendor -trimpath -ldflags "-s -w -X main.version=$version" \
    -o "$tmp/bin/hostpathplugin" ./cmd/hostpathplugin) || { log "source build failed"; exit 3; }
fi
mkdir -p "$dir"; mv -f "$tmp/bin/hostpathplugin" "$bin"
log "built $bin"
echo "$bin"
