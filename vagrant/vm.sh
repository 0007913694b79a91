#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2054 # '$x' is for the guest or a hook; commas are QEMU's
# vm.sh - run tardis's end-to-end suite inside a Debian 13 (trixie) VM under QEMU, with
# cgroup v2, built from Debian packages alone (no image downloads: only a Debian mirror
# and the Go module proxy are used).
#
#   vagrant/vm.sh e2e [RUN [SKIP]]
#                               build what is missing, boot the VM, run the suite there
#                               (the test binary's -test.run RUN, default TestE2E, and
#                               -test.skip SKIP) and exit with its status; `make e2e` and
#                               `make e2e-vm-ci` run this
#   vagrant/vm.sh image         build (or find in the cache) the VM image only
#   vagrant/vm.sh exec CMD...   boot and run one shell command line as root in the VM
#   vagrant/vm.sh shell         boot into an interactive root shell on the serial console
#   vagrant/vm.sh deps          install the host packages only
#
# How it works:
#   - Host packages (installed with apt when missing): qemu-system-x86, mmdebstrap,
#     e2fsprogs (mkfs.ext4 -d fills an image from a folder without mounting it; debugfs
#     reads the results back). Building the image needs root (mmdebstrap's root mode);
#     booting it does not.
#   - The image: mmdebstrap makes a trixie root folder with the cloud kernel, runc, criu,
#     containerd, iptables, iproute2, busybox-static, kmod and a small init script
#     (/usr/local/sbin/tardis-vm-init, written below); mkfs.ext4 -d turns it into an ext4
#     image. The apt source is this machine's own Debian entry with the suite changed
#     (no mirror name is written anywhere), or $TARDIS_VM_SOURCES.
#     Cached in $TARDIS_VM_DIR/image-<key>, key = hash of this script's image part (package
#     list, init script, IMAGE_VERSION) and the sources entry. TARDIS_VM_REBUILD=1 builds
#     it again (to pick up newer trixie packages).
#   - Boot: QEMU loads the kernel directly (-kernel, no boot loader, no initrd: the cloud
#     kernel has NVMe and ext4 built in). The root image is the only NVMe disk (so always
#     /dev/nvme0n1), opened with snapshot=on: a run never changes the cached image.
#     PID 1 is the init script: it mounts /proc, /sys, cgroup2 at /sys/fs/cgroup
#     (cgroup_no_v1=all: cgroup v2 only), devtmpfs, devpts, /run, /tmp, brings up lo, runs
#     /payload/run.sh from a virtio disk (its module is loaded once the root is mounted),
#     prints "TARDIS-VM-EXIT <status>" on the console and powers off.
#   - The payload (rebuilt for every run): a static tardis, the compiled test binary of
#     ./cmd/tardis (go test -c), crictl (go install, cached), and testdata/e2e in a copy of
#     the tree's layout, so that the test finds ../../testdata/e2e from cmd/tardis. The
#     test gets TARDIS_E2E=1 and TARDIS_E2E_TARDIS (no Go in the VM).
#   - Results: the console streams the test output; the full log is written to the
#     payload disk and copied to $TARDIS_VM_DIR/last/e2e.log, the console to
#     $TARDIS_VM_DIR/last/console.log, and every script's logs, state files, manifests
#     and stdio files (no CRIU images) to $TARDIS_VM_DIR/last/work/script-<name>/.
#
# Environment:
#   TARDIS_VM_DIR          cache and run folder (default: bin/vm in the repo; git-ignored)
#   TARDIS_VM_ACCEL        tcg (default) or kvm, for machines with hardware virtualization
#                          (this project's machines have a PVM-backed /dev/kvm that cannot
#                          run Debian's kernels: README, "The suite in a VM")
#   TARDIS_VM_TCG_THREAD   single (default: all vCPUs on one host thread) or multi (one
#                          thread per vCPU: the suite runs ~30% faster, but the guest
#                          kernel once died of an int3 Oops while patching its own code;
#                          README, "The suite in a VM")
#   TARDIS_VM_CPU          QEMU -cpu model (default: max with tcg, host with kvm)
#   TARDIS_VM_SMP          vCPUs (default 2)
#   TARDIS_VM_MEM          memory in MiB (default 2048; the suite uses at most ~400)
#   TARDIS_VM_TIMEOUT      seconds for the whole VM run before it is killed (default 5400)
#   TARDIS_VM_TEST_TIMEOUT the test binary's -test.timeout (default 80m)
#   TARDIS_VM_SUITE        Debian suite of the image (default trixie)
#   TARDIS_VM_SOURCES      a deb822 .sources (or one-line .list) file for that suite,
#                          instead of deriving it from this machine's Debian entry
#   TARDIS_VM_REBUILD=1    build the image again even if a cached one matches
#   TARDIS_VM_RUNC         distro (default: trixie's runc 1.1.15) or a runc version (e.g.
#                          v1.3.7) built static here from the Go module proxy and copied
#                          over /usr/sbin/runc in the VM. With runc < 1.2 on cgroup v2
#                          tardis refuses restores (README, "Runtimes, versions,
#                          platforms"), and the scripts that restore skip
#   TARDIS_VM_EXTRA        a folder copied into the VM as /payload/extra (e.g. other
#                          runc builds to try with `vm.sh exec`)
#   TARDIS_CRICTL_VERSION  crictl for the k8s scripts (default v1.37.0, as install.sh)
#   GO                     the go command (default go)
set -euo pipefail

IMAGE_VERSION=1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VM_DIR=${TARDIS_VM_DIR:-$ROOT/bin/vm}
SUITE=${TARDIS_VM_SUITE:-trixie}
ACCEL=${TARDIS_VM_ACCEL:-tcg}
SMP=${TARDIS_VM_SMP:-2}
MEM=${TARDIS_VM_MEM:-2048}
VM_TIMEOUT=${TARDIS_VM_TIMEOUT:-5400}
TEST_TIMEOUT=${TARDIS_VM_TEST_TIMEOUT:-80m}
CRICTL_VERSION=${TARDIS_CRICTL_VERSION:-v1.37.0}
RUNC_VERSION=${TARDIS_VM_RUNC:-distro}
GO=${GO:-go}
# What the image holds (besides the essential set). Part of the cache key.
IMAGE_PACKAGES=(linux-image-cloud-amd64 runc criu containerd iptables iproute2 busybox-static
	util-linux mount procps psmisc kmod)
IMAGE_SIZE=4G

log() { printf 'tardis-vm: %s\n' "$*" >&2; }
die() {
	printf 'tardis-vm: ERROR: %s\n' "$*" >&2
	exit 1
}
usage() { sed -n '3,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

# ---------------------------------------------------------------------------
# the init script, PID 1 in the VM (part of the image and of its cache key)
# ---------------------------------------------------------------------------
read -r -d '' GUEST_INIT <<'EOF' || true
#!/bin/bash
# tardis-vm-init: PID 1 of the VM of tardis's vagrant/vm.sh. No systemd: mounts what runc,
# CRIU and containerd need, with cgroup v2 only, runs /payload/run.sh, reports its status.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin HOME=/root TERM=dumb LANG=C.UTF-8
mount -t proc -o nosuid,nodev,noexec proc /proc
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o nosuid,noexec,gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o nosuid,nodev tmpfs /dev/shm
mount -t mqueue -o nosuid,nodev,noexec mqueue /dev/mqueue
mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate cgroup2 /sys/fs/cgroup
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp
mount --make-rshared / # as systemd does
# Every controller for the children, as systemd does at the root.
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
	echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
done
hostname tardis-vm
ip link set lo up
modprobe -a overlay tun 2>/dev/null || true
echo "tardis-vm-init: up after $(cut -d' ' -f1 /proc/uptime) s, kernel $(uname -r), cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"

# The highest memory use seen, in MiB (MemTotal - MemAvailable), sampled every 2 s.
(
	peak=0
	while :; do
		used=$(awk '/^MemTotal:/ {t=$2} /^MemAvailable:/ {a=$2} END {print int((t-a)/1024)}' /proc/meminfo)
		((used > peak)) && peak=$used && echo "$peak" >/run/mem-peak
		sleep 2
	done
) &
sampler=$!

rc=0
mkdir -p /payload
modprobe virtio_blk
for _ in {1..50}; do [[ -b /dev/vda ]] && break; sleep 0.1; done
if mount -t ext4 /dev/vda /payload 2>/dev/null && [[ -x /payload/run.sh ]]; then
	/payload/run.sh </dev/null || rc=$?
	kill "$sampler" 2>/dev/null
	echo "tardis-vm-init: memory used at most: $(cat /run/mem-peak 2>/dev/null || echo '?') MiB of $(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo) MiB"
	echo "$rc" >/payload/out/status
	sync
	umount /payload || umount -l /payload
else
	echo "tardis-vm-init: no payload: root shell on the console (exit to power off)"
	setsid -c bash -l </dev/console >/dev/console 2>&1 || true
fi
echo "TARDIS-VM-EXIT $rc"
sync
busybox poweroff -f
EOF

# ---------------------------------------------------------------------------
# host packages
# ---------------------------------------------------------------------------
host_deps() {
	local missing=() p
	command -v qemu-system-x86_64 >/dev/null || missing+=(qemu-system-x86)
	command -v mkfs.ext4 >/dev/null && command -v debugfs >/dev/null || missing+=(e2fsprogs)
	if [[ ${1:-} == image ]]; then
		command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
	fi
	[[ ${#missing[@]} -eq 0 ]] && return
	[[ $(id -u) -eq 0 ]] || die "missing on this host: ${missing[*]} (install them, or run as root)"
	log "installing on the host: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	for p in "${missing[@]}"; do
		c=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
		if [[ -z $c || $c == "(none)" ]]; then
			apt-get -q update
			break
		fi
	done
	apt-get -q install -y --no-install-recommends "${missing[@]}"
}

# ---------------------------------------------------------------------------
# the image
# ---------------------------------------------------------------------------
# sources_entry FILE: a deb822 (or one-line) apt entry for $SUITE, made from this machine's
# own Debian archive entry with its suite changed; $TARDIS_VM_SOURCES wins.
sources_entry() {
	local out=$1 codename="" f
	if [[ -n ${TARDIS_VM_SOURCES:-} ]]; then
		cp "$TARDIS_VM_SOURCES" "$out"
		return
	fi
	# shellcheck disable=SC1091
	[[ -r /etc/os-release ]] && codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
	[[ -n $codename ]] || die "cannot tell this system's codename: set TARDIS_VM_SOURCES to a .sources file for Debian $SUITE"
	: >"$out"
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -r $f ]] || continue
		# the first enabled deb paragraph whose Suites holds the codename itself
		awk -v codename="$codename" -v suite="$SUITE" '
			BEGIN { RS = ""; FS = "\n" }
			!done {
				ok = 0; isdeb = 0; enabled = 1
				for (i = 1; i <= NF; i++) {
					if ($i ~ /^Types:/ && $i ~ /[ \t:]deb([ \t]|$)/) isdeb = 1
					if ($i ~ /^Enabled:[ \t]*no/) enabled = 0
					if ($i ~ /^Suites:/) { n = split(substr($i, 8), s, /[ \t]+/); for (j = 1; j <= n; j++) if (s[j] == codename) ok = 1 }
				}
				if (ok && isdeb && enabled) {
					for (i = 1; i <= NF; i++) {
						if ($i ~ /^#/) continue
						if ($i ~ /^Suites:/) print "Suites: " suite
						else if ($i ~ /^Types:/) print "Types: deb"
						else print $i
					}
					done = 1
				}
			}' "$f" >"$out"
		[[ -s $out ]] && return
	done
	if [[ -r /etc/apt/sources.list ]]; then
		awk -v codename="$codename" -v suite="$SUITE" '
			$1 == "deb" && !done {
				i = 2
				if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
				if ($(i+1) == codename) { $(i+1) = suite; print; done = 1 }
			}' /etc/apt/sources.list >"$out"
	fi
	[[ -s $out ]] || die "no Debian archive entry for '$codename' in /etc/apt: set TARDIS_VM_SOURCES to a .sources file for Debian $SUITE"
}

IMAGE=""
image_key() {
	local src=$1
	{
		echo "image-version $IMAGE_VERSION suite $SUITE size $IMAGE_SIZE"
		echo "packages ${IMAGE_PACKAGES[*]}"
		printf '%s\n' "$GUEST_INIT"
		grep -Ev '^#|^$' "$src"
	} | sha256sum | cut -c1-16
}

build_image() {
	mkdir -p "$VM_DIR"
	exec 9>"$VM_DIR/.lock" # one build or run at a time in this folder (held until exit)
	flock 9
	local src=$VM_DIR/sources.tmp.$$ key
	sources_entry "$src"
	# mmdebstrap tells the format by the file's name
	if grep -q '^Types:' "$src"; then mv "$src" "$src.sources" && src=$src.sources; else mv "$src" "$src.list" && src=$src.list; fi
	key=$(image_key "$src")
	IMAGE=$VM_DIR/image-$key
	if [[ -f $IMAGE/root.img && ${TARDIS_VM_REBUILD:-0} != 1 ]]; then
		rm -f "$src"
		log "image: $IMAGE (cached; $(head -n1 "$IMAGE/versions.txt"))"
		return
	fi
	host_deps image
	[[ $(id -u) -eq 0 ]] || die "building the VM image needs root (mmdebstrap's root mode)"
	local t0=$SECONDS stage=$VM_DIR/build.$$ kver
	rm -rf "$stage"
	mkdir -p "$stage"
	# shellcheck disable=SC2064
	trap "rm -rf '$stage' '$src'" EXIT
	log "building the Debian $SUITE image in $stage (apt source: $(awk '/^URIs:|^deb/ {print $2; exit}' "$src"), $SUITE)"
	printf '%s\n' "$GUEST_INIT" >"$stage/tardis-vm-init"
	local pkgs
	pkgs=$(
		IFS=,
		echo "${IMAGE_PACKAGES[*]}"
	)
	mmdebstrap --variant=essential --mode=root --format=directory \
		--aptopt='APT::Install-Recommends "false"' \
		--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
		--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
		--include="$pkgs" \
		--customize-hook="install -m 0755 '$stage/tardis-vm-init' \"\$1/usr/local/sbin/tardis-vm-init\"" \
		--customize-hook='echo tardis-vm >"$1/etc/hostname"' \
		--customize-hook='printf "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n" >"$1/etc/hosts"' \
		--customize-hook='rm -f "$1"/boot/initrd.img-*' \
		"$SUITE" "$stage/rootfs" "$src" >"$stage/mmdebstrap.log" 2>&1 ||
		die "mmdebstrap failed; its log: $(tail -n 20 "$stage/mmdebstrap.log")"
	kver=$(find "$stage/rootfs/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sed 's/^vmlinuz-//' | sort -V | tail -n1)
	[[ -n $kver ]] || die "no kernel in the image's /boot"
	cp "$stage/rootfs/boot/vmlinuz-$kver" "$stage/vmlinuz"
	{
		echo "Debian $SUITE, kernel $kver, built $(date -u +%Y-%m-%dT%H:%MZ)"
		chroot "$stage/rootfs" dpkg-query -W -f '${Package} ${Version}\n'
	} >"$stage/versions.txt"
	mkfs.ext4 -q -F -L tardis-root -d "$stage/rootfs" "$stage/root.img" "$IMAGE_SIZE" >/dev/null
	rm -rf "$stage/rootfs" "$stage/tardis-vm-init"
	rm -rf "$IMAGE"
	mv "$stage" "$IMAGE"
	rm -f "$src"
	trap - EXIT
	# older images (other keys) are of no use any more
	find "$VM_DIR" -maxdepth 1 -name 'image-*' ! -name "image-$key" -exec rm -rf {} +
	log "image: $IMAGE built in $((SECONDS - t0)) s ($(du -h --apparent-size "$IMAGE/root.img" | cut -f1) sparse, $(du -h "$IMAGE/root.img" | cut -f1) used)"
	grep -E '^(runc|criu|containerd|linux-image-[0-9]\S*) ' "$IMAGE/versions.txt" | sed 's/^/    /' >&2
}

# ---------------------------------------------------------------------------
# the payload: what this tree builds, and the command to run
# ---------------------------------------------------------------------------
build_crictl() {
	CRICTL=$VM_DIR/tools/crictl-$CRICTL_VERSION
	[[ -x $CRICTL ]] && return
	log "building crictl $CRICTL_VERSION (go install, static)"
	local gobin=$VM_DIR/tools/gobin.$$
	mkdir -p "$gobin"
	GOBIN=$gobin CGO_ENABLED=0 GOFLAGS="" "$GO" install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
	mv "$gobin/crictl" "$CRICTL"
	rm -rf "$gobin"
}

# build_runc: a static runc $RUNC_VERSION (cgo for its nsenter, the C library linked in),
# as the Makefile's gpu-carry builds it; RUNC is its path, or empty for the distro's.
build_runc() {
	RUNC=""
	[[ $RUNC_VERSION == distro ]] && return
	RUNC=$VM_DIR/tools/runc-$RUNC_VERSION
	[[ -x $RUNC ]] && return
	log "building runc $RUNC_VERSION (go install, static)"
	local gobin=$VM_DIR/tools/gobin.$$
	mkdir -p "$gobin"
	GOBIN=$gobin CGO_ENABLED=1 GOFLAGS="" "$GO" install -trimpath -tags 'netgo osusergo' \
		-ldflags '-s -w -extldflags -static' "github.com/opencontainers/runc@$RUNC_VERSION"
	mv "$gobin/runc" "$RUNC"
	rm -rf "$gobin"
}

# make_payload DIR RUN_SH_BODY
make_payload() {
	local dir=$1 body=$2
	rm -rf "$dir"
	mkdir -p "$dir/bin" "$dir/tools" "$dir/tree/cmd/tardis" "$dir/tree/testdata" "$dir/out"
	(cd "$ROOT" && CGO_ENABLED=0 "$GO" build -o "$dir/bin/tardis" ./cmd/tardis &&
		CGO_ENABLED=0 "$GO" test -c -o "$dir/bin/tardis.test" ./cmd/tardis)
	cp -r "$ROOT/testdata/e2e" "$dir/tree/testdata/e2e"
	cp "$CRICTL" "$dir/tools/crictl"
	[[ -n $RUNC ]] && cp "$RUNC" "$dir/tools/runc"
	if [[ -n ${TARDIS_VM_EXTRA:-} ]]; then cp -r "$TARDIS_VM_EXTRA" "$dir/extra"; fi
	{
		echo '#!/bin/bash'
		echo 'export PATH=/payload/tools:$PATH'
		echo '[[ -x /payload/tools/runc ]] && install -m 0755 /payload/tools/runc /usr/sbin/runc # the root is a snapshot'
		printf '%s\n' "$body"
	} >"$dir/run.sh"
	chmod 0755 "$dir/run.sh"
}

# ---------------------------------------------------------------------------
# the VM
# ---------------------------------------------------------------------------
qemu_cmd() {
	local payload_img=$1 accel_opts cpu
	case $ACCEL in
	tcg)
		accel_opts=(-accel "tcg,thread=${TARDIS_VM_TCG_THREAD:-single}")
		cpu=${TARDIS_VM_CPU:-max}
		;;
	kvm)
		[[ -r /dev/kvm && -w /dev/kvm ]] || die "TARDIS_VM_ACCEL=kvm, but /dev/kvm cannot be opened"
		accel_opts=(-accel kvm)
		cpu=${TARDIS_VM_CPU:-host}
		;;
	*) die "TARDIS_VM_ACCEL must be tcg or kvm, not $ACCEL" ;;
	esac
	QEMU=(qemu-system-x86_64 "${accel_opts[@]}" -machine q35 -cpu "$cpu" -smp "$SMP" -m "$MEM"
		-display none -monitor none -no-reboot -nic none
		-kernel "$IMAGE/vmlinuz"
		-append "console=ttyS0 root=/dev/nvme0n1 rootfstype=ext4 rw init=/usr/local/sbin/tardis-vm-init panic=-1 cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 quiet ${TARDIS_VM_APPEND:-}"
		-drive "if=none,id=root,format=raw,file=$IMAGE/root.img,snapshot=on"
		-device nvme,drive=root,serial=tardis-root
		-drive "if=virtio,format=raw,file=$payload_img")
}

# run_vm BODY: boots the VM with a payload whose run.sh is BODY; prints the console; sets
# VM_STATUS to run.sh's status (or 125 when the VM did not report one).
run_vm() {
	local body=$1 run=$VM_DIR/run.$$ t0 rc
	host_deps
	build_crictl
	build_runc
	make_payload "$run/payload" "$body"
	mkfs.ext4 -q -F -L tardis-payload -d "$run/payload" "$run/payload.img" \
		"$(($(du -sm "$run/payload" | cut -f1) + 512))M" >/dev/null
	qemu_cmd "$run/payload.img"
	rm -rf "$VM_DIR/last"
	mkdir -p "$VM_DIR/last"
	log "booting: ${QEMU[*]}"
	t0=$SECONDS
	# the console on stdout (\r dropped) and in last/console.log
	timeout --kill-after=20 "$VM_TIMEOUT" "${QEMU[@]}" -serial stdio </dev/null 2>&1 |
		tr -d '\r' | tee "$VM_DIR/last/console.log"
	rc=${PIPESTATUS[0]}
	log "VM ran $((SECONDS - t0)) s (qemu status $rc)"
	VM_STATUS=$(sed -n 's/^TARDIS-VM-EXIT \([0-9]*\)$/\1/p' "$VM_DIR/last/console.log" | tail -n1)
	if [[ -z $VM_STATUS ]]; then
		[[ $rc -eq 124 ]] && log "the VM was killed after TARDIS_VM_TIMEOUT=$VM_TIMEOUT s"
		log "the VM reported no status (see $VM_DIR/last/console.log)"
		VM_STATUS=125
	fi
	debugfs -R "rdump /out $run" "$run/payload.img" >/dev/null 2>&1 || true
	[[ -d $run/out ]] && mv "$run"/out/* "$VM_DIR/last/" 2>/dev/null
	rm -rf "$run"
}

# failed_tails LOG: the last 40 lines of each failed script's output in LOG (go test -v),
# printed last so that a CI log cut to its end still says why.
failed_tails() {
	local name
	sed -n 's/^ \{4\}--- FAIL: \([^ ]*\) .*/\1/p' "$1" | while read -r name; do
		echo "tardis-vm: the end of $name's output:"
		awk -v want="=== NAME  $name" '
			$0 == want { n = 0; on = 1; next }
			on && /^(=== |    --- )/ { on = 0 }
			on { buf[n++] = $0 }
			END { for (i = (n > 40 ? n - 40 : 0); i < n; i++) print buf[i] }' "$1"
	done
}

cmd=${1:-}
[[ $# -gt 0 ]] && shift
case $cmd in
deps)
	host_deps image
	;;
image)
	build_image
	;;
e2e)
	regex=${1:-TestE2E}
	skip=${2:-}
	build_image
	t0=$SECONDS
	run_vm "cd /payload/tree/cmd/tardis || exit 1
echo \"tardis-vm: runc \$(runc --version | head -n1 | cut -d' ' -f3), criu \$(criu --version | sed -n 's/^Version: //p'), containerd \$(containerd --version | cut -d' ' -f3), crictl $CRICTL_VERSION\"
criu check || exit 1
export TARDIS_E2E=1 TARDIS_E2E_TARDIS=/payload/bin/tardis TMPDIR=/var/tmp
/payload/bin/tardis.test -test.run '$regex' -test.skip '$skip' -test.v -test.count=1 -test.timeout $TEST_TIMEOUT -testwork 2>&1 | tee /payload/out/e2e.log
rc=\${PIPESTATUS[0]}
# the scripts' logs, state files, manifests and configs (no CRIU images), for the host
cd /var/tmp && find go-test-script* -type f \\( -name '*.log' -o -name REASON -o -name '*.json' -o -name '*.toml' -o -name '*.txt' -o -name '*.err' -o -name '*.out' \\) -size -8M -print0 2>/dev/null |
	tar --null -T - -cf - | tar -C /payload/out -xf - && mv /payload/out/go-test-script* /payload/out/work 2>/dev/null
exit \$rc"
	log "suite status $VM_STATUS after $((SECONDS - t0)) s; log: $VM_DIR/last/e2e.log"
	if [[ -s $VM_DIR/last/e2e.log ]]; then
		grep -E '^ {4}--- (PASS|FAIL|SKIP)' "$VM_DIR/last/e2e.log" | sed 's/^ *//' >&2 || true
		failed_tails "$VM_DIR/last/e2e.log" >&2
	fi
	exit "$VM_STATUS"
	;;
exec)
	[[ $# -gt 0 ]] || die "usage: vm.sh exec CMD..."
	build_image
	run_vm "$*"
	exit "$VM_STATUS"
	;;
shell)
	build_image
	host_deps
	run=$VM_DIR/run.$$
	mkdir -p "$run"
	mkfs.ext4 -q -F -L tardis-payload "$run/payload.img" 64M >/dev/null # no run.sh: a shell
	qemu_cmd "$run/payload.img"
	"${QEMU[@]}" -serial mon:stdio
	rm -rf "$run"
	;;
-h | --help | help)
	usage
	;;
*)
	usage >&2
	exit 2
	;;
esac
