# tardis: build, tests, and the real end-to-end suite.
GO      ?= go
BIN     ?= bin
PREFIX  ?= /usr/local

# Each fuzz target runs a fixed number of inputs (about 10 s each on the 2-core CI machine),
# not a duration: Go 1.26's fuzzing coordinator can fail a target that found nothing with a
# bare "context deadline exceeded" when a -fuzztime duration runs out (golang/go#75804, fixed
# in Go 1.27); a count sets no deadline. FUZZTIME=1m (or 1000000x) runs every target for that.
FUZZTIME ?=
FUZZERS  := internal/runcargs:FuzzParse:600000x internal/config:FuzzLoad:300000x internal/store:FuzzManifest:60000x internal/criuimg:FuzzValidate:30000x internal/criuimg:FuzzDecode:200000x

.PHONY: bench fuzz all build test vet check e2e-deps e2e-local e2e-matrix e2e-cgroup2 e2e e2e-vm-ci e2e-vagrant e2e-gpu gpu-carry demo install clean

all: build

# Static binaries: a dynamically linked Go binary costs ~3 ms more to start, on every runc call.
build:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/tardis ./cmd/tardis
	CGO_ENABLED=0 $(GO) build -o $(BIN)/tardisctl ./cmd/tardisctl

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# Unit tests and the fake-runc scenarios (testdata/scripts); the real-runc scenarios in
# there run too where runc is installed.
test: vet
	$(GO) test ./...

# Everything CI runs: dependencies, unit and scenario tests, the real end-to-end suite
# against every runc and containerd of E2E_MATRIX on this host (cgroup v1), its runc
# scripts in the cgroup v2 tier (runc latest, and the distro's 1.1, whose restores tardis
# refuses there), and all of it in a cgroup v2 VM. Each e2e run happens even when an
# earlier one fails. On the 2-core CI machine: about 13 minutes with everything built,
# about 20 from a fresh clone, plus any wait for the e2e lock (README, "What CI runs"); fewer
# pairs: `make check E2E_MATRIX='distro:distro latest:2'`.
check: E2E_DEPS_FLAGS = --with-crictl --with-docker-podman --with-latest
check: e2e-deps test fuzz
	@rc=0; $(MAKE) --no-print-directory e2e-matrix || rc=1; \
	$(MAKE) --no-print-directory e2e-cgroup2 || rc=1; \
	$(MAKE) --no-print-directory e2e-cgroup2 E2E_CGROUP2_RUNC=distro || rc=1; \
	$(MAKE) --no-print-directory e2e-vm-ci || rc=1; exit $$rc

# Each fuzz target for its count of inputs, or FUZZTIME (seed corpora in each package's
# testdata/fuzz).
fuzz:
	@for f in $(FUZZERS); do pkg=$${f%%:*}; rest=$${f#*:}; name=$${rest%%:*}; n=$${rest#*:}; \
		t='$(FUZZTIME)'; n=$${t:-$$n}; echo "fuzz $$name ($$pkg) for $$n"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $$n ./$$pkg || exit 1; done

demo:
	vagrant/demo.sh

# Go benchmarks of the hot paths (their output in $(BIN)/gobench.txt), then the
# whole-process harness against the real runc, CRIU and containerd (as root, under the
# e2e suite's lock: it shares cgroups and container names with no one, but the numbers
# want the machine to themselves): pass-through against the static Go exec floor, the
# stop and restore cost curve from 64 MiB to 4 GiB against bare runc and the disk's own
# write and read floor, a node drain, signed checkpoints, time to ready, and stops that
# outlast the grace period under containerd's CRI. It prints the table and the goals
# ($(BIN)/bench.txt), writes $(BIN)/bench.json, and draws the curve and the drain to
# $(BENCH_PLOT), which the README shows, with the run's JSON beside it. About 13 minutes (12m45s)
# on the 2-vCPU VM, without the lock's wait. Larger sizes: BENCH_ARGS='-sizes 64,...,8192'.
BENCHTIME  ?= 1s
BENCH_ARGS ?=
BENCH_PLOT ?= testdata/bench/bench.svg
bench:
	@mkdir -p $(BIN) $(dir $(BENCH_PLOT))
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./internal/runcargs ./internal/optin ./internal/state ./internal/store ./internal/criuimg ./internal/rootfs >$(BIN)/gobench.txt || { cat $(BIN)/gobench.txt; exit 1; }
	@cat $(BIN)/gobench.txt
	flock -o $(E2E_LOCK) $(GO) run ./cmd/tardis-bench -json $(BIN)/bench.json -svg $(BENCH_PLOT) -gobench $(BIN)/gobench.txt $(BENCH_ARGS) >$(BIN)/bench.txt || { cat $(BIN)/bench.txt; exit 1; }
	@cat $(BIN)/bench.txt
	cp $(BIN)/bench.json $(basename $(BENCH_PLOT)).json

# Which runc and containerd the real suite runs against (TARDIS_E2E_RUNC and
# TARDIS_E2E_CONTAINERD, see cmd/tardis/e2e_test.go):
#   E2E_RUNC=distro         the distribution's runc (Debian 12: 1.1.5)
#   E2E_RUNC=latest         runc v1.5.3 in /opt/tardis-runc (install.sh --with-runc-latest)
#   E2E_RUNC=/path/to/runc  any other
#   E2E_CONTAINERD=distro   the distribution's containerd (Debian 12: 1.6.20)
#   E2E_CONTAINERD=2        containerd v2.4.2 in /opt/tardis-containerd (install.sh --with-containerd2)
#   E2E_CONTAINERD=/dir     a folder with containerd, containerd-shim-runc-v2 and ctr
# e.g. `make e2e-local E2E_RUNC=latest E2E_CONTAINERD=2`. E2E_RUN narrows the scripts
# (`E2E_RUN=TestE2E/plain_counter`). Runs take /tmp/tardis-e2e.lock (E2E_LOCK), so that two
# suites on one machine never run at once: they share cgroup and container names. flock -o:
# the lock is flock's own, so a process the suite leaves behind cannot keep holding it.
E2E_RUNC       ?= distro
E2E_CONTAINERD ?= distro
E2E_RUN        ?= TestE2E
E2E_LOCK       ?= /tmp/tardis-e2e.lock
E2E_DEPS_FLAGS ?= --with-crictl --with-docker-podman $(if $(filter latest,$(E2E_RUNC)),--with-runc-latest) \
	$(if $(filter 2 latest,$(E2E_CONTAINERD)),--with-containerd2)
# runc:containerd pairs for e2e-matrix.
E2E_MATRIX     ?= distro:distro latest:distro distro:2 latest:2
E2E_GO_TEST     = flock -o $(E2E_LOCK) env TARDIS_E2E=1 $(GO) test -count=1 -timeout 40m -v

# Installs runc, containerd, iptables, busybox-static, a working CRIU, crictl, docker.io and
# podman (their services left off) as root, and builds the runc and containerd asked for
# (--with-runc-latest, --with-containerd2).
e2e-deps:
	vagrant/install.sh $(E2E_DEPS_FLAGS)

# The real end-to-end suite (testdata/e2e) on this Linux host, as root, against E2E_RUNC
# and E2E_CONTAINERD.
e2e-local: e2e-deps build
	TARDIS_E2E_RUNC=$(E2E_RUNC) TARDIS_E2E_CONTAINERD=$(E2E_CONTAINERD) $(E2E_GO_TEST) -run '$(E2E_RUN)' ./cmd/tardis

# The suite against every pair in E2E_MATRIX, one after the other, each whole even when
# one fails; each one's output in $(BIN)/e2e-<runc>-<containerd>.log, a summary with the
# time each took at the end (and in $(BIN)/e2e-matrix.txt). Fails if any failed.
e2e-matrix: E2E_DEPS_FLAGS = --with-crictl --with-docker-podman --with-latest
e2e-matrix: e2e-deps build
	@mkdir -p $(BIN); : >$(BIN)/e2e-matrix.txt; failed=0; \
	for pair in $(E2E_MATRIX); do r=$${pair%%:*}; c=$${pair#*:}; \
		log=$(BIN)/e2e-$$(echo "$$r-$$c" | tr '/' '_').log; \
		echo "=== e2e: runc $$r, containerd $$c (output in $$log)"; start=$$(date +%s); \
		if TARDIS_E2E_RUNC=$$r TARDIS_E2E_CONTAINERD=$$c $(E2E_GO_TEST) -run '$(E2E_RUN)' ./cmd/tardis >$$log 2>&1; \
		then res=ok; else res=FAIL; failed=1; fi; \
		grep -aE '^\s*--- (FAIL|SKIP)|^\s*FAIL: |e2e_test.go:[0-9]+: tardis ' $$log || true; \
		took=$$(awk '$$1 ~ /^(ok|FAIL)$$/ && $$2 ~ /cmd\/tardis$$/ {print $$3}' $$log); \
		n() { grep -ac "^    --- $$1: TestE2E/" $$log; }; \
		printf '%-5s runc %-7s containerd %-7s scripts %2d pass %2d fail %2d skip, suite %6s, wall %4ds (with build and lock wait)\n' \
			$$res $$r $$c $$(n PASS) $$(n FAIL) $$(n SKIP) "$${took:-?}" $$(( $$(date +%s) - start )) | tee -a $(BIN)/e2e-matrix.txt; \
	done; echo "=== e2e matrix:"; cat $(BIN)/e2e-matrix.txt; exit $$failed

# The runc scripts of the suite with runc in its cgroup v2 mode, on a cgroup v1 host: in
# a private mount namespace whose /sys/fs/cgroup is a cgroup2 mount (see
# cmd/tardis/e2e_cgroup2_test.go). E2E_CGROUP2_RUNC is the runc (default latest).
E2E_CGROUP2_RUNC ?= latest
e2e-cgroup2: E2E_DEPS_FLAGS = --with-crictl $(if $(filter latest,$(E2E_CGROUP2_RUNC)),--with-runc-latest)
e2e-cgroup2: e2e-deps build
	TARDIS_E2E_CGROUP2=1 TARDIS_E2E_RUNC=$(E2E_CGROUP2_RUNC) $(E2E_GO_TEST) -run '$(E2E_RUN)' ./cmd/tardis

# The same suite inside a Debian 13 VM under QEMU, with cgroup v2 (vagrant/vm.sh): the image
# is built from Debian packages (as root, once; cached in $(BIN)/vm), tardis and the test
# binary are built here. VM_RUNC=distro is trixie's runc (1.1.15); a version (v1.3.7) is
# built from the Go module proxy and used in its place. See the README, "The suite in a VM".
VM_RUNC ?= distro
e2e:
	GO=$(GO) TARDIS_VM_RUNC=$(VM_RUNC) vagrant/vm.sh e2e

# What CI runs in the VM: the suite over runc $(VM_CI_RUNC) (VM_CI_SKIP: a -test.skip pattern).
VM_CI_RUNC ?= v1.3.7
VM_CI_SKIP ?=
e2e-vm-ci:
	GO=$(GO) TARDIS_VM_RUNC=$(VM_CI_RUNC) vagrant/vm.sh e2e 'TestE2E' '$(VM_CI_SKIP)'

# The suite in a Vagrant VM (vagrant/Vagrantfile; libvirt or virtualbox), for those with Vagrant.
e2e-vagrant:
	cd vagrant && vagrant up --provision && vagrant ssh -c 'cd /tardis && sudo make e2e-local'

# The GPU end-to-end run (vagrant/e2e-gpu.sh), on a machine with an NVIDIA GPU and none of
# tardis's dependencies (notes/gpu.md): gpu-carry fills $(GPU_CARRY) on a build machine
# with a static tardis, runc $(RUNC_VERSION), the CRIU prefix and its wrapper made by
# vagrant/install.sh, and NVIDIA's cuda-checkpoint, taken from a git directory of the
# NVIDIA/cuda-checkpoint repository (CUDA_CHECKPOINT_GIT) or a file (CUDA_CHECKPOINT).
# runc is built static as its own Makefile does (cgo for its nsenter, the C library linked
# in: the GPU machine's may be older than this one's). bin/ is ignored by git: the carry,
# cuda-checkpoint above all, is never committed.
GPU_CARRY           ?= $(BIN)/gpu-carry
RUNC_VERSION        ?= v1.5.3
CRIU_PREFIX         ?= /opt/tardis-criu
CRIU_WRAPPER        ?= /usr/local/sbin/tardis-criu
CUDA_CHECKPOINT_GIT ?=
CUDA_CHECKPOINT     ?=
gpu-carry:
	@test -n "$(CUDA_CHECKPOINT_GIT)$(CUDA_CHECKPOINT)" || { echo "gpu-carry: set CUDA_CHECKPOINT_GIT=<git dir of NVIDIA/cuda-checkpoint> or CUDA_CHECKPOINT=<the binary>" >&2; exit 2; }
	@test -x $(CRIU_PREFIX)/usr/sbin/criu -a -f $(CRIU_WRAPPER) || { echo "gpu-carry: no CRIU prefix at $(CRIU_PREFIX) (run vagrant/install.sh)" >&2; exit 2; }
	rm -rf $(GPU_CARRY) && mkdir -p $(GPU_CARRY)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(GPU_CARRY)/tardis ./cmd/tardis
	CGO_ENABLED=1 GOBIN=$(abspath $(GPU_CARRY)) $(GO) install -trimpath -tags 'netgo osusergo' \
		-ldflags '-s -w -extldflags -static' github.com/opencontainers/runc@$(RUNC_VERSION)
	cp -a $(CRIU_PREFIX) $(GPU_CARRY)/tardis-criu
	cp $(CRIU_WRAPPER) $(GPU_CARRY)/tardis-criu.sh
	if [ -n "$(CUDA_CHECKPOINT_GIT)" ]; then \
		git --git-dir=$(CUDA_CHECKPOINT_GIT) show HEAD:bin/x86_64_Linux/cuda-checkpoint >$(GPU_CARRY)/cuda-checkpoint; \
	else cp $(CUDA_CHECKPOINT) $(GPU_CARRY)/cuda-checkpoint; fi
	chmod 0755 $(GPU_CARRY)/cuda-checkpoint
	$(GPU_CARRY)/runc --version | head -n 1
	@du -sh $(GPU_CARRY)

# Run as root on the GPU machine, after gpu-carry (vagrant/e2e-gpu.sh runs without make too;
# DRY=1 prepares the bundle and prints the commands, NOGPU=1 runs it all without a GPU).
e2e-gpu:
	CARRY=$(abspath $(GPU_CARRY)) vagrant/e2e-gpu.sh

install: build
	install -D -m 0755 $(BIN)/tardis $(DESTDIR)$(PREFIX)/bin/tardis
	install -D -m 0755 $(BIN)/tardisctl $(DESTDIR)$(PREFIX)/bin/tardisctl

clean:
	rm -rf $(BIN)
