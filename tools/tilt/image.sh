#!/usr/bin/env bash
# The Tiltfile's custom_build command for one service: Pants builds its image (podman, as
# `./pants package services/<svc>:image` always does: localhost/kubext/<svc>:<VERSION>), then
# podman tags it as the ref Tilt chose ($EXPECTED_REF: the registry's host, the repository, a
# tilt-build tag) and pushes it there, for the cluster's nodes to pull.
# Usage (from the repository root): tools/tilt/image.sh SVC VERSION
set -euo pipefail
svc=${1:?usage: image.sh SVC VERSION} version=${2:?usage: image.sh SVC VERSION}
ref=${EXPECTED_REF:?set by Tilt: the ref to tag and push}
case $ref in
  # A registry on this machine (the rig's, kind's or k3d's local one) speaks plain HTTP.
  localhost[:/]* | 127.0.0.1[:/]*) tls=false ;;
  */*/* | *.*/* | *:*/*) tls=true ;;
  *)
    echo "image.sh: $ref names no registry: give the Tiltfile one (tilt up -- --registry HOST[:PORT])," \
      "or use a cluster that advertises its local registry (kind, k3d, minikube)" >&2
    exit 2 ;;
esac
./pants --no-dynamic-ui -lerror package "services/$svc:image"
podman tag "localhost/kubext/$svc:$version" "$ref"
podman push --quiet --tls-verify=$tls "$ref"
echo "image.sh: pushed $ref"
