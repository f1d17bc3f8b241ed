#!/usr/bin/env bash
# Makes the example's base image: a minimal Debian 12 root with python3 (debootstrap),
# packed as an OCI image (umoci) and pushed to REGISTRY as berth/python:3.11 (skopeo).
#   make-python-base.sh REGISTRY     e.g. 127.0.0.1:5555
# The root filesystem is cached under /var/cache/berth-python-base.
set -euo pipefail
registry=${1:?usage: make-python-base.sh REGISTRY}
cache=/var/cache/berth-python-base
ref="$registry/berth/python:3.11"
if skopeo inspect --tls-verify=false "docker://$ref" >/dev/null 2>&1; then
  echo "base image $ref already in the registry"; exit 0
fi
if [ ! -f "$cache/done" ]; then
  echo "debootstrap: making a Debian root with python3 (once; cached in $cache)"
  rm -rf "$cache"; mkdir -p "$cache"
  debootstrap --variant=minbase --include=python3,adduser bookworm "$cache/rootfs" http://deb.debian.org/debian >"$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log"; exit 1; }
  rm -rf "$cache/rootfs/var/cache/apt/archives/"*.deb "$cache/rootfs/var/lib/apt/lists/"*
  touch "$cache/done"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umoci init --layout "$work/layout" >/dev/null
umoci new --image "$work/layout:t" >/dev/null
umoci unpack --image "$work/layout:t" "$work/bundle" >/dev/null
cp -a "$cache/rootfs/." "$work/bundle/rootfs/"
umoci repack --image "$work/layout:t" "$work/bundle" >/dev/null
umoci config --image "$work/layout:t" --config.cmd python3 \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --config.env LANG=C.UTF-8 >/dev/null
umoci gc --layout "$work/layout"
skopeo copy -q --dest-tls-verify=false "oci:$work/layout:t" "docker://$ref" >/dev/null
echo "pushed $ref"
