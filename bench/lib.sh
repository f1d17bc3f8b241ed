# Shared setup for the side-by-side benchmarks: a registry with a busybox image, a berthd
# and a dockerd on their own sockets and data roots. Source it; call bench_setup.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Each run gets its own directory, sockets, bridge and registry port, so two benchmarks
# started at once do not stop each other's daemons.
TAG=$$
B=${BENCH_DIR:-/tmp/berth-bench-$TAG}
BERTH_SOCK=$B/berth.sock
DOCKER_SOCK=$B/docker.sock
REG_PORT=${REG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
REG=127.0.0.1:$REG_PORT
IMG=$REG/busybox:bench

bench_cleanup() {
  for H in "unix://$BERTH_SOCK" "unix://$DOCKER_SOCK"; do
    ids=$(docker -H "$H" ps -aq 2>/dev/null || true)
    [ -n "$ids" ] && docker -H "$H" rm -f $ids >/dev/null 2>&1 || true
    # user networks (compose makes one) have bridges that outlive a killed daemon
    docker -H "$H" network prune -f >/dev/null 2>&1 || true
  done
  for f in "$B"/*.pid; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  sleep 1
  nft delete table ip "berth_bench_$TAG" 2>/dev/null || true
  ip link del "bb$TAG" 2>/dev/null || true
  # Leave nothing behind: unmount what the daemons left under the run's directory, remove it.
  grep -o " $B[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$B" "/run/berth-bench-$TAG" "/run/docker-bench-$TAG" 2>/dev/null || true
}
trap bench_cleanup EXIT

bench_setup() {
  command -v dockerd >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
  bash "$ROOT/scripts/install-deps.sh" >/dev/null
  (cd "$ROOT" && cargo build --release --bins -q)
  rm -rf "$B"; mkdir -p "$B"
  printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s/reg}}\nhttp: {addr: %s}\n' "$B" "$REG" > "$B/reg.yml"
  docker-registry serve "$B/reg.yml" >/dev/null 2>&1 & echo $! > "$B/reg.pid"
  for _ in $(seq 50); do curl -fs "http://$REG/v2/" >/dev/null && break; sleep 0.1; done
  bash "$ROOT/tests/fixtures/make-image.sh" "$IMG"
  BERTH_SHIM=$ROOT/target/release/berth-shim "$ROOT/target/release/berthd" -H "unix://$BERTH_SOCK" \
    --data-root "$B/berth-data" --exec-root "/run/berth-bench-$TAG" --bridge "bb$TAG" \
    --bip "10.199.$((TAG % 200)).0/24" --nft-table "berth_bench_$TAG" >"$B/berthd.log" 2>&1 & echo $! > "$B/berthd.pid"
  dockerd -H "unix://$DOCKER_SOCK" --data-root "$B/docker-data" --exec-root "/run/docker-bench-$TAG" \
    --pidfile "$B/dockerd.pidfile" --bridge none --iptables=false --insecure-registry "$REG" \
    >"$B/dockerd.log" 2>&1 & echo $! > "$B/dockerd.pid"
  for s in "$BERTH_SOCK" "$DOCKER_SOCK"; do
    for _ in $(seq 300); do docker -H "unix://$s" version >/dev/null 2>&1 && break; sleep 0.1; done
  done
  docker -H "unix://$BERTH_SOCK" pull -q "$IMG" >/dev/null
  docker -H "unix://$DOCKER_SOCK" pull -q "$IMG" >/dev/null
}

# median of numbers on stdin
median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# time_ms CMD...: wall time of one run in milliseconds
time_ms() {
  local s e
  s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N)
  echo $(( (e - s) / 1000000 ))
}

# compare LABEL N CMD-TEMPLATE: runs the command N times against each engine alternately
# (the template uses $H for the -H argument) and prints both medians and the ratio.
compare() {
  local label=$1 n=$2; shift 2
  local bt=() dt=()
  for _ in $(seq "$n"); do
    bt+=("$(H="unix://$BERTH_SOCK" time_ms bash -c "$*")")
    dt+=("$(H="unix://$DOCKER_SOCK" time_ms bash -c "$*")")
  done
  local bm dm
  bm=$(printf '%s\n' "${bt[@]}" | median); dm=$(printf '%s\n' "${dt[@]}" | median)
  printf '%-45s berth %8.1f ms   docker %8.1f ms   ratio %.2f\n' "$label" "$bm" "$dm" "$(echo "$bm / $dm" | bc -l)"
}
