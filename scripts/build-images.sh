#!/usr/bin/env bash
# Build (and push) the project images, then record their digests for `fathom pipeline compile`.
#
#   FATHOM_IMAGE_REGISTRY=registry.example.com/fathom scripts/build-images.sh [--push] [cpu tools trainer]
#
# Uses docker, podman or buildah (first found; override with BUILDER=...). Tags are <registry>/fathom-<name>:<version>.
# With --push, the pushed digest of each image is written to images/digests.json
# ({"fathom-cpu": "<registry>/fathom-cpu@sha256:..."}); `fathom pipeline compile` then pins the component images
# to those digests (components/base.py). Without --push the local image id is recorded under "local".
set -euo pipefail
cd "$(dirname "$0")/.."

REGISTRY=${FATHOM_IMAGE_REGISTRY:-ghcr.io/fathom-pipelines}
REGISTRY=${REGISTRY%/}
VERSION=$(python3 -c 'import re; print(re.search(r"^version\s*=\s*\"([^\"]+)\"", open("pyproject.toml").read(), re.M).group(1))')
DIGESTS=${FATHOM_IMAGE_DIGESTS:-images/digests.json}
PUSH=0
NAMES=()
for arg in "$@"; do
  case "$arg" in
    --push) PUSH=1 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) NAMES+=("$arg") ;;
  esac
done
[ ${#NAMES[@]} -eq 0 ] && NAMES=(cpu tools trainer)

BUILDER=${BUILDER:-}
if [ -z "$BUILDER" ]; then
  for b in docker podman buildah; do
    if command -v "$b" >/dev/null 2>&1; then BUILDER=$b; break; fi
  done
fi
[ -n "$BUILDER" ] || { echo "error: none of docker, podman, buildah is installed" >&2; exit 2; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for name in "${NAMES[@]}"; do
  [ -f "images/$name/Dockerfile" ] || { echo "error: images/$name/Dockerfile does not exist" >&2; exit 2; }
  ref="$REGISTRY/fathom-$name:$VERSION"
  echo "== $BUILDER build $ref" >&2
  case "$BUILDER" in
    docker) docker build -f "images/$name/Dockerfile" -t "$ref" . ;;
    podman) podman build -f "images/$name/Dockerfile" -t "$ref" . ;;
    buildah) buildah bud -f "images/$name/Dockerfile" -t "$ref" . ;;
  esac
  digest=""
  if [ "$PUSH" = 1 ]; then
    case "$BUILDER" in
      docker) docker push "$ref" >&2
              digest=$(docker inspect --format '{{index .RepoDigests 0}}' "$ref" | sed 's/.*@//') ;;
      podman) podman push --digestfile "$tmp/$name" "$ref" >&2; digest=$(cat "$tmp/$name") ;;
      buildah) buildah push --digestfile "$tmp/$name" "$ref" >&2; digest=$(cat "$tmp/$name") ;;
    esac
    echo "fathom-$name $REGISTRY/fathom-$name@$digest" >> "$tmp/pinned"
  else
    echo "note: not pushed; $ref is not pinned (run with --push to record its registry digest)" >&2
  fi
done

if [ -f "$tmp/pinned" ]; then
  python3 - "$DIGESTS" "$tmp/pinned" <<'PY'
import json, os, sys
path, pinned = sys.argv[1], sys.argv[2]
data = json.load(open(path)) if os.path.exists(path) else {}
for line in open(pinned):
    name, ref = line.split()
    if "@sha256:" not in ref:
        sys.exit(f"error: no digest for {name}: {ref}")
    data[name] = ref
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(data, f, indent=1, sort_keys=True)
    f.write("\n")
os.replace(tmp, path)
print(f"wrote {path}")
PY
fi
