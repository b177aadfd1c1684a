#!/usr/bin/env bash
# Builds the PostgreSQL images of the Database sample from Debian bookworm's packages, the way
# rig/images-base.sh builds the services' base: mmdebstrap from the mirror this machine's apt uses,
# then `podman import`; no registry is reached.
# - localhost/kubext/postgres:<major> and :<major>.<minor> (e.g. 15 and 15.20): postgresql-15 and
#   its client tools (psql, pg_dumpall, pg_dump, pg_restore, pg_isready), bash and gzip for the
#   operator's backup CronJob and restore Job, and entrypoint.sh (beside this script), which
#   initialises an empty PGDATA from POSTGRES_USER/POSTGRES_PASSWORD as the official image does.
# - localhost/kubext/postgres-exporter:<version> (e.g. 0.11.1): the same layers, Debian's
#   prometheus-postgres-exporter as the entrypoint, uid 65532: the operator's exporter sidecar.
# Cached by its inputs: skipped when the image carries the label io.kubext.postgres.inputs with the
# hash of the suite, packages, mmdebstrap options, entrypoint and apt sources.
# Usage: images/postgres/build.sh     (called by `rig/build.sh images-postgres`; root)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=${KUBEXT_POSTGRES_REPOSITORY:-localhost/kubext/postgres}
exporter_repo=${KUBEXT_POSTGRES_EXPORTER_REPOSITORY:-localhost/kubext/postgres-exporter}
label=io.kubext.postgres.inputs
suite=bookworm
major=15
packages=postgresql-$major,postgresql-client-$major,prometheus-postgres-exporter
sources=$(ls /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true)
log() { printf '[rig-build %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

for tool in podman mmdebstrap; do
  command -v "$tool" >/dev/null || { log "images-postgres: $tool is missing (apt-get install podman mmdebstrap)"; exit 1; }
done

# The postgres user gets a fixed uid/gid (999, as the official image's) before the packages'
# adduser runs, so volumes can be owned by it; Debian's packages then find it and keep it.
opts=(--variant=minbase --include="$packages" --quiet
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*'
  # JIT compilation's LLVM (and its z3), 155 of 386 MB: without llvmjit.so PostgreSQL runs
  # without JIT (the jit setting then does nothing), as builds without --with-llvm do.
  --dpkgopt='path-exclude=/usr/lib/postgresql/*/lib/llvmjit*' --dpkgopt='path-exclude=/usr/lib/postgresql/*/lib/bitcode/*'
  --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/libLLVM-*' --dpkgopt='path-exclude=/usr/lib/x86_64-linux-gnu/libz3.so*'
  --essential-hook='echo "postgres:x:999:999:PostgreSQL administrator:/var/lib/postgresql:/bin/bash" >> "$1/etc/passwd"; echo "postgres:x:999:" >> "$1/etc/group"; echo "postgres:*:19000:0:99999:7:::" >> "$1/etc/shadow"; echo "postgres:*::" >> "$1/etc/gshadow"'
  # The packages' own cluster (pg_createcluster main) goes: the entrypoint initialises PGDATA.
  --customize-hook='rm -rf "$1"/etc/postgresql/*/main "$1"/var/lib/postgresql/*/main'
  --customize-hook='mkdir -p "$1/var/lib/postgresql/data" && chown 999:999 "$1/var/lib/postgresql/data" && chmod 700 "$1/var/lib/postgresql/data"'
  --customize-hook='printf "%s\n" "DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true\"; };" "APT::Keep-Downloaded-Packages \"false\";" "Dir::Cache::pkgcache \"\"; Dir::Cache::srcpkgcache \"\";" > "$1/etc/apt/apt.conf.d/docker-clean"'
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/log/*.log "$1"/var/log/apt/* "$1"/var/log/postgresql/*')
# shellcheck disable=SC2086
inputs=$( (printf '%s\n' "$suite" "${opts[@]}"; cat "$here/entrypoint.sh" $sources) | sha256sum | cut -c1-16)
have=$(podman image inspect --format "{{ index .Labels \"$label\" }}" "$repo:$major" 2>/dev/null || true)
have_exporter=$(podman image inspect --format "{{ index .Labels \"$label\" }}" "$exporter_repo:latest" 2>/dev/null || true)
if [ "$have" = "$inputs" ] && [ "$have_exporter" = "$inputs" ]; then
  log "images-postgres: cached ($repo:$major, $exporter_repo, inputs $inputs)"; exit 0
fi

log "images-postgres: building $repo:$major from the Debian mirror (mmdebstrap $suite: $packages) ..."
t0=$SECONDS
tmp=$(mktemp -d /tmp/kubext-postgres.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mirrors=()
for s in $sources; do mirrors+=("$s"); done
mmdebstrap "${opts[@]}" \
  --customize-hook="install -m 0755 '$here/entrypoint.sh' \"\$1/usr/local/bin/docker-entrypoint.sh\"" \
  --customize-hook="chroot \"\$1\" dpkg-query -W -f='\${Version}' postgresql-$major > '$tmp/pg-version'" \
  --customize-hook="chroot \"\$1\" dpkg-query -W -f='\${Version}' prometheus-postgres-exporter > '$tmp/exporter-version'" \
  "$suite" "$tmp/rootfs.tar" "${mirrors[@]}"
# 15.20-0+deb12u1 -> 15.20; 0.11.1-3+b5 -> 0.11.1
pg_version=$(sed 's/-.*//' "$tmp/pg-version")
exporter_version=$(sed 's/-.*//' "$tmp/exporter-version")
log "images-postgres: rootfs $(du -m "$tmp/rootfs.tar" | cut -f1) MB in $((SECONDS - t0)) s (postgresql $pg_version, exporter $exporter_version); importing"
old=$(podman image inspect --format '{{.Id}}' "$repo:$major" 2>/dev/null || true)
old_exporter=$(podman image inspect --format '{{.Id}}' "$exporter_repo:latest" 2>/dev/null || true)
podman import --quiet --change "LABEL $label=$inputs" \
  --change "LABEL org.opencontainers.image.title=kubext-postgres org.opencontainers.image.version=$pg_version" \
  --change "ENV PATH=/usr/lib/postgresql/$major/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change 'ENV PGDATA=/var/lib/postgresql/data' \
  --change 'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]' --change 'CMD ["postgres"]' \
  --change 'EXPOSE 5432' --change 'STOPSIGNAL SIGINT' \
  "$tmp/rootfs.tar" "$repo:$major" >/dev/null
podman tag "$repo:$major" "$repo:$pg_version"
# The exporter: the same layers (no copy), its own entrypoint and a non-root user.
printf '%s\n' "FROM $repo:$major" "LABEL org.opencontainers.image.title=kubext-postgres-exporter org.opencontainers.image.version=$exporter_version" \
  'USER 65532:65532' 'EXPOSE 9187' 'ENTRYPOINT ["/usr/bin/prometheus-postgres-exporter"]' 'CMD []' \
  | podman build --quiet --network=none -t "$exporter_repo:$exporter_version" -t "$exporter_repo:latest" -f - "$tmp" >/dev/null
# The previous images, now untagged, go (the exporter first: it is built on the other).
[ -z "$old_exporter" ] || podman rmi "$old_exporter" >/dev/null 2>&1 || true
[ -z "$old" ] || podman rmi "$old" >/dev/null 2>&1 || true
size() { podman image inspect --format '{{.Size}}' "$1" | awk '{printf "%d MB", $1/1e6}'; }
log "images-postgres: $repo:$major ($repo:$pg_version, $(size "$repo:$major")) and $exporter_repo:$exporter_version done in $((SECONDS - t0)) s"
