#!/usr/bin/env bash
# Installs the node tools kubext-csi runs (mkfs.ext4, resize2fs, e2fsck, e2label from e2fsprogs; losetup
# from util-linux as the fallback for kernels before 5.8) with apt when any is missing.
# Idempotent: does nothing when all are present. Used by the csi tests and the benchmark.
set -euo pipefail
need=()
for tool in mkfs.ext4:e2fsprogs resize2fs:e2fsprogs e2fsck:e2fsprogs e2label:e2fsprogs losetup:util-linux; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
[ ${#need[@]} -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${need[@]}" | sort -u | tr '\n' ' ')
echo "[csi ensure-tools] installing: $pkgs" >&2
if [ "$(id -u)" -ne 0 ]; then echo "[csi ensure-tools] need root to install $pkgs" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $pkgs >&2
