#!/usr/bin/env bash
# install.sh - install what tardis and its end-to-end suite need, on Debian or Ubuntu, as root.
#
# Used by CI, by the Vagrant VM (vagrant/Vagrantfile) and by people trying tardis.
#
#   sudo vagrant/install.sh [--with-crictl] [--with-docker-podman] [--with-runc-latest]
#                           [--with-containerd2] [--with-latest] [--criu=auto|distro|private] [--quiet]
#
# What it does:
#   1. Installs from the distribution, when missing: runc, containerd, iptables
#      (CRIU calls iptables-restore/ip6tables-restore to lock a container's network),
#      iproute2 (CRIU runs `ip` to dump/restore a network namespace), busybox-static
#      (test root filesystems), util-linux, mount, procps, psmisc.
#      `apt-get update` runs only when a package is missing and apt cannot find or
#      fetch it with the lists it has.
#   2. Finds a CRIU that passes `criu check` on this kernel, in this order:
#        a. the one recorded in /etc/tardis/criu-path by an earlier run, if it still passes;
#        b. a `criu` already on PATH, if it passes;
#        c. the distribution's `criu` package (installed with apt), if it passes;
#           if it fails and this script installed it, it is purged again (with exactly
#           the packages that came with it), so that no broken `criu` stays on PATH
#           where runc would pick it up by default. A `criu` that was installed before
#           is never removed: it is reported as broken and left alone;
#        d. CRIU from the next Debian release ($TARDIS_CRIU_SUITE, default trixie)
#           unpacked into a private prefix (/opt/tardis-criu) with its own libc and
#           loader, run through the wrapper /usr/local/sbin/tardis-criu. The system's
#           apt state, dpkg database and libc are not touched: apt runs with a private
#           configuration (a copy of this machine's own Debian sources entry with the
#           suite changed) in a temporary folder, and the packages are `dpkg -x`-ed.
#           Only x86_64 (amd64) is supported for this step.
#      Bookworm's criu 3.17.1 fails on recent kernels ("vdso: Unexpected rt vDSO area
#      bounds" / "Failed to fill self vdso symtable"), so on Debian 12 step d is what
#      normally happens; on Debian 13 the distribution's criu 4.1 works (step c).
#      The path of the working CRIU is written to /etc/tardis/criu-path and printed as
#      CRIU=<path>. Give it to runc with its global option `--criu <path>`.
#   3. With --with-crictl: installs crictl with `go install` (Go module proxy) into
#      /usr/local/bin, if `go` is available (skipped with a message otherwise).
#   4. With --with-docker-podman: installs the distribution's docker.io and podman, when
#      missing, with what they depend on (containerd, runc and iptables from step 1; tini,
#      which is `docker run --init`; conmon and the CNI plugins for podman). Nothing for
#      rootless use (fuse-overlayfs, slirp4netns, uidmap): the suite runs both as root.
#      The suite starts a dockerd of its own (own data-root, exec-root, socket, pidfile,
#      containerd, bridge) and runs podman on storage of its own, so the packages'
#      services are not wanted: while this run installs them, a temporary
#      /usr/sbin/policy-rc.d (only if there is none) keeps their maintainer scripts from
#      starting any, and afterwards the units they ship (docker.service, docker.socket,
#      podman.service, podman.socket, podman-restart.service, podman-auto-update.*)
#      are stopped if running, disabled and masked, and the SysV script
#      /etc/init.d/docker is disabled. To use the system's Docker yourself afterwards:
#      `systemctl unmask docker.service docker.socket && systemctl enable --now docker`.
#      A docker.io or podman that was installed before this run is not touched; a dockerd
#      running or a unit enabled there is only reported.
#   5. With --with-runc-latest: builds runc $TARDIS_RUNC_LATEST_VERSION (default v1.5.3)
#      with `go install` into /opt/tardis-runc/<version>/bin/runc and writes that path
#      to /etc/tardis/runc-latest-path. It is built as runc's own Makefile builds it: cgo,
#      build tags `seccomp urfave_cli_no_docs` (not `libpathrs`, a Rust library Debian
#      does not ship: runc then uses its Go fallback), so that it runs the seccomp
#      profiles Docker and Podman give every container. Unlike runc's static release
#      binaries it links libseccomp dynamically: it needs libseccomp.so.2 (Debian's
#      libseccomp2) at run time, and libseccomp-dev and pkg-config to build, which are
#      installed when missing, with gcc and libc6-dev when there is no `cc`. A build
#      from an earlier run without seccomp is rebuilt once.
#      With --with-containerd2: builds containerd
#      $TARDIS_CONTAINERD2_VERSION (default v2.4.2: containerd, containerd-shim-runc-v2,
#      ctr; without btrfs) into /opt/tardis-containerd/<version>/bin and writes that
#      folder to /etc/tardis/containerd2-path. Neither folder is put on PATH: the
#      distribution's runc and containerd stay the ones found there. They are what the
#      end-to-end suite runs against with TARDIS_E2E_RUNC=latest and
#      TARDIS_E2E_CONTAINERD=2 (see the Makefile's e2e-matrix). These need `go`
#      (/usr/local/go/bin/go when go is not on PATH; unlike for crictl, a missing go is an
#      error here). runc v1.5.3 asks for Go 1.25 and containerd v2.4.2 for Go 1.26.6: an
#      older go fetches that toolchain through the module proxy (GOTOOLCHAIN=auto).
#      Both builds take about 1.5 minutes on 2 cores with an empty module cache. A build
#      is found again when `go version -m` says it was built from that version with those
#      build tags (without go: the prefix's BUILD-INFO).
#      runc >= 1.4 has no `--criu` option: it runs the `criu` on its PATH.
#
# It is idempotent: a second run finds everything, installs nothing and says so.
#
# Options:
#   --with-crictl        also install crictl ($TARDIS_CRICTL_VERSION, default v1.37.0)
#   --with-docker-podman also install docker.io and podman, their services left off (step 4)
#   --with-runc-latest   also build the newest runc into its own prefix (step 5)
#   --with-containerd2   also build containerd 2.x into its own prefix (step 5)
#   --with-latest        both of the above
#   --criu=auto          (default) steps a-d above
#   --criu=distro        only the distribution's criu (fail if it does not pass `criu check`)
#   --criu=private       skip the distribution's criu; use/build the private prefix
#   --quiet              less output from apt
# Environment:
#   TARDIS_CRIU_PREFIX   private prefix (default /opt/tardis-criu)
#   TARDIS_CRIU_SUITE    Debian suite to take CRIU from in step d (default trixie)
#   TARDIS_CRIU_SOURCES  a deb822 .sources file to use for step d instead of deriving one
#                        from this machine's Debian sources entry (needed on Ubuntu,
#                        whose mirrors do not carry Debian's packages)
#   TARDIS_RUNC_LATEST_VERSION  runc version for --with-runc-latest (default v1.5.3)
#   TARDIS_CONTAINERD2_VERSION  containerd version for --with-containerd2 (default v2.4.2)
#   TARDIS_RUNC_PREFIX          where runc versions go (default /opt/tardis-runc)
#   TARDIS_CONTAINERD_PREFIX    where containerd versions go (default /opt/tardis-containerd)
set -euo pipefail

PREFIX=${TARDIS_CRIU_PREFIX:-/opt/tardis-criu}
WRAPPER=/usr/local/sbin/tardis-criu
CONF_DIR=/etc/tardis
CRIU_PATH_FILE=$CONF_DIR/criu-path
CRIU_SUITE=${TARDIS_CRIU_SUITE:-trixie}
CRICTL_VERSION=${TARDIS_CRICTL_VERSION:-v1.37.0}
RUNC_LATEST_VERSION=${TARDIS_RUNC_LATEST_VERSION:-v1.5.3}
CONTAINERD2_VERSION=${TARDIS_CONTAINERD2_VERSION:-v2.4.2}
RUNC_PREFIX=${TARDIS_RUNC_PREFIX:-/opt/tardis-runc}
CONTAINERD_PREFIX=${TARDIS_CONTAINERD_PREFIX:-/opt/tardis-containerd}
RUNC_LATEST_PATH_FILE=$CONF_DIR/runc-latest-path
CONTAINERD2_PATH_FILE=$CONF_DIR/containerd2-path
PACKAGES=(runc containerd iptables iproute2 busybox-static util-linux mount procps psmisc)

WITH_CRICTL=0
WITH_DOCKER_PODMAN=0
WITH_RUNC_LATEST=0
WITH_CONTAINERD2=0
CRIU_MODE=auto
QUIET=0

usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; }

for arg in "$@"; do
	case $arg in
	--with-crictl) WITH_CRICTL=1 ;;
	--with-docker-podman) WITH_DOCKER_PODMAN=1 ;;
	--with-runc-latest) WITH_RUNC_LATEST=1 ;;
	--with-containerd2) WITH_CONTAINERD2=1 ;;
	--with-latest)
		WITH_RUNC_LATEST=1
		WITH_CONTAINERD2=1
		;;
	--criu=auto | --criu=distro | --criu=private) CRIU_MODE=${arg#--criu=} ;;
	--quiet) QUIET=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		echo "install.sh: unknown argument: $arg (see --help)" >&2
		exit 2
		;;
	esac
done

export DEBIAN_FRONTEND=noninteractive
FOUND=()     # what was already there
INSTALLED=() # what this run installed or changed
log() { printf 'tardis-install: %s\n' "$*"; }
die() {
	printf 'tardis-install: ERROR: %s\n' "$*" >&2
	exit 1
}

[[ $(id -u) -eq 0 ]] || die "must run as root (try: sudo $0 $*)"
command -v apt-get >/dev/null && command -v dpkg >/dev/null ||
	die "needs a Debian or Ubuntu system (apt-get and dpkg not found)"
OS_ID=unknown OS_CODENAME=unknown OS_PRETTY=unknown
if [[ -r /etc/os-release ]]; then
	# shellcheck disable=SC1091
	OS_ID=$(. /etc/os-release && echo "${ID:-unknown}")
	OS_CODENAME=$(. /etc/os-release && echo "${VERSION_CODENAME:-unknown}")
	OS_PRETTY=$(. /etc/os-release && echo "${PRETTY_NAME:-unknown}")
fi
DEB_ARCH=$(dpkg --print-architecture)
log "system: $OS_PRETTY ($OS_ID/$OS_CODENAME), $DEB_ARCH, kernel $(uname -r)"

APT_QUIET=()
[[ $QUIET -eq 1 ]] && APT_QUIET=(-qq)

# ---------------------------------------------------------------------------
# 1. distribution packages
# ---------------------------------------------------------------------------
is_installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true) == "install ok installed" ]]; }
has_candidate() {
	local c
	c=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}')
	[[ -n $c && $c != "(none)" ]]
}
APT_UPDATED=0
apt_update() {
	if [[ $APT_UPDATED -eq 0 ]]; then
		log "running apt-get update"
		apt-get "${APT_QUIET[@]}" update
		APT_UPDATED=1
	fi
}
# apt_install PKG...: install with the lists apt has; update first when a package has
# no candidate, and update and retry once when the install fails (stale lists).
apt_install() {
	local p need_update=0
	for p in "$@"; do has_candidate "$p" || need_update=1; done
	[[ $need_update -eq 1 ]] && apt_update
	if ! apt-get "${APT_QUIET[@]}" install -y --no-install-recommends "$@"; then
		[[ $APT_UPDATED -eq 1 ]] && return 1
		log "apt-get install failed; updating the package lists and trying again"
		apt_update
		apt-get "${APT_QUIET[@]}" install -y --no-install-recommends "$@"
	fi
}

missing=()
for p in "${PACKAGES[@]}"; do
	if is_installed "$p"; then
		FOUND+=("$p $(dpkg-query -W -f='${Version}' "$p")")
	else
		missing+=("$p")
	fi
done
if [[ ${#missing[@]} -gt 0 ]]; then
	log "installing from the distribution: ${missing[*]}"
	apt_install "${missing[@]}"
	for p in "${missing[@]}"; do INSTALLED+=("$p $(dpkg-query -W -f='${Version}' "$p")"); done
else
	log "distribution packages: all present (${PACKAGES[*]})"
fi
for cmd in runc containerd ctr iptables-restore ip6tables-restore ip busybox nsenter; do
	command -v "$cmd" >/dev/null || die "$cmd not found on PATH after installing ${PACKAGES[*]}"
done

# ---------------------------------------------------------------------------
# 2. a CRIU that passes `criu check`
# ---------------------------------------------------------------------------
CHECK_OUT=""
# criu_ok PATH: runs `PATH check`; the output is kept in CHECK_OUT.
criu_ok() {
	local rc=0
	[[ -x $1 ]] || {
		CHECK_OUT="$1: not executable"
		return 1
	}
	CHECK_OUT=$("$1" check 2>&1) || rc=$?
	return $rc
}
criu_version() { "$1" --version 2>/dev/null | awk '/^Version:/ {print $2}'; }

CRIU=""
CRIU_HOW=""

# a. recorded by an earlier run
if [[ -z $CRIU && -r $CRIU_PATH_FILE ]]; then
	rec=$(head -n1 "$CRIU_PATH_FILE")
	if criu_ok "$rec"; then
		CRIU=$rec
		CRIU_HOW="recorded in $CRIU_PATH_FILE by an earlier run; passes criu check"
		FOUND+=("criu $(criu_version "$CRIU") at $CRIU")
	else
		log "the CRIU recorded in $CRIU_PATH_FILE ($rec) no longer passes criu check: looking again"
	fi
fi

# the recorded one may be another mode than asked for: honour an explicit mode.
if [[ -n $CRIU && $CRIU_MODE == private && $CRIU != "$WRAPPER" ]]; then CRIU=""; fi
if [[ -n $CRIU && $CRIU_MODE == distro && $CRIU == "$WRAPPER" ]]; then CRIU=""; fi

# b. a criu on PATH
if [[ -z $CRIU && $CRIU_MODE != private ]]; then
	if p=$(command -v criu); then
		if criu_ok "$p"; then
			CRIU=$p
			CRIU_HOW="found on PATH; passes criu check"
			FOUND+=("criu $(criu_version "$p") at $p")
		else
			log "found $p (criu $(criu_version "$p")), but 'criu check' fails on this kernel:"
			tail -n 3 <<<"$CHECK_OUT" | sed 's/^/    /'
		fi
	fi
fi

# c. the distribution's criu
if [[ -z $CRIU && $CRIU_MODE != private ]]; then
	if is_installed criu; then
		log "the distribution's criu $(dpkg-query -W -f='${Version}' criu) is installed but broken here;" \
			"it was not installed by this script, so it is left alone (tardis uses the path in $CRIU_PATH_FILE, not criu on PATH)"
	else
		apt_update_needed=0
		has_candidate criu || apt_update_needed=1
		[[ $apt_update_needed -eq 1 ]] && apt_update
		if has_candidate criu; then
			before=$(dpkg-query -W -f='${Package}\t${Status}\n' | awk -F'\t' '$2=="install ok installed" {print $1}' | sort)
			log "trying the distribution's criu $(apt-cache policy criu | awk '/Candidate:/ {print $2}')"
			apt_install criu
			after=$(dpkg-query -W -f='${Package}\t${Status}\n' | awk -F'\t' '$2=="install ok installed" {print $1}' | sort)
			new_pkgs=$(comm -13 <(echo "$before") <(echo "$after") | tr '\n' ' ')
			if criu_ok /usr/sbin/criu; then
				CRIU=/usr/sbin/criu
				CRIU_HOW="the distribution's criu package; passes criu check"
				INSTALLED+=("criu $(criu_version "$CRIU") (distribution package, with: $new_pkgs)")
			else
				log "the distribution's criu $(criu_version /usr/sbin/criu) fails 'criu check' on this kernel:"
				tail -n 3 <<<"$CHECK_OUT" | sed 's/^/    /'
				log "removing what was just installed for it: $new_pkgs"
				# shellcheck disable=SC2086
				apt-get "${APT_QUIET[@]}" purge -y $new_pkgs
			fi
		else
			log "the distribution has no criu package"
		fi
	fi
	[[ -z $CRIU && $CRIU_MODE == distro ]] && die "--criu=distro: no distribution criu passes 'criu check' here"
fi

# d. CRIU from the next Debian release, in a private prefix
# debian_sources FILE: writes a deb822 sources entry for suite $CRIU_SUITE to FILE, made
# from this machine's own Debian archive entry (its main suite, not -security/-updates).
debian_sources() {
	local out=$1 f
	if [[ -n ${TARDIS_CRIU_SOURCES:-} ]]; then
		[[ -r $TARDIS_CRIU_SOURCES ]] || die "TARDIS_CRIU_SOURCES=$TARDIS_CRIU_SOURCES is not readable"
		cp "$TARDIS_CRIU_SOURCES" "$out"
		return
	fi
	[[ $OS_ID == debian ]] || die "step d needs Debian's archive, and this is $OS_ID: set TARDIS_CRIU_SOURCES to a" \
		"deb822 .sources file for Debian $CRIU_SUITE (and install debian-archive-keyring), or install a working criu yourself"
	: >"$out"
	shopt -s nullglob
	for f in /etc/apt/sources.list.d/*.sources; do
		# deb822: paragraphs separated by blank lines; take the first one of type deb whose
		# Suites has this release's codename itself, and change its Suites line.
		awk -v codename="$OS_CODENAME" -v suite="$CRIU_SUITE" '
			BEGIN { RS=""; FS="\n" }
			{
				ok = 0; isdeb = 0; enabled = 1
				for (i = 1; i <= NF; i++) {
					if ($i ~ /^Types:/ && $i ~ /(^|[ \t:])deb([ \t]|$)/) isdeb = 1
					if ($i ~ /^Enabled:[ \t]*no/) enabled = 0
					if ($i ~ /^Suites:/) { n = split(substr($i, 8), s, /[ \t]+/); for (j = 1; j <= n; j++) if (s[j] == codename) ok = 1 }
				}
				if (ok && isdeb && enabled && !done) {
					for (i = 1; i <= NF; i++) {
						if ($i ~ /^Suites:/) print "Suites: " suite
						else if ($i ~ /^Types:/) print "Types: deb"
						else print $i
					}
					done = 1
				}
			}' "$f" >>"$out"
		[[ -s $out ]] && break
	done
	if [[ ! -s $out && -r /etc/apt/sources.list ]]; then
		# one-line format: "deb [options] URI codename components..."
		awk -v codename="$OS_CODENAME" -v suite="$CRIU_SUITE" '
			$1 == "deb" && !done {
				i = 2; opts = ""
				if ($2 ~ /^\[/) { while ($i !~ /\]$/) { opts = opts " " $i; i++ } opts = opts " " $i; i++ }
				if ($(i+1) == codename) { $(i+1) = suite; print; done = 1 }
			}' /etc/apt/sources.list >"$out.list"
		if [[ -s $out.list ]]; then
			mv "$out.list" "${out%.sources}.list"
			rm -f "$out"
			return
		fi
		rm -f "$out.list"
	fi
	[[ -s $out ]] || die "could not find this machine's Debian archive entry for '$OS_CODENAME' in /etc/apt;" \
		"set TARDIS_CRIU_SOURCES to a deb822 .sources file for Debian $CRIU_SUITE"
	shopt -u nullglob
}

# prefix_lib_path DIR: the folders under DIR that hold shared libraries, colon separated.
prefix_lib_path() {
	local d out=""
	for d in usr/lib/x86_64-linux-gnu lib/x86_64-linux-gnu usr/lib lib; do
		[[ -d $1/$d ]] && compgen -G "$1/$d/*.so*" >/dev/null && out+="${out:+:}$1/$d"
	done
	echo "$out"
}

# write_wrapper PREFIX FILE
write_wrapper() {
	local libpath tmp
	libpath=$(prefix_lib_path "$1")
	tmp=$(mktemp "$2.XXXXXX")
	cat >"$tmp" <<EOF
#!/bin/sh
# Written by tardis vagrant/install.sh: CRIU from Debian $CRIU_SUITE, unpacked in $1 with
# its own C library, started through that prefix's dynamic loader. The system's libc and
# apt state are untouched. Packages: $1/PACKAGES
exec $1/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 --library-path $libpath $1/usr/sbin/criu "\$@"
EOF
	chmod 0755 "$tmp"
	mv -f "$tmp" "$2"
}

build_private_criu() {
	local arch
	arch=$(uname -m)
	[[ $arch == x86_64 && $DEB_ARCH == amd64 ]] ||
		die "no working criu, and the private CRIU fallback supports only x86_64/amd64 (this is $arch/$DEB_ARCH);" \
			"install a criu >= 4.0 that passes 'criu check' and run this script again"

	local work
	work=$(mktemp -d /tmp/tardis-criu-apt.XXXXXX)
	chmod 0755 "$work" # apt's _apt download sandbox must reach the folders below
	# shellcheck disable=SC2064
	trap "rm -rf '$work'" EXIT
	mkdir -p "$work/sources" "$work/prefs" "$work/lists/partial" \
		"$work/cache/archives/partial" "$work/debs"
	id _apt >/dev/null 2>&1 && chown _apt "$work/lists/partial" "$work/cache/archives/partial"
	debian_sources "$work/sources/tardis-$CRIU_SUITE.sources"
	log "private apt configuration for Debian $CRIU_SUITE (from this machine's own sources entry):"
	sed 's/^/    /' "$work"/sources/*
	# -c file: read after the system configuration; drops the update hooks (they would
	# act on the system's lists) and the DEP-11 metadata nobody needs here.
	cat >"$work/apt.conf" <<EOF
#clear APT::Update::Post-Invoke-Success;
#clear APT::Update::Post-Invoke;
#clear DPkg::Post-Invoke;
Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";
Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";
Acquire::Languages "none";
EOF
	local APT_PRIV=(-c "$work/apt.conf"
		-o Dir::Etc::SourceList=/dev/null
		-o "Dir::Etc::SourceParts=$work/sources"
		-o Dir::Etc::Preferences=/dev/null
		-o "Dir::Etc::PreferencesParts=$work/prefs"
		-o "Dir::State::Lists=$work/lists"
		-o "Dir::Cache=$work/cache"
		-o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
		-o Dir::State::status=/dev/null
		-o "APT::Architecture=$DEB_ARCH")
	log "fetching the Debian $CRIU_SUITE package lists into $work (private)"
	apt-get "${APT_QUIET[@]}" "${APT_PRIV[@]}" update
	# the closure of criu's Depends/Pre-Depends; only criu itself and libraries are
	# unpacked (gcc-*-base and the like carry no files criu needs).
	local pkgs
	mapfile -t pkgs < <(apt-cache "${APT_PRIV[@]}" depends --recurse --no-recommends --no-suggests \
		--no-conflicts --no-breaks --no-replaces --no-enhances criu | grep -v '^[ <]' |
		grep -E '^(criu|lib[^ ]*)$' | sort -u)
	[[ " ${pkgs[*]} " == *" criu "* && " ${pkgs[*]} " == *" libc6 "* ]] ||
		die "could not resolve criu's dependencies in Debian $CRIU_SUITE (got: ${pkgs[*]})"
	log "downloading ${#pkgs[@]} packages from Debian $CRIU_SUITE: ${pkgs[*]}"
	id _apt >/dev/null 2>&1 && chown _apt "$work/debs"
	(cd "$work/debs" && apt-get "${APT_QUIET[@]}" "${APT_PRIV[@]}" download "${pkgs[@]}")

	local stage=$PREFIX.new.$$ deb
	# shellcheck disable=SC2064
	trap "rm -rf '$work' '$stage'" EXIT
	rm -rf "$stage"
	mkdir -p "$stage"
	for deb in "$work"/debs/*.deb; do
		dpkg -x "$deb" "$stage"
		dpkg-deb -f "$deb" Package Version | paste -sd' ' >>"$stage/PACKAGES.tmp"
	done
	sed 's/^Package: //; s/ Version: / /' "$stage/PACKAGES.tmp" | sort >"$stage/PACKAGES"
	rm -f "$stage/PACKAGES.tmp"
	rm -rf "$stage/usr/share/doc" "$stage/usr/share/man" "$stage/usr/share/locale" "$stage/usr/share/lintian"

	# every library criu needs must resolve inside the prefix.
	local ldso=$stage/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 libpath deps outside
	[[ -x $ldso && -x $stage/usr/sbin/criu ]] || die "unpacked packages lack $ldso or usr/sbin/criu"
	libpath=$(prefix_lib_path "$stage")
	deps=$("$ldso" --list --library-path "$libpath" "$stage/usr/sbin/criu" 2>&1) ||
		die "the loader cannot resolve criu's libraries:"$'\n'"$deps"
	outside=$(grep -v -e 'linux-vdso' -e "$stage" <<<"$deps" || true)
	[[ -z $outside ]] || die "criu needs libraries that are not in the prefix:"$'\n'"$outside"

	rm -rf "$PREFIX.old"
	[[ -e $PREFIX ]] && mv "$PREFIX" "$PREFIX.old"
	mv "$stage" "$PREFIX"
	rm -rf "$PREFIX.old"
	mkdir -p "$(dirname "$WRAPPER")"
	write_wrapper "$PREFIX" "$WRAPPER"
	rm -rf "$work"
	trap - EXIT
}

if [[ -z $CRIU ]]; then
	if [[ -x $WRAPPER && -d $PREFIX ]] && criu_ok "$WRAPPER"; then
		CRIU=$WRAPPER
		CRIU_HOW="private CRIU in $PREFIX (already there); passes criu check"
		FOUND+=("criu $(criu_version "$CRIU") at $WRAPPER (prefix $PREFIX)")
	else
		log "no working criu yet: unpacking CRIU from Debian $CRIU_SUITE into $PREFIX"
		build_private_criu
		criu_ok "$WRAPPER" || die "the private CRIU fails too: $WRAPPER check says:"$'\n'"$CHECK_OUT"
		CRIU=$WRAPPER
		CRIU_HOW="private CRIU from Debian $CRIU_SUITE in $PREFIX; passes criu check"
		INSTALLED+=("criu $(criu_version "$CRIU") from Debian $CRIU_SUITE into $PREFIX ($(wc -l <"$PREFIX/PACKAGES") packages, $(du -sh "$PREFIX" | cut -f1)), wrapper $WRAPPER")
	fi
fi

mkdir -p "$CONF_DIR"
if [[ ! -r $CRIU_PATH_FILE || $(head -n1 "$CRIU_PATH_FILE") != "$CRIU" ]]; then
	echo "$CRIU" >"$CRIU_PATH_FILE"
	INSTALLED+=("$CRIU_PATH_FILE -> $CRIU")
fi

# ---------------------------------------------------------------------------
# 3. crictl (optional)
# ---------------------------------------------------------------------------
if [[ $WITH_CRICTL -eq 1 ]]; then
	# `go install` builds say "crictl version unknown": read the module version instead.
	crictl_version() {
		local p
		p=$(command -v crictl) || return 0
		if command -v go >/dev/null; then
			go version -m "$p" 2>/dev/null | awk '$1 == "mod" && $2 == "sigs.k8s.io/cri-tools" {print $3}'
		else
			crictl --version 2>/dev/null | awk '{print $NF}'
		fi
	}
	if [[ $(crictl_version) == "$CRICTL_VERSION" || $(crictl_version) == "${CRICTL_VERSION#v}" ]]; then
		FOUND+=("crictl ${CRICTL_VERSION} at $(command -v crictl)")
	elif ! command -v go >/dev/null; then
		log "--with-crictl: go is not installed, skipping crictl (install Go >= 1.21 and run again)"
	else
		log "installing crictl $CRICTL_VERSION with go install"
		GOBIN=/usr/local/bin go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
		INSTALLED+=("crictl $CRICTL_VERSION at /usr/local/bin/crictl")
	fi
fi

# ---------------------------------------------------------------------------
# 4. docker.io and podman (optional), their services left off
# ---------------------------------------------------------------------------
DOCKER_PODMAN_PACKAGES=(docker.io podman)
DOCKER_PODMAN_UNITS=(docker.socket docker.service podman.socket podman.service podman-restart.service
	podman-auto-update.timer podman-auto-update.service)
systemd_running() { [[ -d /run/systemd/system ]]; }
unit_exists() { [[ -e /lib/systemd/system/$1 || -e /usr/lib/systemd/system/$1 ]]; }
# leave_off UNIT...: stopped (when systemd runs), disabled and masked. systemctl works on
# the unit files without a running systemd too; deb-systemd-helper is Debian's fallback.
leave_off() {
	local u
	for u in "$@"; do
		unit_exists "$u" || continue
		if systemd_running; then
			systemctl stop "$u" >/dev/null 2>&1 || true
		fi
		if command -v systemctl >/dev/null; then
			systemctl disable "$u" >/dev/null 2>&1 || true
			systemctl mask "$u" >/dev/null 2>&1 || true
		fi
		if [[ $(readlink "/etc/systemd/system/$u" 2>/dev/null) != /dev/null ]] && command -v deb-systemd-helper >/dev/null; then
			deb-systemd-helper disable "$u" >/dev/null 2>&1 || true
			deb-systemd-helper mask "$u" >/dev/null 2>&1 || true
		fi
		[[ $(readlink "/etc/systemd/system/$u" 2>/dev/null) == /dev/null ]] ||
			die "could not mask $u (/etc/systemd/system/$u should be a link to /dev/null)"
	done
}
# report_services: what of the packages' services runs or is enabled (nothing is changed).
report_services() {
	local u state pids
	for u in "${DOCKER_PODMAN_UNITS[@]}"; do
		unit_exists "$u" || continue
		if command -v systemctl >/dev/null; then
			state=$(systemctl is-enabled "$u" 2>/dev/null || true)
			[[ $state == enabled || $state == static ]] && log "note: $u is $state (this script did not install it, so it is left so)"
		fi
		if systemd_running && systemctl is-active --quiet "$u"; then
			log "note: $u is running (left so; the suite's own dockerd and podman do not use it)"
		fi
	done
	if pids=$(pgrep -x dockerd 2>/dev/null); then
		log "note: a dockerd runs (pid $(tr '\n' ' ' <<<"$pids")); the suite's dockerd has its own socket, roots and bridge and leaves the firewall alone"
	fi
}

if [[ $WITH_DOCKER_PODMAN -eq 1 ]]; then
	missing=()
	for p in "${DOCKER_PODMAN_PACKAGES[@]}"; do
		if is_installed "$p"; then
			FOUND+=("$p $(dpkg-query -W -f='${Version}' "$p")")
		else
			missing+=("$p")
		fi
	done
	if [[ ${#missing[@]} -gt 0 ]]; then
		POLICY=/usr/sbin/policy-rc.d
		own_policy=0
		if [[ ! -e $POLICY ]]; then
			# invoke-rc.d and deb-systemd-invoke ask it; 101 means "do not start anything".
			printf '#!/bin/sh\n# tardis vagrant/install.sh, while installing %s: start no service\nexit 101\n' \
				"${missing[*]}" >"$POLICY"
			chmod 0755 "$POLICY"
			own_policy=1
			# shellcheck disable=SC2064
			trap "rm -f '$POLICY'" EXIT
		fi
		log "installing from the distribution: ${missing[*]} (their services are kept from starting)"
		apt_install "${missing[@]}"
		if [[ $own_policy -eq 1 ]]; then
			rm -f "$POLICY"
			trap - EXIT
		fi
		units=()
		for p in "${missing[@]}"; do
			INSTALLED+=("$p $(dpkg-query -W -f='${Version}' "$p")")
			case $p in
			docker.io)
				units+=(docker.socket docker.service)
				# the SysV script (used where systemd is not init)
				if [[ -x /etc/init.d/docker ]]; then
					/etc/init.d/docker stop >/dev/null 2>&1 || true
					update-rc.d docker disable >/dev/null 2>&1 || true
				fi
				;;
			podman) units+=(podman.socket podman.service podman-restart.service podman-auto-update.timer podman-auto-update.service) ;;
			esac
		done
		leave_off "${units[@]}"
		INSTALLED+=("services of ${missing[*]} stopped, disabled and masked: ${units[*]}")
	else
		log "docker.io and podman: present"
		report_services
	fi
	for cmd in docker dockerd podman conmon docker-init; do
		command -v "$cmd" >/dev/null || die "$cmd not found on PATH after installing ${DOCKER_PODMAN_PACKAGES[*]}"
	done
fi

# ---------------------------------------------------------------------------
# 5. the newest runc and containerd 2.x, built into private prefixes (optional)
# ---------------------------------------------------------------------------
# go_cmd: the go to build with, "" when there is none.
go_cmd() {
	if command -v go 2>/dev/null; then
		return
	fi
	if [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go; fi
}

# built_from BIN MODULE: the version of MODULE that BIN was built from (`go version -m`;
# without go, what the prefix's BUILD-INFO says), "" when BIN is missing or that cannot
# be read.
built_from() {
	local go
	go=$(go_cmd)
	[[ -x $1 ]] || return 0
	if [[ -n $go ]]; then
		"$go" version -m "$1" 2>/dev/null | awk -v m="$2" '$1 == "mod" && $2 == m {print $3}'
	elif [[ -r $(dirname "$1")/../BUILD-INFO ]]; then
		awk 'NR == 1 {sub(/,$/, "", $2); print $2}' "$(dirname "$1")/../BUILD-INFO"
	fi
}

# built_tags BIN: the build tags BIN was built with, sorted, one space between (`go
# version -m`; without go, what the prefix's BUILD-INFO says); "" for none.
built_tags() {
	local go
	go=$(go_cmd)
	[[ -x $1 ]] || return 0
	if [[ -n $go ]]; then
		"$go" version -m "$1" 2>/dev/null | awk '$1 == "build" && $2 ~ /^-tags=/ {sub(/^-tags=/, "", $2); print $2}'
	elif [[ -r $(dirname "$1")/../BUILD-INFO ]]; then
		# older BUILD-INFOs have no tags line, only GOFLAGS=-tags=... in the "with:" one
		awk '$1 == "tags:" {print $2; exit} match($0, /-tags=[^ )]+/) {print substr($0, RSTART + 6, RLENGTH - 6); exit}' \
			"$(dirname "$1")/../BUILD-INFO"
	fi | sed 's/[, ]\+/\n/g; /^$/d' | sort | paste -sd' '
}

# sorted_tags TAGS...: the tags, sorted, one space between (as built_tags prints them).
sorted_tags() { printf '%s\n' "$@" | sed '/^$/d' | sort | paste -sd' '; }

# record FILE VALUE: writes VALUE to FILE unless it holds it already.
record() {
	mkdir -p "$(dirname "$1")"
	if [[ ! -r $1 || $(head -n1 "$1") != "$2" ]]; then
		echo "$2" >"$1"
		INSTALLED+=("$1 -> $2")
	fi
}

# go_build_prefix WHAT DIR MODULE VERSION TAGS ENV -- PACKAGE@VERSION...: builds the
# packages with `go install -tags TAGS` (TAGS: space-separated, "" for none) into DIR/bin
# (staged in DIR.new.PID, then renamed), unless every one of them is already there,
# built from MODULE@VERSION with exactly those tags.
go_build_prefix() {
	local what=$1 dir=$2 module=$3 version=$4 tags=$5 go stage start p have=1
	shift 5
	local envs=()
	while [[ $1 != -- ]]; do
		envs+=("$1")
		shift
	done
	shift
	# shellcheck disable=SC2086
	tags=$(sorted_tags $tags)
	for p in "$@"; do
		p=${p%@*}
		[[ $(built_from "$dir/bin/${p##*/}" "$module") == "$version" &&
			$(built_tags "$dir/bin/${p##*/}") == "$tags" ]] || have=0
	done
	if [[ $have -eq 1 ]]; then
		FOUND+=("$what $version in $dir/bin${tags:+ (tags: $tags)}")
		return
	fi
	go=$(go_cmd)
	[[ -n $go ]] || die "$what $version: needs go (on PATH or in /usr/local/go/bin) to build it"
	stage=$dir.new.$$
	rm -rf "$stage"
	mkdir -p "$stage/bin"
	# shellcheck disable=SC2064
	trap "rm -rf '$stage'" EXIT
	local tagflag=()
	[[ -n $tags ]] && tagflag=(-tags "${tags// /,}")
	log "building $what $version with go install ${tagflag[*]} ($("$go" version | awk '{print $3}')) into $dir"
	start=$(date +%s)
	# From / so that no go.mod around the caller takes part; the module cache is the usual one.
	(cd / && env "${envs[@]}" GOBIN="$stage/bin" "$go" install "${tagflag[@]}" "$@") ||
		die "building $what $version failed (go install ${tagflag[*]} $*)"
	for p in "$@"; do
		p=${p%@*}
		[[ -x $stage/bin/${p##*/} ]] || die "go install $* did not produce ${p##*/}"
	done
	{
		echo "$what $version, built by tardis vagrant/install.sh on $(date -u +%Y-%m-%dT%H:%M:%SZ)"
		echo "go install ${tagflag[*]} $*"
		echo "tags: ${tags// /,}"
		echo "with: ${envs[*]} ($("$go" version))"
	} >"$stage/BUILD-INFO"
	rm -rf "$dir.old"
	[[ -e $dir ]] && mv "$dir" "$dir.old"
	mv "$stage" "$dir"
	rm -rf "$dir.old"
	trap - EXIT
	INSTALLED+=("$what $version into $dir/bin (built in $(($(date +%s) - start)) s)")
}

# runc's build tags: those of its Makefile (BUILDTAGS) less libpathrs (see --help, step 5).
RUNC_TAGS="seccomp urfave_cli_no_docs"
if [[ $WITH_RUNC_LATEST -eq 1 ]]; then
	runc_latest=$RUNC_PREFIX/$RUNC_LATEST_VERSION/bin/runc
	# shellcheck disable=SC2086
	if [[ $(built_from "$runc_latest" github.com/opencontainers/runc) != "$RUNC_LATEST_VERSION" ||
		$(built_tags "$runc_latest") != "$(sorted_tags $RUNC_TAGS)" ]]; then
		# runc's nsenter is C (cgo, a C compiler); the seccomp tag links libseccomp, found
		# with pkg-config.
		need=()
		command -v cc >/dev/null || need+=(gcc libc6-dev)
		command -v pkg-config >/dev/null || need+=(pkg-config)
		is_installed libseccomp-dev || need+=(libseccomp-dev)
		if [[ ${#need[@]} -gt 0 ]]; then
			log "runc $RUNC_LATEST_VERSION with seccomp needs: installing ${need[*]}"
			apt_install "${need[@]}"
			for p in "${need[@]}"; do INSTALLED+=("$p $(dpkg-query -W -f='${Version}' "$p") (to build runc)"); done
		fi
	fi
	go_build_prefix runc "$RUNC_PREFIX/$RUNC_LATEST_VERSION" github.com/opencontainers/runc "$RUNC_LATEST_VERSION" \
		"$RUNC_TAGS" CGO_ENABLED=1 -- "github.com/opencontainers/runc@$RUNC_LATEST_VERSION"
	runc_v=$("$runc_latest" --version) || die "$runc_latest --version fails"
	grep -q '^libseccomp: ' <<<"$runc_v" ||
		die "$runc_latest was built without seccomp (its --version names no libseccomp)"
	record "$RUNC_LATEST_PATH_FILE" "$runc_latest"
fi

if [[ $WITH_CONTAINERD2 -eq 1 ]]; then
	# no_btrfs: the btrfs snapshotter needs libbtrfs headers (and nobody here uses it).
	go_build_prefix containerd "$CONTAINERD_PREFIX/$CONTAINERD2_VERSION" github.com/containerd/containerd/v2 "$CONTAINERD2_VERSION" \
		no_btrfs -- \
		"github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD2_VERSION" \
		"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD2_VERSION" \
		"github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD2_VERSION"
	"$CONTAINERD_PREFIX/$CONTAINERD2_VERSION/bin/containerd" --version >/dev/null ||
		die "$CONTAINERD_PREFIX/$CONTAINERD2_VERSION/bin/containerd --version fails"
	record "$CONTAINERD2_PATH_FILE" "$CONTAINERD_PREFIX/$CONTAINERD2_VERSION/bin"
fi

# ---------------------------------------------------------------------------
echo
log "found already present:"
if [[ ${#FOUND[@]} -gt 0 ]]; then printf '    %s\n' "${FOUND[@]}"; else echo "    (nothing)"; fi
log "installed by this run:"
if [[ ${#INSTALLED[@]} -gt 0 ]]; then printf '    %s\n' "${INSTALLED[@]}"; else echo "    nothing: everything was already in place"; fi
log "criu: $CRIU_HOW"
log "runc: $(runc --version | head -n1); use it as: runc --criu $CRIU checkpoint ..."
if [[ $WITH_RUNC_LATEST -eq 1 ]]; then
	log "runc $RUNC_LATEST_VERSION: $RUNC_PREFIX/$RUNC_LATEST_VERSION/bin/runc (in $RUNC_LATEST_PATH_FILE;" \
		"seccomp, libseccomp $(awk '$1 == "libseccomp:" {print $2}' <<<"$runc_v") linked dynamically);" \
		"it has no --criu option and runs the criu on its PATH: give it a PATH that leads to $CRIU as criu"
	echo "RUNC_LATEST=$RUNC_PREFIX/$RUNC_LATEST_VERSION/bin/runc"
fi
if [[ $WITH_CONTAINERD2 -eq 1 ]]; then
	log "containerd $CONTAINERD2_VERSION: $CONTAINERD_PREFIX/$CONTAINERD2_VERSION/bin (in $CONTAINERD2_PATH_FILE);" \
		"run it with that folder first on PATH, so that it starts its own containerd-shim-runc-v2"
	echo "CONTAINERD2=$CONTAINERD_PREFIX/$CONTAINERD2_VERSION/bin"
fi
echo "CRIU=$CRIU"
