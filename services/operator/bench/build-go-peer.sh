#!/usr/bin/env bash
# Builds the operator benchmark's controller-runtime peer (bench/go-peer) from the Go module proxy,
# cached by a hash of its sources under ${KUBEXT_CACHE:-~/.cache/kubext}/bin/operator-go-peer-HASH,
# so an edit rebuilds it and nothing else does. Progress goes to stderr; the binary's path is the
# one line on stdout. Built from a copy, so the checkout's go.mod and go.sum stay as committed.
# Usage: services/operator/bench/build-go-peer.sh
set -euo pipefail
src=$(cd "$(dirname "$0")/go-peer" && pwd)
cache=${KUBEXT_CACHE:-$HOME/.cache/kubext}
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
export GOMODCACHE=${GOMODCACHE:-$(go env GOMODCACHE)} GOCACHE=${GOCACHE:-$(go env GOCACHE)}

log() { printf '[operator-go-peer %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

hash=$(cat "$src/go.mod" "$src/go.sum" "$src"/*.go | sha256sum | cut -c1-12)
out="$cache/bin/operator-go-peer-$hash"
if [ -x "$out/operator-go-peer" ]; then
  log "cached in $out"
  echo "$out/operator-go-peer"
  exit 0
fi
work="$cache/src/operator-go-peer.$$"
trap 'rm -rf "$work"' EXIT
rm -rf "$work"; mkdir -p "$work" "$out"
cp "$src/go.mod" "$src/go.sum" "$src"/*.go "$work/"
t0=$SECONDS
log "downloading modules (sigs.k8s.io/controller-runtime, see go.mod) ..."
(cd "$work" && go mod download)
log "compiling (a minute or two on 2 cores when the build cache is cold) ..."
(cd "$work" && go build -trimpath -ldflags "-s -w" -o "$out/operator-go-peer.tmp" .)
mv -f "$out/operator-go-peer.tmp" "$out/operator-go-peer"
log "done in $((SECONDS - t0)) s: $out/operator-go-peer"
echo "$out/operator-go-peer"
