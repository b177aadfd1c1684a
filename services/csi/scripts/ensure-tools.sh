#!/usr/bin/env bash
# Installs the node tools kubext-csi runs (losetup/mount/umount from util-linux and mount,
# mkfs.ext4/resize2fs/e2fsck from e2fsprogs) with apt when any is missing. Idempotent: does nothing when
# all are present. Used by the csi tests and benchmark; images install the same packages.
set -euo pipefail
need=()
for tool in losetup:mount mount:mount umount:mount mkfs.ext4:e2fsprogs resize2fs:e2fsprogs e2fsck:e2fsprogs; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
[ ${#need[@]} -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${need[@]}" util-linux | sort -u | tr '\n' ' ')
echo "[csi ensure-tools] installing: $pkgs" >&2
if [ "$(id -u)" -ne 0 ]; then echo "[csi ensure-tools] need root to install $pkgs" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $pkgs >&2
