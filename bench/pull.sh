#!/usr/bin/env bash
# Cold pull speed, berthd vs dockerd side by side, from the same local registry (issue 3):
#   (a) ~100 MB image of 5 layers of random data (gzip)
#   (b) 20-layer image of many small files (gzip)
# Each run removes the image from both engines first (untimed), then times `docker pull`,
# alternating engines; prints medians and the berth/docker ratio.
source "$(dirname "$0")/lib.sh"
N=${N:-5}
bench_setup

make_image() { # NAME:TAG KIND LAYERS
  python3 - "$REG" "$1" "$2" "$3" <<'EOF'
import sys, json, hashlib, io, os, tarfile, gzip, urllib.request
reg, ref, kind, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
name, tag = ref.split(':')
def up(data):
    d = 'sha256:' + hashlib.sha256(data).hexdigest()
    r = urllib.request.urlopen(urllib.request.Request(f'http://{reg}/v2/{name}/blobs/uploads/', method='POST', data=b''))
    loc = r.headers['Location']; loc = loc if loc.startswith('http') else f'http://{reg}{loc}'
    loc += ('&' if '?' in loc else '?') + 'digest=' + d
    urllib.request.urlopen(urllib.request.Request(loc, method='PUT', data=data, headers={'Content-Type': 'application/octet-stream'}))
    return d
layers, diff_ids = [], []
for i in range(n):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w') as t:
        files = [(f'l{i}/random.bin', os.urandom(20 * 1024 * 1024))] if kind == 'big' else \
                [(f'l{i}/d{j // 100}/f{j}', os.urandom(512 + (j * 37) % 3584)) for j in range(1000)]
        for p, data in files:
            ti = tarfile.TarInfo(p); ti.size = len(data); ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    diff_ids.append('sha256:' + hashlib.sha256(raw).hexdigest())
    z = gzip.compress(raw, compresslevel=1)
    layers.append({'mediaType': 'application/vnd.oci.image.layer.v1.tar+gzip', 'digest': up(z), 'size': len(z)})
cfg = json.dumps({'architecture': 'amd64', 'os': 'linux', 'config': {}, 'rootfs': {'type': 'layers', 'diff_ids': diff_ids}}).encode()
m = json.dumps({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json',
    'config': {'mediaType': 'application/vnd.oci.image.config.v1+json', 'digest': up(cfg), 'size': len(cfg)},
    'layers': layers}).encode()
urllib.request.urlopen(urllib.request.Request(f'http://{reg}/v2/{name}/manifests/{tag}', method='PUT', data=m,
    headers={'Content-Type': 'application/vnd.oci.image.manifest.v1+json'}))
EOF
}

echo "== making images in $REG"
make_image pullbench/big:1 big 5
make_image pullbench/small:1 small 20

cold_pull() { # LABEL IMAGE
  local label=$1 img=$2 bt=() dt=() H
  for _ in $(seq "$N"); do
    for H in "unix://$BERTH_SOCK" "unix://$DOCKER_SOCK"; do
      docker -H "$H" rmi -f "$img" >/dev/null 2>&1 || true
      docker -H "$H" image prune -af >/dev/null 2>&1 || true
    done
    bt+=("$(time_ms docker -H "unix://$BERTH_SOCK" pull -q "$img")")
    dt+=("$(time_ms docker -H "unix://$DOCKER_SOCK" pull -q "$img")")
  done
  local bm dm
  bm=$(printf '%s\n' "${bt[@]}" | median); dm=$(printf '%s\n' "${dt[@]}" | median)
  printf '%-45s berth %8.1f ms   docker %8.1f ms   ratio %.2f\n' "$label" "$bm" "$dm" "$(echo "$bm / $dm" | bc -l)"
  echo "   berth runs: ${bt[*]}   docker runs: ${dt[*]}"
}

echo "== cold pull (median of $N, alternating)"
cold_pull "5 x 20 MB random layers (~100 MB)" "$REG/pullbench/big:1"
cold_pull "20 layers x 1000 small files" "$REG/pullbench/small:1"
for H in "unix://$BERTH_SOCK" "unix://$DOCKER_SOCK"; do
  docker -H "$H" pull -q "$REG/pullbench/big:1" >/dev/null
  docker -H "$H" image inspect -f "{{.Size}}" "$REG/pullbench/big:1" | sed "s|^|size on $H: |"
done
bench_cleanup
