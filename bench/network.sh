#!/usr/bin/env bash
# Networking side by side (issue 5): requests per second through a published port to a
# busybox httpd in a container (wrk from the host), and container-to-container throughput
# on a user network (busybox nc piping zeros), berthd vs dockerd.
source "$(dirname "$0")/lib.sh"
bench_setup
DUR=${DUR:-5}
port_b=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
port_d=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
rps() { wrk -t2 -c32 -d"${DUR}s" "http://127.0.0.1:$1/index.html" 2>/dev/null | awk '/Requests\/sec/ {print $2}'; }
gbit() { # $1 = -H socket; a client on the same user network sends 2 GiB to a server
  local H=$1
  docker -H "$H" network create benchnet >/dev/null
  docker -H "$H" run -d --name sink --network benchnet "$IMG" sh -c 'nc -l -p 5001 > /dev/null' >/dev/null
  sleep 0.5
  local s e
  s=$(date +%s%N)
  docker -H "$H" run --rm --network benchnet "$IMG" sh -c 'dd if=/dev/zero bs=1M count=2048 2>/dev/null | nc sink 5001' >/dev/null 2>&1
  e=$(date +%s%N)
  docker -H "$H" rm -f sink >/dev/null; docker -H "$H" network rm benchnet >/dev/null
  echo "scale=2; 2048*8/1024 / (($e - $s)/1000000000)" | bc -l
}
# dockerd here runs with --iptables=false, so its published ports go through docker-proxy.
docker -H "unix://$BERTH_SOCK" run -d --name web -p "127.0.0.1:$port_b:80" "$IMG" httpd -f -p 80 -h /var/www >/dev/null
docker -H "unix://$DOCKER_SOCK" network create webnet >/dev/null
docker -H "unix://$DOCKER_SOCK" run -d --name web --network webnet -p "127.0.0.1:$port_d:80" "$IMG" httpd -f -p 80 -h /var/www >/dev/null
sleep 1
rb=$(rps "$port_b"); rd=$(rps "$port_d")
printf 'published port, wrk -c32 %ss:   berth %8s req/s   docker %8s req/s   ratio %.2f\n' "$DUR" "$rb" "$rd" "$(echo "$rb / $rd" | bc -l)"
gb=$(gbit "unix://$BERTH_SOCK"); gd=$(gbit "unix://$DOCKER_SOCK")
printf 'container to container (2 GiB nc): berth %6s Gbit/s   docker %6s Gbit/s   ratio %.2f\n' "$gb" "$gd" "$(echo "$gb / $gd" | bc -l)"
