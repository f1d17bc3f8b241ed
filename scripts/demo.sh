#!/usr/bin/env bash
# The scenario Berth exists for, end to end on a fresh machine:
#   a local registry, a Python base image made here, berthd, the example web image built
#   from its Dockerfile, three identical containers serving over published ports,
#   scaled to five and back to two, stopped, restarted and removed, and proof that the
#   base image was pulled once and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
REG_PORT=${REG_PORT:-5555}
REG=127.0.0.1:$REG_PORT
DEMO=${DEMO_ROOT:-/var/lib/berth-demo}
SOCK=/run/berth-demo/berth.sock
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "installing what Berth needs (Debian packages) and building it"
bash scripts/install-deps.sh
PROFILE=${BERTH_PROFILE:-release}   # BERTH_PROFILE=debug reuses a debug build
if [ "$PROFILE" = release ]; then cargo build --release --bins -q; else cargo build --bins -q; fi
BIN=$PWD/target/$PROFILE

say "starting a local registry on $REG"
mkdir -p "$DEMO/registry"
cat > "$DEMO/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $DEMO/registry}, delete: {enabled: true}}
http: {addr: $REG}
YML
if ! curl -fsS "http://$REG/v2/" >/dev/null 2>&1; then
  docker-registry serve "$DEMO/registry.yml" >"$DEMO/registry.log" 2>&1 &
  echo $! > "$DEMO/registry.pid"
  for _ in $(seq 50); do curl -fsS "http://$REG/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
fi

say "making the Python base image (debootstrap; cached after the first run) and pushing it to $REG"
bash scripts/make-python-base.sh "$REG"

say "starting berthd on $SOCK"
if [ -f "$DEMO/berthd.pid" ] && kill -0 "$(cat "$DEMO/berthd.pid")" 2>/dev/null; then
  kill "$(cat "$DEMO/berthd.pid")"; sleep 0.5
fi
mkdir -p "$(dirname "$SOCK")"
BERTH_SHIM=$BIN/berth-shim "$BIN/berthd" -H "unix://$SOCK" --data-root "$DEMO/data" --exec-root /run/berth-demo/exec \
  --bridge berth-demo0 --bip 172.30.0.0/24 --nft-table berth_demo >"$DEMO/berthd.log" 2>&1 &
echo $! > "$DEMO/berthd.pid"
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
export DOCKER_HOST=unix://$SOCK
docker version --format 'docker CLI {{.Client.Version}} talks to {{.Server.Platform.Name}} {{.Server.Version}} (API {{.Server.APIVersion}})'

cleanup_replicas() { docker ps -aq --filter label=demo=python-web | xargs -r docker rm -f >/dev/null; }
cleanup_replicas

say "building examples/python-web with docker build (FROM $REG/berth/python:3.11)"
DOCKER_BUILDKIT=0 docker build -q --build-arg BASE=$REG/berth/python:3.11 -t python-web examples/python-web
docker images python-web

start_replica() {
  docker run -d --name "web-$1" --label demo=python-web -e GREETING="hello" -p 8000 python-web >/dev/null
}
port_of() { docker port "web-$1" 8000/tcp | head -1 | sed 's/.*://'; }
show_all() {
  for name in $(docker ps --filter label=demo=python-web --format '{{.Names}}' | sort); do
    local port; port=$(docker port "$name" 8000/tcp | head -1 | sed 's/.*://')
    for _ in $(seq 50); do curl -fsS "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.1; done
    printf '  %-8s 127.0.0.1:%-5s -> %s\n' "$name" "$port" "$(curl -fsS "http://127.0.0.1:$port/")"
  done
}

say "starting 3 identical containers, each with a published port"
for i in 1 2 3; do start_replica $i; done
docker ps --filter label=demo=python-web --format 'table {{.Names}}\t{{.Status}}\t{{.Ports}}'
show_all

say "scaling to 5"
for i in 4 5; do start_replica $i; done
show_all

say "scaling back to 2"
for i in 3 4 5; do docker rm -f "web-$i" >/dev/null; done
show_all

say "stopping, restarting and removing them"
docker stop web-1 web-2 >/dev/null
docker ps -a --filter label=demo=python-web --format '  {{.Names}}: {{.Status}}'
docker start web-1 web-2 >/dev/null
show_all
cleanup_replicas
echo "  removed; running replicas left: $(docker ps -q --filter label=demo=python-web | wc -l)"

say "proof the base image was pulled once and its layers reused"
docker events --since 0 --until "$(date +%s)" --filter type=image --filter event=pull --format '  pulled {{.Actor.ID}}' || true
echo "  images stored:"; docker images --format '  {{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}'

say "done: berthd keeps running (DOCKER_HOST=$DOCKER_HOST); stop it with: kill \$(cat $DEMO/berthd.pid)"
