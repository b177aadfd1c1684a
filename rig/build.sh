#!/usr/bin/env bash
# Builds the real upstream components (control plane, the real node's kubelet, kube-proxy,
# image programs and local registry, kwok, helm, csi-sanity, cnitool, reference CNI plugins,
# kube-score) from the Go module proxy, cached by version under ${KUBEXT_CACHE:-~/.cache/kubext}.
# Rebuilds only what is missing. images-base: podman's config and the services' base image, built
# from the Debian mirror (rig/images-base.sh).
# Usage: rig/build.sh [component ...]   (default: all)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"
cache=${KUBEXT_CACHE:-$HOME/.cache/kubext}
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
export GOMODCACHE=${GOMODCACHE:-$(go env GOMODCACHE)} GOCACHE=${GOCACHE:-$(go env GOCACHE)}
mkdir -p "$cache/bin" "$cache/src"

log() { printf '[rig-build %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# step NAME DIR BIN... -- CMD...: run CMD unless every BIN exists in DIR; report time.
step() {
  local name=$1 dir=$2; shift 2
  local bins=() missing=0
  while [ "$1" != "--" ]; do bins+=("$1"); shift; done; shift
  for b in "${bins[@]}"; do [ -x "$dir/$b" ] || missing=1; done
  if [ $missing = 0 ]; then log "$name: cached in $dir"; return; fi
  log "$name: building (${bins[*]}) ..."
  local t0=$SECONDS tmp="$dir.tmp.$$"
  rm -rf "$tmp"; mkdir -p "$tmp"
  if ! (OUTDIR=$tmp "$@"); then rm -rf "$tmp"; log "$name: FAILED"; return 1; fi
  mkdir -p "$dir"; for b in "${bins[@]}"; do mv -f "$tmp/$b" "$dir/$b"; done; rm -rf "$tmp"
  log "$name: done in $((SECONDS - t0)) s"
}

wrapper_module() { # DIR MODULE GOVERSION: a throwaway module to build upstream mains from
  rm -rf "$1"; mkdir -p "$1"; cd "$1"
  printf 'module local/kubext-%s\n\ngo %s\n' "$(basename "$1")" "$3" > go.mod
}

build_etcd() {
  wrapper_module "$cache/src/etcd" etcd 1.25.0
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null
  go build -trimpath -o "$OUTDIR/etcd" go.etcd.io/etcd/server/v3
}

# kubernetes_build SRCDIR PKG...: build k8s.io/kubernetes mains at the pin into $OUTDIR, from a
# wrapper module that maps every staging module to its v0.<minor>.<patch> release.
kubernetes_build() {
  local src=$1; shift
  local v=${KUBERNETES_VERSION#v} minor patch major=1
  minor=$(echo "$v" | cut -d. -f2); patch=$(echo "$v" | cut -d. -f3)
  wrapper_module "$src" kubernetes 1.25.0
  printf 'godebug default=go1.25\n' >> go.mod
  local staging="api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
    cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
    cri-client csi-translation-lib dynamic-resource-allocation endpointslice externaljwt kms
    kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl kubelet metrics
    mount-utils pod-security-admission sample-apiserver"
  for m in $staging; do
    printf 'replace k8s.io/%s => k8s.io/%s v0.%s.%s\n' "$m" "$m" "$minor" "$patch" >> go.mod
  done
  { printf 'package tools\n\nimport (\n'; printf '\t_ "%s"\n' "$@"; printf ')\n'; } > tools.go
  log "kubernetes: resolving modules (k8s.io/kubernetes@$KUBERNETES_VERSION)"
  go get "k8s.io/kubernetes@$KUBERNETES_VERSION" >/dev/null
  go mod tidy >/dev/null 2>&1 || true
  local ld="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ld="$ld -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  log "kubernetes: compiling ${*##*/} (the long step)"
  go build -trimpath -tags=selinux,notest -ldflags "-s -w $ld" -o "$OUTDIR/" "$@"
}

build_kubernetes() {
  local k=k8s.io/kubernetes/cmd
  kubernetes_build "$cache/src/kubernetes" "$k/kube-apiserver" "$k/kube-controller-manager" \
    "$k/kube-scheduler" "$k/kubectl"
}

# The real node's binaries: a step of their own, so the control plane's cache stays valid.
build_kubernetes_node() {
  kubernetes_build "$cache/src/kubernetes-node" k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
}

# Our stub kubelet (services/deviceplugin/stubkubelet: the kubelet's side of the device-plugin
# API, on the upstream k8s.io/kubelet package at the pin), cached by a hash of its sources so an
# edit rebuilds it; built from a copy, so the checkout's go.mod and go.sum stay as committed.
stub_kubelet_src=$here/../services/deviceplugin/stubkubelet
stub_kubelet_hash() { cat "$stub_kubelet_src/go.mod" "$stub_kubelet_src/go.sum" "$stub_kubelet_src"/*.go | sha256sum | cut -c1-12; }
build_stub_kubelet() {
  local v=${KUBERNETES_VERSION#v} src="$cache/src/stub-kubelet.$$"
  rm -rf "$src"; mkdir -p "$src"
  cp "$stub_kubelet_src"/go.mod "$stub_kubelet_src"/go.sum "$stub_kubelet_src"/*.go "$src/"
  (cd "$src" && go get "k8s.io/kubelet@v0.${v#*.}" >/dev/null 2>&1 &&
    go build -trimpath -ldflags "-s -w" -o "$OUTDIR/stub-kubelet" .) || { rm -rf "$src"; return 1; }
  rm -rf "$src"
}

# The upstream sample device plugin (the stub's check and the device plugin's benchmark peer).
build_sample_device_plugin() {
  kubernetes_build "$cache/src/sample-device-plugin" k8s.io/kubernetes/test/images/sample-device-plugin
}

# The real node's static programs for images (packed and imported by kubext_rig.node): the
# upstream pause (containerd's sandbox image), echo-loop (prints its arguments, then waits),
# tcp-echo (a TCP echo server on the port it is given) and write-read (writes or reads a file or
# block device on a volume, then waits).
build_node_images() {
  local mod="$GOMODCACHE/k8s.io/kubernetes@$KUBERNETES_VERSION"
  if ! command -v cc >/dev/null || [ ! -f "$(cc -print-file-name=libc.a)" ]; then
    log "node-images: needs a C compiler and a static libc: apt-get install gcc libc6-dev"; return 1
  fi
  [ -f "$mod/build/pause/linux/pause.c" ] || go mod download "k8s.io/kubernetes@$KUBERNETES_VERSION"
  cc -static -Os -DVERSION="$KUBERNETES_VERSION" -o "$OUTDIR/pause" "$mod/build/pause/linux/pause.c"
  cc -static -Os -o "$OUTDIR/echo-loop" "$here/node/echo-loop.c"
  cc -static -Os -o "$OUTDIR/tcp-echo" "$here/node/tcp-echo.c"
  cc -static -Os -o "$OUTDIR/write-read" "$here/node/write-read.c"
  strip "$OUTDIR/pause" "$OUTDIR/echo-loop" "$OUTDIR/tcp-echo" "$OUTDIR/write-read"
}

build_kwok() {
  GOBIN=$OUTDIR go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # Stage objects ship in the module, not the binary: keep a copy beside it.
  local stages="$GOMODCACHE/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
  mkdir -p "$cache/kwok-stages-$KWOK_VERSION"
  cp -f "$stages/node/fast/node-initialize.yaml" "$stages/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
    "$stages/pod/fast/pod-ready.yaml" "$stages/pod/fast/pod-complete.yaml" "$stages/pod/fast/pod-delete.yaml" \
    "$cache/kwok-stages-$KWOK_VERSION/"
}

build_helm() {
  local minor; minor=$(echo "${KUBERNETES_VERSION#v}" | cut -d. -f2)
  GOBIN=$OUTDIR go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

build_csi_sanity() {
  GOBIN=$OUTDIR go install -trimpath -ldflags "-s -w" "github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity@$CSI_TEST_VERSION"
}

build_cnitool() {
  GOBIN=$OUTDIR go install -trimpath -ldflags "-s -w" "github.com/containernetworking/cni/cnitool@$CNI_VERSION"
}

# kube-score: the audit's peer (services/audit compares its findings with kube-score's).
build_kube_score() {
  GOBIN=$OUTDIR go install -trimpath -ldflags "-s -w -X main.version=${KUBE_SCORE_VERSION#v}" \
    "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION"
}

# The real node's local image registry (containerd pulls 127.0.0.1:<port>/... over plain HTTP).
build_registry() {
  GOBIN=$OUTDIR go install -trimpath -ldflags "-s -w" \
    "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION"
}

# tilt, the dev loop (`./kubext dev`, the Tiltfile's tests): the proxy serves v0.33.21's source
# but `go install` of it fails (a deprecation lookup, then its replace directives), so it is built
# inside a copy of the module. Its web UI's assets are not in the module: a placeholder page
# stands in (without one `tilt up`/`ci` exit "JS/CSS files are not available"); main.version
# keeps tilt from wanting a local web dev server. Cold: ~8 min on 2 cores, 1.9 GB of memory.
build_tilt() {
  local v=${TILT_VERSION#v} src="$cache/src/tilt"
  log "tilt: downloading github.com/tilt-dev/tilt@$TILT_VERSION"
  go mod download -json "github.com/tilt-dev/tilt@$TILT_VERSION" >/dev/null
  rm -rf "$src"; cp -r "$GOMODCACHE/github.com/tilt-dev/tilt@$TILT_VERSION" "$src"; chmod -R u+w "$src"
  cd "$src"; rm -rf vendor node_modules # vendor/ holds only modules.txt
  printf '<!doctype html><html><body>tilt %s: this build has no web UI; use tilt get/logs/ci</body></html>\n' \
    "$v" > pkg/assets/build/index.html
  log "tilt: resolving modules and compiling (the long step)"
  local t0=$SECONDS rc=0 ticker
  (while sleep 60; do log "tilt: still compiling, $((SECONDS - t0)) s"; done) & ticker=$!
  # cgo: the Tiltfile language server's parser (go-tree-sitter) is C.
  CGO_ENABLED=1 go build -trimpath -ldflags "-s -w -X main.version=$v -X main.date=1970-01-01" -o "$OUTDIR/tilt" ./cmd/tilt || rc=$?
  kill "$ticker" 2>/dev/null; wait "$ticker" 2>/dev/null || true
  cd /; rm -rf "$src"
  return $rc
}

# kubext-bridge's compiled launcher (standard library only), keyed by the hash
# kubext_cni.golauncher.source_hash computes (go.mod, then the *.go files).
cni_launcher_src=$here/../services/cni/kubext_cni/golauncher
cni_launcher_hash() { cat "$cni_launcher_src/go.mod" "$cni_launcher_src"/*.go | sha256sum | cut -c1-12; }
build_cni_launcher() { (cd "$cni_launcher_src" && GOPROXY=off go build -trimpath -ldflags "-s -w" -o "$OUTDIR/kubext-bridge" .); }

build_cni_plugins() {
  local p m=github.com/containernetworking/plugins/plugins
  GOBIN=$OUTDIR go install -trimpath -ldflags "-s -w" \
    "$m/main/bridge@$CNI_PLUGINS_VERSION" "$m/ipam/host-local@$CNI_PLUGINS_VERSION" \
    "$m/meta/portmap@$CNI_PLUGINS_VERSION" "$m/main/loopback@$CNI_PLUGINS_VERSION"
}

want=("$@"); [ ${#want[@]} -gt 0 ] || want=(etcd kwok helm csi-sanity cnitool cni-plugins kube-score kubernetes kubernetes-node node-images registry images-base)
t_all=$SECONDS
for c in "${want[@]}"; do
  case $c in
    etcd) step etcd "$cache/bin/etcd-$ETCD_VERSION" etcd -- build_etcd ;;
    kubernetes) step kubernetes "$cache/bin/kubernetes-$KUBERNETES_VERSION" kube-apiserver kube-controller-manager kube-scheduler kubectl -- build_kubernetes ;;
    kubernetes-node) step kubernetes-node "$cache/bin/kubernetes-node-$KUBERNETES_VERSION" kubelet kube-proxy -- build_kubernetes_node ;;
    node-images) step node-images "$cache/bin/node-images-$KUBERNETES_VERSION" pause echo-loop tcp-echo write-read -- build_node_images ;;
    stub-kubelet) step stub-kubelet "$cache/bin/stub-kubelet-$KUBERNETES_VERSION-$(stub_kubelet_hash)" stub-kubelet -- build_stub_kubelet ;;
    sample-device-plugin) step sample-device-plugin "$cache/bin/sample-device-plugin-$KUBERNETES_VERSION" sample-device-plugin -- build_sample_device_plugin ;;
    kwok) step kwok "$cache/bin/kwok-$KWOK_VERSION" kwok -- build_kwok ;;
    helm) step helm "$cache/bin/helm-$HELM_VERSION" helm -- build_helm ;;
    csi-sanity) step csi-sanity "$cache/bin/csi-test-$CSI_TEST_VERSION" csi-sanity -- build_csi_sanity ;;
    cnitool) step cnitool "$cache/bin/cni-$CNI_VERSION" cnitool -- build_cnitool ;;
    cni-launcher) step cni-launcher "$cache/bin/cni-launcher-$(cni_launcher_hash)" kubext-bridge -- build_cni_launcher ;;
    cni-plugins) step cni-plugins "$cache/bin/cni-plugins-$CNI_PLUGINS_VERSION" bridge host-local portmap loopback -- build_cni_plugins ;;
    registry) step registry "$cache/bin/registry-$REGISTRY_VERSION" registry -- build_registry ;;
    # podman's config and the services' base image (cached by its inputs; rig/images-base.sh).
    images-base) "$here/images-base.sh" ;;
    # The Database sample's PostgreSQL and exporter images from Debian's packages (cached by
    # their inputs; images/postgres/build.sh). Not in the default list.
    images-postgres) "$here/../images/postgres/build.sh" ;;
    tilt) step tilt "$cache/bin/tilt-$TILT_VERSION" tilt -- build_tilt ;;
    kube-score) step kube-score "$cache/bin/kube-score-$KUBE_SCORE_VERSION" kube-score -- build_kube_score ;;
    *) log "unknown component $c"; exit 2 ;;
  esac
done
log "all requested components ready in $((SECONDS - t_all)) s (cache: $cache/bin)"
