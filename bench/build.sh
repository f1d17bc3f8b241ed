#!/usr/bin/env bash
# docker build speed, berthd vs dockerd (classic builder, DOCKER_BUILDKIT=0) side by side
# (issue 6). A sample multi-stage project with several RUN and COPY steps is built
#   (a) cold: --no-cache (the base image is present on both engines),
#   (b) cached: nothing changed, every step reused,
#   (c) one copied file changed: the steps from that COPY on run again,
# alternating the engines, median of N runs each; ratio = berth / docker.
source "$(dirname "$0")/lib.sh"
N=${N:-5}
bench_setup
export DOCKER_BUILDKIT=0 IMG
CTX=$B/build-ctx
export CTX
rm -rf "$CTX"; mkdir -p "$CTX/src" "$CTX/assets" "$CTX/config"
for i in $(seq 40); do
  head -c 20000 /dev/urandom | base64 > "$CTX/src/unit$i.c"
done
for i in $(seq 8); do head -c 1000000 /dev/urandom > "$CTX/assets/blob$i.bin"; done
echo "port=8080" > "$CTX/config/app.conf"
cat > "$CTX/Dockerfile" <<DOCKERFILE
FROM $IMG AS build
WORKDIR /src
COPY src/ ./
RUN mkdir -p /out && cat *.c | sha256sum > /out/app.sum && cat *.c > /out/app.bin
RUN for i in \$(seq 50); do echo "line \$i" >> /out/generated.txt; done
COPY assets/ /assets/
RUN tar -cf /out/assets.tar /assets

FROM $IMG AS docs
RUN echo "docs stage" > /readme.txt

FROM $IMG
RUN mkdir -p /opt/app /etc/app
COPY --from=build /out/ /opt/app/
COPY --from=docs /readme.txt /opt/app/
COPY config/ /etc/app/
RUN ls -l /opt/app > /opt/app/manifest && wc -c /opt/app/app.bin
ENV APP_MODE=production
EXPOSE 8080
CMD ["cat", "/opt/app/manifest"]
DOCKERFILE

# Warm both engines once so neither pays a first-build cost in the cold runs.
for H in "unix://$BERTH_SOCK" "unix://$DOCKER_SOCK"; do
  docker -H "$H" build -q -t benchapp "$CTX" >/dev/null
done
# The outputs must agree.
for H in "unix://$BERTH_SOCK" "unix://$DOCKER_SOCK"; do
  docker -H "$H" run --rm --network none benchapp | awk '{print $1, $5, $NF}' | md5sum
done | uniq | wc -l | grep -qx 1 || echo "WARNING: the two images' manifests differ" >&2

echo "== docker build of a multi-stage project ($(du -sh "$CTX" | cut -f1) context), median of $N"
compare "cold (--no-cache)" "$N" 'docker -H $H build -q --no-cache -t benchapp $CTX'
compare "cached (no change)" "$N" 'docker -H $H build -q -t benchapp $CTX'
compare "one copied file changed" "$N" 'date +%s%N > $CTX/config/stamp; docker -H $H build -q -t benchapp $CTX'
bench_cleanup
# Whatever did not stop on SIGTERM within 10 s is killed, and dockerd's data-root mount goes.
for f in "$B"/*.pid; do
  p=$(cat "$f" 2>/dev/null) || continue
  for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
done
umount "$B/docker-data" 2>/dev/null || true
