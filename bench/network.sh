#!/usr/bin/env bash
# Networking side by side (issue 5): requests per second through a published port to a
# busybox httpd in a container (wrk from the host), and container-to-container throughput
# on a user network (busybox nc piping 512 MiB of zeros, timed inside the client),
# berthd vs dockerd, each run ${RUNS:-3} times alternately (medians).
source "$(dirname "$0")/lib.sh"
bench_setup
DUR=${DUR:-5}
port_b=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
port_d=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rps() { wrk -t2 -c32 -d"${DUR}s" "http://127.0.0.1:$1/index.html" 2>/dev/null | awk '/Requests\/sec/ {print $2}'; }
gbit() { # $1 = -H socket; a client on the same user network sends 512 MiB to a server.
  # Timed inside the client container by busybox `time`, from the pipeline's start to nc's
  # exit, so neither container start-up nor docker's own round trips count; the server is
  # known to listen before the client starts.
  local H=$1 out
  docker -H "$H" network create benchnet >/dev/null
  # The server's stdin must stay open: busybox nc quits on stdin EOF and would drop the
  # connection at once (a detached container's stdin is /dev/null).
  docker -H "$H" run -d --name sink --network benchnet "$IMG" sh -c 'sleep 100000 | nc -l -p 5001 > /dev/null' >/dev/null
  for _ in $(seq 100); do
    docker -H "$H" exec sink sh -c 'netstat -ltn | grep -q ":5001 "' 2>/dev/null && break
    sleep 0.1
  done
  out=$(docker -H "$H" run --rm --network benchnet "$IMG" \
    sh -c 'time sh -c "dd if=/dev/zero bs=1M count=512 2>/dev/null | nc sink 5001"' 2>&1)
  docker -H "$H" rm -f sink >/dev/null; docker -H "$H" network rm benchnet >/dev/null
  # busybox time: "real<TAB>0m 1.23s"; 512 MiB = 4.295 Gbit. Busybox nc copies in small
  # chunks, so this measures the same CPU-bound copy on both engines' veth + bridge path.
  echo "$out" | awk '$1 == "real" { m = $2; sub(/m/, "", m); s = $3; sub(/s/, "", s); if (m * 60 + s > 0) print 4.295 / (m * 60 + s) }'
}
# dockerd here runs with --iptables=false, so its published ports go through docker-proxy.
docker -H "unix://$BERTH_SOCK" run -d --name web -p "127.0.0.1:$port_b:80" "$IMG" httpd -f -p 80 -h /var/www >/dev/null
docker -H "unix://$DOCKER_SOCK" network create webnet >/dev/null
docker -H "unix://$DOCKER_SOCK" run -d --name web --network webnet -p "127.0.0.1:$port_d:80" "$IMG" httpd -f -p 80 -h /var/www >/dev/null
sleep 1
rb=$(rps "$port_b"); rd=$(rps "$port_d")
printf 'published port, wrk -c32 %ss:   berth %8s req/s   docker %8s req/s   ratio %.2f\n' "$DUR" "$rb" "$rd" "$(echo "$rb / $rd" | bc -l)"
gbs=(); gds=()
for _ in $(seq "${RUNS:-3}"); do
  gbs+=("$(gbit "unix://$BERTH_SOCK")"); gds+=("$(gbit "unix://$DOCKER_SOCK")")
done
echo "berth runs: ${gbs[*]}   docker runs: ${gds[*]}"
gb=$(printf '%s\n' "${gbs[@]}" | median); gd=$(printf '%s\n' "${gds[@]}" | median)
printf 'container to container (512 MiB nc, median): berth %6s Gbit/s   docker %6s Gbit/s   ratio %.2f\n' "$gb" "$gd" "$(echo "$gb / $gd" | bc -l)"
