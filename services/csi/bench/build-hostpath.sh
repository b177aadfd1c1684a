#!/usr/bin/env bash
# Builds csi-driver-host-path's hostpathplugin (the reference CSI driver) for the benchmark,
# cached under ${KUBEXT_CACHE:-~/.cache/kubext}/bin/csi-driver-host-path-<version>/.
# From Go modules only (go install ...@version). Prints the binary's path; exit 3 says why it
# could not build (the module proxy has refused this module here, so the bench then reports n/a).
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
  exit 3
fi
mkdir -p "$dir"; mv -f "$tmp/bin/hostpathplugin" "$bin"
log "built $bin"
echo "$bin"
