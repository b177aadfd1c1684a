#!/usr/bin/env bash
# Configures podman for the project's image builds and builds the services' base image
# localhost/kubext-base:bookworm-py3.11 from the Debian mirror this machine's apt uses (mmdebstrap,
# then `podman import`): no registry is reached. Cached by its inputs: skipped when the image
# carries the label io.kubext.base.inputs with the hash of the suite, packages, mmdebstrap options
# and the apt sources.
# Usage: rig/images-base.sh          (called by `rig/build.sh images-base`; root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
image=${KUBEXT_BASE_IMAGE:-localhost/kubext-base:bookworm-py3.11}
label=io.kubext.base.inputs
suite=bookworm
# Debian 12's python3 is 3.11, which the pexes need (python3-minimal: /usr/bin/python3); passwd
# for the Dockerfiles' useradd.
packages=python3.11,python3-minimal,ca-certificates,passwd
sources=$(ls /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true)
log() { printf '[rig-build %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

for tool in podman mmdebstrap; do
  command -v "$tool" >/dev/null || { log "images-base: $tool is missing (./kubext installs it: apt-get install podman mmdebstrap)"; exit 1; }
done

# Without these ulimits every RUN fails here (crun/runc: setrlimit RLIMIT_NOFILE: Operation not
# permitted; no CAP_SYS_RESOURCE, and nproc >= 65536 fails too); crun fails on a hybrid cgroup.
conf=/etc/containers/containers.conf.d/kubext.conf
want_conf='# Written by kubext rig/images-base.sh: ulimits a RUN step may set here, and runc.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"'
if [ "$(cat "$conf" 2>/dev/null)" != "$want_conf" ]; then
  mkdir -p "$(dirname "$conf")"; printf '%s\n' "$want_conf" > "$conf"; log "images-base: wrote $conf"
fi

# No docs, man pages or locales; apt keeps no package cache (as the Docker images' docker-clean).
opts=(--variant=minbase --include="$packages" --quiet
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  --customize-hook='printf "%s\n" "DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true\"; };" "APT::Keep-Downloaded-Packages \"false\";" "Dir::Cache::pkgcache \"\"; Dir::Cache::srcpkgcache \"\";" > "$1/etc/apt/apt.conf.d/docker-clean"'
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log "$1"/var/log/apt/*')
# The inputs: the recipe above and the apt sources it pastes into the image.
# shellcheck disable=SC2086
inputs=$( (printf '%s\n' "$suite" "${opts[@]}"; cat $sources) | sha256sum | cut -c1-16)
have=$(podman image inspect --format "{{ index .Labels \"$label\" }}" "$image" 2>/dev/null || true)
if [ "$have" = "$inputs" ]; then log "images-base: cached ($image, inputs $inputs)"; exit 0; fi

log "images-base: building $image from the Debian mirror (mmdebstrap $suite: $packages; 80 s idle, 210 s on a loaded machine) ..."
t0=$SECONDS
tmp=$(mktemp -d /tmp/kubext-base.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mirrors=()
for s in $sources; do mirrors+=("$s"); done
mmdebstrap "${opts[@]}" "$suite" "$tmp/rootfs.tar" "${mirrors[@]}"
log "images-base: rootfs $(du -m "$tmp/rootfs.tar" | cut -f1) MB in $((SECONDS - t0)) s; importing"
old=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
podman import --quiet --change "LABEL $label=$inputs" --change 'CMD ["/usr/bin/python3"]' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  "$tmp/rootfs.tar" "$image" >/dev/null
# The previous base, now untagged, goes unless an image still built on it keeps it.
[ -z "$old" ] || podman rmi "$old" >/dev/null 2>&1 || true
log "images-base: $image done in $((SECONDS - t0)) s ($(podman image inspect --format '{{.Size}}' "$image" | awk '{printf "%d MB", $1/1e6}'))"
