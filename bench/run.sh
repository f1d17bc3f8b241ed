#!/usr/bin/env bash
# Container start/stop speed and memory, berthd vs dockerd side by side (issue 2 and 4):
#   (a) docker run --rm --network none IMG true, median of N
#   (b) 50 containers started detached, then removed
#   (c) memory of the engine idle and with 50 running containers
source "$(dirname "$0")/lib.sh"
N=${N:-20}
bench_setup
export IMG
echo "== run --rm --network none $IMG true (median of $N, alternating)"
compare "run --rm --network none true" "$N" 'docker -H $H run --rm --network none $IMG true'
echo "== run -d + rm -f (median of $N)"
compare "run -d sleep + rm -f" "$N" 'id=$(docker -H $H run -d --network none $IMG sleep 100); docker -H $H rm -f $id'
echo "== 50 containers started detached, then removed"
compare "50 x run -d, then rm -f all" 1 'for i in $(seq 50); do docker -H $H run -d --network none $IMG sleep 1000 >/dev/null; done; docker -H $H rm -f $(docker -H $H ps -aq) >/dev/null'

rss_kb() { ps -o rss= -p "$1" 2>/dev/null | awk '{s+=$1} END {print s+0}'; }
sum_rss() { local t=0; for p in "$@"; do t=$((t + $(rss_kb "$p"))); done; echo $t; }
berthd_pid=$(cat "$B/berthd.pid"); dockerd_pid=$(cat "$B/dockerd.pid")
containerd_pids=$(pgrep -f "containerd.*docker-bench|/run/docker-bench/containerd" | tr '\n' ' ' || true)
echo "== memory (RSS)"
echo "idle: berthd $(rss_kb "$berthd_pid") kB; dockerd $(rss_kb "$dockerd_pid") kB + containerd $(sum_rss $containerd_pids) kB"
for H in "unix://$BERTH_SOCK" "unix://$DOCKER_SOCK"; do
  for i in $(seq 50); do docker -H "$H" run -d --network none "$IMG" sleep 1000 >/dev/null; done
done
shims=$(pgrep -f berth-shim | tr '\n' ' ')
dshims=$(pgrep -f containerd-shim | tr '\n' ' ')
ns=$(echo $shims | wc -w); nd=$(echo $dshims | wc -w)
echo "50 running: berthd $(rss_kb "$berthd_pid") kB + $ns shims $(sum_rss $shims) kB (per shim $(( $(sum_rss $shims) / (ns>0?ns:1) )) kB)"
echo "50 running: dockerd $(rss_kb "$dockerd_pid") kB + containerd $(sum_rss $containerd_pids) kB + $nd shims $(sum_rss $dshims) kB (per shim $(( $(sum_rss $dshims) / (nd>0?nd:1) )) kB)"
for H in "unix://$BERTH_SOCK" "unix://$DOCKER_SOCK"; do docker -H "$H" rm -f $(docker -H "$H" ps -aq) >/dev/null; done
bench_cleanup
