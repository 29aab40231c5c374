#!/usr/bin/env bash
# Build the compiler image (linux/amd64) offline from a wheelhouse prepared on the host.
#
#   compiler/build-image.sh            # prepare the wheelhouse if needed, build, report
#
# Steps go to stderr; the last line on stdout is JSON:
#   {"image": ..., "id": "sha256:...", "changed": true|false, "size_bytes": N, "wheelhouse": ...}
# Idempotent: the wheelhouse is keyed by the requirement pins and reused; docker's
# layer cache makes an unchanged rebuild a no-op ("changed": false: same image id).
#
# Environment (all optional):
#   DOCKER       docker client            (default /usr/bin/docker: Debian's, see LAB.md)
#   BASE_IMAGE   runtime base image       (default hailo-lab/runtime-base:amd64)
#   IMAGE        tag to build             (default hailo-pipeline/compiler:<package version>)
#   WHEEL_CACHE  wheelhouse root, outside the repo (default /var/cache/hailo-pipeline/wheels)
#   NO_CACHE=1   build without docker's layer cache
#   PYTHON       python with pip, to download wheels (default: the repo's .venv, else python3)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DOCKER=${DOCKER:-/usr/bin/docker}
BASE_IMAGE=${BASE_IMAGE:-hailo-lab/runtime-base:amd64}
WHEEL_CACHE=${WHEEL_CACHE:-/var/cache/hailo-pipeline/wheels}
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  [ -x "$here/../.venv/bin/python" ] && PYTHON="$here/../.venv/bin/python"
fi
"$PYTHON" -m pip --version >/dev/null 2>&1 || { echo "[build-image] error: $PYTHON has no pip (set PYTHON=...)" >&2; exit 1; }
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$here/pyproject.toml")
IMAGE=${IMAGE:-hailo-pipeline/compiler:$version}
PY_VERSION=3.11
PLATFORMS=(manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64)

step() { printf '[build-image] %s\n' "$*" >&2; }
die() { printf '[build-image] error: %s\n' "$*" >&2; exit 1; }

[ "$(uname -m)" = x86_64 ] || die "the compiler image is x86_64 only; this machine is $(uname -m)"
"$DOCKER" info >/dev/null 2>&1 || die "no Docker engine answers to $DOCKER (start dockerd: make lab)"
"$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1 \
  || die "base image $BASE_IMAGE not found (the lab builds it: make lab / lab/bootstrap.sh)"

# 1. Wheelhouse, keyed by the pins, the Python version and the platform tags.
key=$(cat "$here/requirements.txt" "$here/build-requirements.txt" \
      <(printf '%s\n' "cp${PY_VERSION/./}" "${PLATFORMS[@]}") | sha256sum | cut -c1-16)
wheelhouse="$WHEEL_CACHE/compiler-$key"
if [ -f "$wheelhouse/.complete" ]; then
  step "wheelhouse up to date: $wheelhouse"
else
  step "preparing wheelhouse $wheelhouse (pip download, manylinux x86_64, cp${PY_VERSION/./})"
  mkdir -p "$WHEEL_CACHE"
  tmp=$(mktemp -d "$WHEEL_CACHE/.compiler-$key.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  platform_args=()
  for p in "${PLATFORMS[@]}"; do platform_args+=(--platform "$p"); done
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
    "${platform_args[@]}" --python-version "$PY_VERSION" --implementation cp \
    -r "$here/requirements.txt" -r "$here/build-requirements.txt" -d "$tmp" >&2
  touch "$tmp/.complete"
  rm -rf "$wheelhouse"
  mv "$tmp" "$wheelhouse"
  trap - EXIT
fi
# The DFC and HailoRT must never enter the image, even by a stray wheel.
if find "$wheelhouse" -iname 'hailo*' | grep -q .; then
  die "wheelhouse $wheelhouse contains Hailo packages; they are licensed and must not be in the image"
fi
step "wheelhouse: $(find "$wheelhouse" -name '*.whl' | wc -l) wheels, $(du -sh "$wheelhouse" | cut -f1)"

# 2. Build. The context is streamed as a tar: the package, the requirement files and
#    the wheelhouse (as wheels/); nothing else from the repo or the host goes in.
before=$("$DOCKER" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
step "building $IMAGE from $BASE_IMAGE"
start=$(date +%s)
tar -c -f - --owner=0 --group=0 --numeric-owner --sort=name \
    --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' \
    --transform "s,^compiler-$key,wheels," \
    -C "$here" Dockerfile pyproject.toml README.md requirements.txt build-requirements.txt src \
    -C "$WHEEL_CACHE" "compiler-$key" \
  | "$DOCKER" build ${NO_CACHE:+--no-cache} --build-arg "BASE_IMAGE=$BASE_IMAGE" \
      --label "org.hailo-pipeline.wheelhouse=$key" -t "$IMAGE" - >&2
after=$("$DOCKER" image inspect --format '{{.Id}}' "$IMAGE")
size=$("$DOCKER" image inspect --format '{{.Size}}' "$IMAGE")
changed=false
[ "$before" = "$after" ] || changed=true
step "built $IMAGE ($after, $((size / 1000000)) MB) in $(( $(date +%s) - start )) s; changed=$changed"
printf '{"image": "%s", "id": "%s", "changed": %s, "size_bytes": %s, "wheelhouse": "%s"}\n' \
  "$IMAGE" "$after" "$changed" "$size" "$wheelhouse"
