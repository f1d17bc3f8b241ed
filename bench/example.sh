#!/usr/bin/env bash
# The example scenario timed on both engines (issue 7): build the Python web image cold
# and cached, start 3 replicas with docker-compose, scale to 5, side by side with dockerd.
source "$(dirname "$0")/lib.sh"
bench_setup
bash "$ROOT/scripts/make-python-base.sh" "$REG" >/dev/null
BASE=$REG/berth/python:3.11
proj=$B/example; mkdir -p "$proj"; cp "$ROOT/examples/python-web/app.py" "$ROOT/examples/python-web/Dockerfile" "$proj/"
cat > "$proj/compose.yaml" <<YML
version: "3.7"
services:
  web:
    image: bench-python-web
    ports: ["8000"]
YML
ms() { local s e; s=$(date +%s%N); "$@" >/dev/null 2>&1 || echo "FAILED: $*" >&2; e=$(date +%s%N); echo $(( (e - s) / 1000000 )); }
row() { printf '%-28s berth %7s ms   docker %7s ms   ratio %.2f\n' "$1" "$2" "$3" "$(echo "$2 / $3" | bc -l)"; }
for engine in berth docker; do
  if [ $engine = berth ]; then H=unix://$BERTH_SOCK; else H=unix://$DOCKER_SOCK; fi
  export DOCKER_HOST=$H DOCKER_BUILDKIT=0
  docker pull -q "$BASE" >/dev/null
  eval "cold_$engine=\$(ms docker build --no-cache --build-arg BASE=$BASE -t bench-python-web $proj)"
  eval "cached_$engine=\$(ms docker build --build-arg BASE=$BASE -t bench-python-web $proj)"
  eval "up_$engine=\$(ms docker-compose -f $proj/compose.yaml -p bench up -d --scale web=3)"
  eval "scale_$engine=\$(ms docker-compose -f $proj/compose.yaml -p bench up -d --scale web=5)"
  docker-compose -f "$proj/compose.yaml" -p bench down >/dev/null 2>&1 || true
done
row "build cold" "$cold_berth" "$cold_docker"
row "build cached" "$cached_berth" "$cached_docker"
row "compose up, 3 replicas" "$up_berth" "$up_docker"
row "scale to 5" "$scale_berth" "$scale_docker"
