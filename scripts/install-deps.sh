#!/usr/bin/env bash
# Installs the Debian packages Berth's build, tests and demo need.
# Idempotent: a package already present is skipped quickly.
set -euo pipefail
pkgs=(libseccomp-dev pkg-config docker-registry skopeo umoci busybox-static runc
      nftables iproute2 iptables docker-compose debootstrap curl apache2-utils jq
      python3 wrk hyperfine procps psmisc tini
      docker.io) # dockerd: the layer-tree comparison test and the benchmarks run it side by side
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The docker CLI is part of the machine image; fall back to Debian's docker.io.
command -v docker >/dev/null || { apt-get install -y -qq docker.io >/dev/null; }
# Debian's docker-registry package ships a systemd unit; tests start their own.
systemctl disable --now docker-registry >/dev/null 2>&1 || true
echo "install-deps: ok"
