#!/usr/bin/env bash
# Bring this machine up as the hailo-pipeline lab host, idempotently:
#   1. Debian packages (docker.io, qemu-user-static, binfmt-support, debootstrap, ...)
#   2. a Docker engine that answers (a running one is left alone)
#   3. arm64 user emulation through binfmt_misc, with the F flag
#   4. the lab's base images, built from the Debian archive with debootstrap
#      (no registry can be pulled from), cached and keyed by their inputs
#   5. a smoke test: an arm64 container runs
# Safe to run again: every step checks before it acts.
#
# Environment (all optional):
#   LAB_CACHE           where rootfs tarballs and image tarballs are kept
#                       (default /var/cache/hailo-pipeline; outside the repo on purpose)
#   LAB_DEBIAN_MIRROR   Debian archive for debootstrap (default http://deb.debian.org/debian)
#   LAB_LOG_DIR         dockerd and debootstrap logs (default /var/log/hailo-lab)
#   LAB_IMAGES          space-separated subset of lab/images/* to build (default: all)
set -euo pipefail

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LAB_CACHE=${LAB_CACHE:-/var/cache/hailo-pipeline}
LAB_DEBIAN_MIRROR=${LAB_DEBIAN_MIRROR:-http://deb.debian.org/debian}
LAB_LOG_DIR=${LAB_LOG_DIR:-/var/log/hailo-lab}
# Debian's client: the docker on PATH may be a newer standalone client without buildx.
DOCKER=${DOCKER:-/usr/bin/docker}
# Bump when the way a rootfs is made changes, so every cached image is rebuilt.
RECIPE_VERSION=2
HOST_PACKAGES=(docker.io qemu-user-static binfmt-support debootstrap python3-venv git make curl ca-certificates)

step_no=0
step() { step_no=$((step_no + 1)); printf '\n[lab %d] %s\n' "$step_no" "$*"; }
info() { printf '  - %s\n' "$*"; }
die() {
	printf '\nlab bootstrap FAILED: %s\n' "$1" >&2
	shift
	for line in "$@"; do printf '  %s\n' "$line" >&2; done
	exit 1
}

check_host() {
	step "checking the host"
	[ "$(id -u)" -eq 0 ] || die "this needs root (it installs packages and starts dockerd)." \
		"Run it as root, or: sudo make lab"
	command -v apt-get >/dev/null || die "apt-get not found: the lab host must be Debian or Ubuntu."
	[ "$(uname -m)" = x86_64 ] || die "the lab host must be x86_64 (it stands in for GPUSrv); this is $(uname -m)."
	info "root on $(. /etc/os-release && echo "$PRETTY_NAME"), $(uname -m)"
	mount_binfmt_misc
}

archive_unreachable() {
	die "cannot reach the Debian archive ($1)." \
		"The lab installs its packages and builds its base images from it (no registry is used)." \
		"Fix the network or proxy, or point apt (/etc/apt/sources.list) and debootstrap (LAB_DEBIAN_MIRROR) at a mirror you can reach." "$2"
}

archive_checked=
check_mirror() {
	[ -z "$archive_checked" ] || return 0
	info "checking the Debian archive at $LAB_DEBIAN_MIRROR"
	curl -fsS --max-time 20 -o /dev/null "$LAB_DEBIAN_MIRROR/dists/bookworm/Release" 2>"$LAB_LOG_DIR/mirror.log" ||
		archive_unreachable "$LAB_DEBIAN_MIRROR" "$(cat "$LAB_LOG_DIR/mirror.log")"
	archive_checked=1
}

install_packages() {
	step "Debian packages: ${HOST_PACKAGES[*]}"
	local missing=() pkg
	for pkg in "${HOST_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
	done
	if [ ${#missing[@]} -eq 0 ]; then
		info "all installed"
		return
	fi
	info "installing ${missing[*]}"
	# apt-get update exits 0 when a source cannot be fetched; its warnings tell.
	if ! apt-get update -qq >"$LAB_LOG_DIR/apt.log" 2>&1 || grep -qE '^(W|E): (Failed to fetch|Some index files)' "$LAB_LOG_DIR/apt.log"; then
		archive_unreachable "apt-get update failed; log: $LAB_LOG_DIR/apt.log" "$(grep -E '^(W|E):' "$LAB_LOG_DIR/apt.log" | head -n 3)"
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
		>>"$LAB_LOG_DIR/apt.log" 2>&1 ||
		die "apt-get install failed (log: $LAB_LOG_DIR/apt.log)." "$(tail -n 5 "$LAB_LOG_DIR/apt.log")"
}

start_dockerd() {
	step "Docker engine"
	if "$DOCKER" info >/dev/null 2>&1; then
		info "dockerd already answers ($("$DOCKER" version -f '{{.Server.Version}}')): left alone"
		return
	fi
	if [ -d /run/systemd/system ]; then
		info "starting docker.service"
		systemctl start docker.service || die "systemctl start docker failed." "See: journalctl -u docker.service"
	else
		# No systemd as PID 1 (a CI container, say): run dockerd in the background.
		info "starting dockerd in the background (log: $LAB_LOG_DIR/dockerd.log)"
		# setsid: its own session, so stopping the job that started it does not stop it.
		setsid nohup dockerd >>"$LAB_LOG_DIR/dockerd.log" 2>&1 &
		echo $! >"$LAB_LOG_DIR/dockerd.pid"
	fi
	local i
	for i in $(seq 60); do
		"$DOCKER" info >/dev/null 2>&1 && break
		sleep 1
	done
	"$DOCKER" info >/dev/null 2>&1 || die "dockerd did not answer within 60 s." \
		"Last lines of $LAB_LOG_DIR/dockerd.log:" "$(tail -n 8 "$LAB_LOG_DIR/dockerd.log" 2>/dev/null)"
	info "dockerd $("$DOCKER" version -f '{{.Server.Version}}') answers"
}

BINFMT=/proc/sys/fs/binfmt_misc
mount_binfmt_misc() {
	if [ -e "$BINFMT/register" ]; then
		info "binfmt_misc is mounted"
		return
	fi
	info "mounting binfmt_misc"
	mount -t binfmt_misc binfmt_misc "$BINFMT" 2>"$LAB_LOG_DIR/binfmt.log" ||
		die "cannot mount binfmt_misc on $BINFMT: $(cat "$LAB_LOG_DIR/binfmt.log")" \
			"arm64 emulation needs the kernel's binfmt_misc, and the right to mount it." \
			"On the machine (or VM) that runs this, try: modprobe binfmt_misc" \
			"In a container, run this script on its host instead."
}

enable_binfmt() {
	step "arm64 emulation (qemu-aarch64 binfmt handler)"
	local fs=$BINFMT
	update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
	[ -r "$fs/qemu-aarch64" ] && grep -qx enabled "$fs/qemu-aarch64" ||
		die "the qemu-aarch64 binfmt handler is not enabled." \
			"Reinstall it: apt-get install --reinstall qemu-user-static binfmt-support"
	grep -q '^flags: .*F' "$fs/qemu-aarch64" ||
		die "the qemu-aarch64 handler lacks the F flag, so arm64 containers cannot find the emulator." \
			"Debian's qemu-user-static registers with F; reinstall it and run this again."
	info "qemu-aarch64 enabled, $(grep '^flags:' "$fs/qemu-aarch64")"
}

# Keys: everything that decides a rootfs (debootstrap is slow: a Dockerfile-only
# change must not redo it), and everything that decides the image built from it.
rootfs_key() {
	local name=$1 arch=$2
	{
		echo "recipe=$RECIPE_VERSION arch=$arch"
		cat "$LAB_DIR/images/$name/image.conf"
	} | sha256sum | cut -c1-16
}
image_key() {
	{
		rootfs_key "$1" "$2"
		cat "$LAB_DIR/images/$1/Dockerfile"
	} | sha256sum | cut -c1-16
}

image_current() {
	local ref=$1 key=$2
	[ "$("$DOCKER" image inspect -f '{{index .Config.Labels "org.hailo-pipeline.lab.key"}}' "$ref" 2>/dev/null)" = "$key" ]
}

# debootstrap a rootfs tarball into the cache (atomically: a failed run leaves no tarball).
build_rootfs() {
	local name=$1 arch=$2 tarball=$3 log=$4
	local SUITE INCLUDE
	# shellcheck source=/dev/null
	. "$LAB_DIR/images/$name/image.conf"
	local work
	work=$(mktemp -d "$LAB_CACHE/tmp/$name-$arch.XXXXXX")
	local rc=0
	{
		debootstrap --variant=minbase --arch="$arch" --include="$INCLUDE" \
			"$SUITE" "$work/rootfs" "$LAB_DEBIAN_MIRROR" &&
			rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"* &&
			# Emptied lists must not look fresh, or `apt: cache_valid_time` skips the update.
			touch -d @0 "$work/rootfs/var/lib/apt/lists" &&
			tar -C "$work/rootfs" --numeric-owner -cf "$work/rootfs.tar" . &&
			mv "$work/rootfs.tar" "$tarball"
	} >"$log" 2>&1 || rc=$?
	rm -rf "$work"
	return $rc
}

build_images() {
	step "base images (cache: $LAB_CACHE)"
	mkdir -p "$LAB_CACHE/rootfs" "$LAB_CACHE/images" "$LAB_CACHE/tmp"
	local names=${LAB_IMAGES:-$(ls "$LAB_DIR/images")}
	local name arch key ref tarball pending=() pids=()
	for name in $names; do
		[ -f "$LAB_DIR/images/$name/image.conf" ] || die "unknown lab image '$name'." "Known: $(ls "$LAB_DIR/images" | xargs)"
		for arch in $(. "$LAB_DIR/images/$name/image.conf" && echo "$ARCH"); do
			key=$(image_key "$name" "$arch")
			ref="hailo-lab/$name:$arch"
			if image_current "$ref" "$key"; then
				info "$ref is current (key $key)"
				continue
			fi
			tarball="$LAB_CACHE/rootfs/$name-$arch-$(rootfs_key "$name" "$arch").tar"
			pending+=("$name $arch $key $tarball")
			if [ -f "$tarball" ]; then
				info "$ref: rootfs cached ($tarball)"
				continue
			fi
			check_mirror
			info "$ref: debootstrap $(. "$LAB_DIR/images/$name/image.conf" && echo "$SUITE") $arch (log: $LAB_LOG_DIR/debootstrap-$name-$arch.log)"
			build_rootfs "$name" "$arch" "$tarball" "$LAB_LOG_DIR/debootstrap-$name-$arch.log" &
			pids+=("$!:$name-$arch")
		done
	done
	local started=$SECONDS failed=() p
	for p in "${pids[@]}"; do
		wait "${p%%:*}" || failed+=("${p#*:}")
	done
	[ ${#pids[@]} -eq 0 ] || info "debootstrap finished in $((SECONDS - started)) s"
	for p in "${failed[@]}"; do
		die "debootstrap of $p failed (log: $LAB_LOG_DIR/debootstrap-$p.log)." \
			"$(tail -n 5 "$LAB_LOG_DIR/debootstrap-$p.log")"
	done
	local entry ctx
	for entry in "${pending[@]}"; do
		read -r name arch key tarball <<<"$entry"
		ref="hailo-lab/$name:$arch"
		info "$ref: docker build"
		ctx=$(mktemp -d "$LAB_CACHE/tmp/ctx.XXXXXX")
		ln "$tarball" "$ctx/rootfs.tar"
		cp "$LAB_DIR/images/$name/Dockerfile" "$ctx/"
		"$DOCKER" build -q --platform "linux/$arch" --label "org.hailo-pipeline.lab.key=$key" \
			-t "$ref" "$ctx" >"$LAB_LOG_DIR/build-$name-$arch.log" 2>&1 ||
			{ rm -rf "$ctx"; die "docker build of $ref failed (log: $LAB_LOG_DIR/build-$name-$arch.log)." \
				"$(tail -n 5 "$LAB_LOG_DIR/build-$name-$arch.log")"; }
		rm -rf "$ctx"
		# Drop rootfs tarballs of older keys: they can never be used again.
		find "$LAB_CACHE/rootfs" -name "$name-$arch-*.tar" ! -path "$tarball" -delete
	done
	export_images
}

# Image tarballs for engines inside lab containers (Docker-in-Docker cannot pull either).
export_images() {
	local name arch ref key file
	for name in ${LAB_IMAGES:-$(ls "$LAB_DIR/images")}; do
		[ "$(. "$LAB_DIR/images/$name/image.conf" && echo "${EXPORT:-}")" = yes ] || continue
		for arch in $(. "$LAB_DIR/images/$name/image.conf" && echo "$ARCH"); do
			ref="hailo-lab/$name:$arch"
			key=$(image_key "$name" "$arch")
			file="$LAB_CACHE/images/$name-$arch.tar"
			[ -f "$file" ] && [ "$(cat "$file.key" 2>/dev/null)" = "$key" ] && continue
			info "saving $ref to $file"
			"$DOCKER" save -o "$file.tmp" "$ref" || die "docker save of $ref failed."
			mv "$file.tmp" "$file"
			echo "$key" >"$file.key"
		done
	done
}

smoke_test() {
	step "smoke test: an arm64 container"
	local out
	out=$("$DOCKER" run --rm --network none --platform linux/arm64 hailo-lab/pi:arm64 uname -m 2>&1) ||
		die "an arm64 container did not run: $out"
	[ "$out" = aarch64 ] || die "an arm64 container reported '$out', not aarch64."
	info "hailo-lab/pi:arm64 says $out"
}

mkdir -p "$LAB_LOG_DIR" 2>/dev/null || true
t0=$SECONDS
check_host
install_packages
start_dockerd
enable_binfmt
build_images
[[ " ${LAB_IMAGES:-pi} " == *" pi "* ]] && smoke_test
printf '\n[lab] ready in %d s. Images:\n' "$((SECONDS - t0))"
"$DOCKER" image ls 'hailo-lab/*' --format '  {{.Repository}}:{{.Tag}}  {{.Size}}'
