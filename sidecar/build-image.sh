#!/usr/bin/env bash
# Build the sidecar runtime base image (hailo-runtime) and the thin model images that
# extend it (models/*/Dockerfile), per platform, offline from a wheelhouse prepared on
# this host. No network inside any build: pip installs with --no-index --require-hashes.
#
#   sidecar/build-image.sh                          # linux/amd64 and linux/arm64 (emulated)
#   PLATFORMS=linux/amd64 sidecar/build-image.sh    # one platform
#
# Tags, for each platform <arch> (amd64, arm64):
#   hailo-runtime:<version>-<arch>  hailo-runtime:latest-<arch>   <model>:<model version>-<arch>
# and the host's own platform also gets the plain tags hailo-runtime:<version>,
# hailo-runtime:latest and <model>:<model version>, so `docker run hailo-runtime:0.1.0`
# runs natively. A local engine keeps one image per tag: one tag naming both platforms
# (a manifest list) exists only in a registry; the sidecar_image role pushes that.
# <version> is hailo_sidecar.__version__; <model version> is MODEL_VERSION in the model's
# Dockerfile.
#
# Steps go to stderr, with each image's digest (its image ID, the sha256 of its config:
# a local image has no registry digest until it is pushed); the last line on stdout is JSON:
#   {"version": ..., "revision": ..., "images": [{"image", "platform", "tags", "id",
#    "size_bytes", "changed", "seconds"}, ...]}
# Idempotent: wheelhouses are keyed by the pins and reused; docker's layer cache makes an
# unchanged rebuild a no-op ("changed": false: same image id).
#
# Environment (all optional):
#   DOCKER       docker client (default /usr/bin/docker: Debian's, see ../shared/LAB.md)
#   PLATFORMS    platforms, space- or comma-separated (default "linux/amd64 linux/arm64")
#   BASE_IMAGE   base image; {arch} is replaced by amd64/arm64 (default
#                hailo-lab/runtime-base:{arch}, the lab's Debian 12 + python3 + python3-venv)
#   IMAGE        runtime image repository (default hailo-runtime)
#   MODELS       model images to build, names of models/<name>/ ("" for none; default: all)
#   SOURCE       org.opencontainers.image.source label (default: git remote origin, if any)
#   WHEEL_CACHE  wheelhouse root, outside the repo (default /var/cache/hailo-pipeline/wheels)
#   HAILORT_VERSION  put HailoRT of this version into the runtime image, e.g. 4.23.0
#                (default "": none; the image serves the stub and onnx backends only)
#   HAILORT_DIR  with HAILORT_VERSION: a directory with one subdirectory per platform
#                (amd64/, arm64/), each holding one libhailort .deb and one hailort-*.whl
#                (pyhailort, cp311) of that version, as Hailo or the Raspberry Pi archive
#                ship them; checked against their sha256 by whoever put them there
#   NO_CACHE=1   build without docker's layer cache
#   PYTHON       python with pip, to download wheels (default: the repo's .venv, else python3)
set -euo pipefail
# `tar ... | build ...`: build runs in this shell and sets its results here.
shopt -s lastpipe

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
DOCKER=${DOCKER:-/usr/bin/docker}
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64}
default_base='hailo-lab/runtime-base:{arch}'
BASE_IMAGE=${BASE_IMAGE:-$default_base}
IMAGE=${IMAGE:-hailo-runtime}
WHEEL_CACHE=${WHEEL_CACHE:-/var/cache/hailo-pipeline/wheels}
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  [ -x "$repo/.venv/bin/python" ] && PYTHON="$repo/.venv/bin/python"
fi
PY_VERSION=3.11
HAILORT_VERSION=${HAILORT_VERSION:-}
# The runtime closure the image installs: with HailoRT, the one with numpy<2.
closure=requirements-image.txt
[ -z "$HAILORT_VERSION" ] || closure=requirements-image-hailort.txt
REQUIREMENTS=("$closure" build-requirements-image.txt)
CONTEXT_FILES=(Dockerfile .dockerignore pyproject.toml README.md requirements-image.txt
  requirements-image-hailort.txt build-requirements-image.txt src)

step() { printf '[build-image] %s\n' "$*" >&2; }
die() { printf '[build-image] error: %s\n' "$*" >&2; exit 1; }

wheel_platforms() {
  case $1 in
    amd64) echo manylinux2014_x86_64 manylinux_2_17_x86_64 manylinux_2_27_x86_64 manylinux_2_28_x86_64 ;;
    arm64) echo manylinux2014_aarch64 manylinux_2_17_aarch64 manylinux_2_27_aarch64 manylinux_2_28_aarch64 ;;
  esac
}

# --- inputs ------------------------------------------------------------------------------
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$here/src/hailo_sidecar/__init__.py")
[[ $version =~ ^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$ ]] \
  || die "hailo_sidecar.__version__ is '$version', not a semantic version (MAJOR.MINOR.PATCH)"
revision=unknown
if git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
  revision=$(git -C "$repo" rev-parse --short=7 HEAD)
  [ -z "$(git -C "$repo" status --porcelain -- sidecar models)" ] || revision="$revision-dirty"
  SOURCE=${SOURCE:-$(git -C "$repo" remote get-url origin 2>/dev/null || true)}
fi
SOURCE=${SOURCE:-https://github.com/hailo-pipeline/hailo-pipeline}
if [ "${MODELS-all}" = all ]; then
  MODELS=$(cd "$repo/models" 2>/dev/null && for d in */; do [ -f "$d/Dockerfile" ] && echo "${d%/}"; done | xargs)
fi
native=$(case $(uname -m) in x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) uname -m ;; esac)

archs=()
for p in ${PLATFORMS//,/ }; do
  case $p in
    linux/amd64 | linux/arm64 | linux/arm64/v8) archs+=("$(cut -d/ -f2 <<<"$p")") ;;
    *) die "platform '$p' is not supported: linux/amd64 or linux/arm64" ;;
  esac
done
[ ${#archs[@]} -gt 0 ] || die "PLATFORMS is empty"

if [ -n "$HAILORT_VERSION" ]; then
  [[ $HAILORT_VERSION =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "HAILORT_VERSION '$HAILORT_VERSION' is not MAJOR.MINOR.REVISION (e.g. 4.23.0)"
  need="for each platform, HAILORT_DIR/<arch>/ with one libhailort .deb and one hailort-$HAILORT_VERSION-*.whl (HailoRT $HAILORT_VERSION for that platform: Hailo's Developer Zone, or the Raspberry Pi archive's hailort package for arm64)"
  [ -n "${HAILORT_DIR:-}" ] || die "HAILORT_VERSION=$HAILORT_VERSION needs HAILORT_DIR: $need"
  for arch in "${archs[@]}"; do
    n_deb=$(find "$HAILORT_DIR/$arch" -maxdepth 1 -name '*.deb' 2>/dev/null | grep -c . || true)
    n_whl=$(find "$HAILORT_DIR/$arch" -maxdepth 1 -name "hailort-$HAILORT_VERSION-*.whl" 2>/dev/null | grep -c . || true)
    [ "$n_deb" = 1 ] && [ "$n_whl" = 1 ] \
      || die "HAILORT_DIR/$arch ($HAILORT_DIR/$arch) holds $n_deb .deb and $n_whl hailort-$HAILORT_VERSION-*.whl; needed: $need"
  done
fi

"$DOCKER" info >/dev/null 2>&1 || die "no Docker engine answers to $DOCKER (start dockerd: make lab)"
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "$PYTHON has no pip (set PYTHON=...)"
for arch in "${archs[@]}"; do
  base=${BASE_IMAGE//\{arch\}/$arch}
  got=$("$DOCKER" image inspect -f '{{.Os}}/{{.Architecture}}' "$base" 2>/dev/null) \
    || die "base image $base (linux/$arch) is not in the engine (the lab builds it: make lab; or set BASE_IMAGE)"
  [ "$got" = "linux/$arch" ] || die "base image $base is $got, not linux/$arch (set BASE_IMAGE, with {arch} for the platform)"
done

results=()
record() { # image platform id changed seconds tags...
  local image=$1 platform=$2 id=$3 changed=$4 seconds=$5 size tags
  shift 5
  size=$("$DOCKER" image inspect -f '{{.Size}}' "$id")
  tags=$(printf '"%s",' "$@")
  results+=("{\"image\": \"$image\", \"platform\": \"$platform\", \"tags\": [${tags%,}], \"id\": \"$id\", \"size_bytes\": $size, \"changed\": $changed, \"seconds\": $seconds}")
  step "$image ($platform): digest $id, $((size / 1000000)) MB, $seconds s, changed=$changed; tags: $*"
}

# build TAG-LIST... -- DOCKER-BUILD-ARGS... : build from a tar context on stdin; sets
# built_id, built_changed, built_seconds.
build() {
  local tags=() args=() t
  while [ "$1" != -- ]; do tags+=("$1"); shift; done
  shift
  args=("$@")
  local before start
  before=$("$DOCKER" image inspect -f '{{.Id}}' "${tags[0]}" 2>/dev/null || true)
  start=$SECONDS
  local tag_args=()
  for t in "${tags[@]}"; do tag_args+=(-t "$t"); done
  DOCKER_BUILDKIT=1 "$DOCKER" build --progress=plain ${NO_CACHE:+--no-cache} "${args[@]}" "${tag_args[@]}" - >&2
  built_id=$("$DOCKER" image inspect -f '{{.Id}}' "${tags[0]}")
  built_seconds=$((SECONDS - start))
  built_changed=false
  [ "$before" = "$built_id" ] || built_changed=true
}

labels=(--build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "SOURCE=$SOURCE")

for arch in "${archs[@]}"; do
  platform=linux/$arch
  base=${BASE_IMAGE//\{arch\}/$arch}

  # 1. Wheelhouse for this platform, keyed by the pins, the Python version and the tags.
  read -r -a tags <<<"$(wheel_platforms "$arch")"
  key=$(cat "${REQUIREMENTS[@]/#/$here/}" <(printf '%s\n' "cp${PY_VERSION/./}" "${tags[@]}") | sha256sum | cut -c1-16)
  name="sidecar-$arch-$key"
  wheelhouse="$WHEEL_CACHE/$name"
  if [ -f "$wheelhouse/.complete" ]; then
    step "wheelhouse up to date: $wheelhouse"
  else
    step "preparing wheelhouse $wheelhouse (pip download, cp${PY_VERSION/./} ${tags[*]}, --require-hashes)"
    mkdir -p "$WHEEL_CACHE"
    tmp=$(mktemp -d "$WHEEL_CACHE/.$name.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
      --require-hashes "${tags[@]/#/--platform=}" --python-version "$PY_VERSION" --implementation cp \
      "${REQUIREMENTS[@]/#/--requirement=$here/}" --dest "$tmp" >&2
    touch "$tmp/.complete"
    rm -rf "$wheelhouse"
    mv "$tmp" "$wheelhouse"
    trap - EXIT
  fi
  # HailoRT enters the image only from HAILORT_DIR, at the version asked for.
  if find "$wheelhouse" -iname 'hailo*' | grep -q .; then
    die "wheelhouse $wheelhouse holds Hailo packages; HailoRT comes only from HAILORT_DIR (HAILORT_VERSION)"
  fi
  step "wheelhouse: $(find "$wheelhouse" -name '*.whl' | wc -l) wheels, $(du -sh "$wheelhouse" | cut -f1)"

  # 2. The runtime base. The context is streamed as a tar: the package, the requirement
  #    files, the wheelhouse (as wheels/) and HailoRT's files (as hailort/, empty without
  #    HAILORT_VERSION); nothing else from the repo or the host.
  hailort_stage=$(mktemp -d)
  mkdir -p "$hailort_stage/hailort/$arch"
  [ -z "$HAILORT_VERSION" ] || cp -- "$HAILORT_DIR/$arch"/*.deb "$HAILORT_DIR/$arch/hailort-$HAILORT_VERSION"-*.whl "$hailort_stage/hailort/$arch/"
  runtime_tags=("$IMAGE:$version-$arch" "$IMAGE:latest-$arch")
  [ "$arch" != "$native" ] || runtime_tags+=("$IMAGE:$version" "$IMAGE:latest")
  step "building ${runtime_tags[0]} for $platform from $base"
  tar -c -f - --owner=0 --group=0 --numeric-owner --sort=name \
      --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' \
      --transform "s,^$name,wheels," \
      -C "$here" "${CONTEXT_FILES[@]}" -C "$WHEEL_CACHE" "$name" -C "$hailort_stage" hailort \
    | build "${runtime_tags[@]}" -- --platform "$platform" --build-arg "BASE_IMAGE=$base" \
        --build-arg "HAILORT_VERSION=$HAILORT_VERSION" "${labels[@]}"
  rm -rf "$hailort_stage"
  record "$IMAGE" "$platform" "$built_id" "$built_changed" "$built_seconds" "${runtime_tags[@]}"

  # 3. The model images, FROM this platform's runtime (pinned to the version).
  for model in $MODELS; do
    dir="$repo/models/$model"
    [ -f "$dir/Dockerfile" ] || die "models/$model/Dockerfile not found (MODELS=$MODELS)"
    model_version=$(sed -n 's/^[[:space:]]*\(ENV[[:space:]]\+\)\{0,1\}MODEL_VERSION=\([^[:space:]\\]*\).*/\2/p' "$dir/Dockerfile" | head -n1)
    [[ $model_version =~ ^[0-9]+\.[0-9]+\.[0-9]+ ]] || die "models/$model/Dockerfile: MODEL_VERSION '$model_version' is not a semantic version"
    model_tags=("$model:$model_version-$arch")
    [ "$arch" != "$native" ] || model_tags+=("$model:$model_version")
    step "building ${model_tags[0]} for $platform FROM $IMAGE:$version-$arch"
    tar -c -f - --owner=0 --group=0 --numeric-owner --sort=name --exclude=__pycache__ -C "$dir" . \
      | build "${model_tags[@]}" -- --platform "$platform" \
          --build-arg "RUNTIME_IMAGE=$IMAGE:$version-$arch" --build-arg "REVISION=$revision" --build-arg "SOURCE=$SOURCE"
    record "$model" "$platform" "$built_id" "$built_changed" "$built_seconds" "${model_tags[@]}"
  done
done

joined=$(printf '%s, ' "${results[@]}")
printf '{"version": "%s", "revision": "%s", "images": [%s]}\n' "$version" "$revision" "${joined%, }"
