#!/usr/bin/env bash
# Container start/stop speed and memory, berthd vs dockerd side by side (issue 2 and 4):
#   (a) docker run --rm --network none IMG true, median of N
#   (b) 50 containers started detached, then removed
#   (c) memory of the engine idle and with 50 running containers
source "$(dirname "$0")/lib.sh"
N=${N:-20}
bench_setup
export IMG
# Memory, from /proc/PID/smaps_rollup. RSS counts every resident page the process maps,
# shared ones too (libc, the binary's code shared by all shims); PSS divides each shared
# page among the processes mapping it, so PSS summed over N shims is their real cost.
kb() { awk -v k="$2:" '$1 == k {print $2; exit}' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }
sum_kb() { local f=$1 t=0; shift; for p in "$@"; do t=$((t + $(kb "$p" "$f"))); done; echo $t; }
mb() { echo "scale=1; $1 / 1024" | bc; }
berthd_pid=$(cat "$B/berthd.pid"); dockerd_pid=$(cat "$B/dockerd.pid")
containerd_pids=$(pgrep -af "containerd.*docker-bench-$TAG" | grep -v containerd-shim | awk '{print $1}' | tr '\n' ' ' || true)
report_daemons() {
  echo "$1: berthd RSS $(mb "$(kb "$berthd_pid" Rss)") MB PSS $(mb "$(kb "$berthd_pid" Pss)") MB;" \
    "dockerd RSS $(mb "$(kb "$dockerd_pid" Rss)") MB PSS $(mb "$(kb "$dockerd_pid" Pss)") MB" \
    "+ containerd RSS $(mb "$(sum_kb Rss $containerd_pids)") MB PSS $(mb "$(sum_kb Pss $containerd_pids)") MB"
}
report_shims() { # LABEL PIDS...
  local label=$1; shift
  local n=$#; [ "$n" -gt 0 ] || { echo "$label: no shims found"; return; }
  echo "$label: $n shims; one: RSS $(kb "$1" Rss) kB PSS $(kb "$1" Pss) kB;" \
    "all: PSS sum $(mb "$(sum_kb Pss "$@")") MB = $(( $(sum_kb Pss "$@") / n )) kB per shim"
}
sleep 2
report_daemons "idle at start (image pulled)"
echo "== run --rm --network none $IMG true (median of $N, alternating)"
compare "run --rm --network none true" "$N" 'docker -H $H run --rm --network none $IMG true'
echo "== run -d + rm -f (median of $N)"
compare "run -d sleep + rm -f" "$N" 'id=$(docker -H $H run -d --network none $IMG sleep 100); docker -H $H rm -f $id'
echo "== 50 containers started detached, then removed"
compare "50 x run -d, then rm -f all" 1 'for i in $(seq 50); do docker -H $H run -d --network none $IMG sleep 1000 >/dev/null; done; docker -H $H rm -f $(docker -H $H ps -aq) >/dev/null'

echo "== memory (RSS and PSS from /proc/PID/smaps_rollup)"
sleep 12 # let both daemons settle (berthd trims its heap every 10 s)
report_daemons "idle (after the runs above)"
for H in "unix://$BERTH_SOCK" "unix://$DOCKER_SOCK"; do
  for i in $(seq 50); do docker -H "$H" run -d --network none "$IMG" sleep 1000 >/dev/null; done
done
sleep 12
# berth's shim is berth-monitor once its container runs (berth-shim only creates it)
shims=$(pgrep -f "berth-(shim|monitor).*/run/berth-bench-$TAG" | tr '\n' ' ')
dshims=$(pgrep -f "containerd-shim.*docker-bench-$TAG" | tr '\n' ' ' || true)
[ -n "$dshims" ] || dshims=$(pgrep -f containerd-shim | tr '\n' ' ')
report_daemons "50 running"
report_shims "berth shims" $shims
report_shims "containerd shims" $dshims
for H in "unix://$BERTH_SOCK" "unix://$DOCKER_SOCK"; do docker -H "$H" rm -f $(docker -H "$H" ps -aq) >/dev/null; done
bench_cleanup
