# tardis: build, tests, and the real end-to-end suite.
GO      ?= go
BIN     ?= bin
PREFIX  ?= /usr/local

FUZZTIME ?= 10s
FUZZERS  := internal/runcargs:FuzzParse internal/config:FuzzLoad internal/store:FuzzManifest internal/criuimg:FuzzValidate

.PHONY: bench fuzz all build test vet check e2e-deps e2e-local e2e e2e-vm-ci e2e-vagrant e2e-gpu gpu-carry demo install clean

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

# Everything CI runs: dependencies, unit and scenario tests, the real end-to-end suite here
# and (most of it) in a cgroup v2 VM.
check: e2e-deps test fuzz e2e-local e2e-vm-ci

# Each fuzz target for FUZZTIME (seed corpora in each package's testdata/fuzz).
fuzz:
	@for f in $(FUZZERS); do pkg=$${f%%:*}; name=$${f##*:}; \
		echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) ./$$pkg || exit 1; done

demo:
	vagrant/demo.sh

# Go benchmarks of the hot paths, then the whole-process harness against the real runc and
# CRIU (as root; about 6 minutes), which prints a table and writes $(BIN)/bench.json.
BENCHTIME  ?= 1s
BENCH_ARGS ?=
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./internal/runcargs ./internal/optin ./internal/state ./internal/store ./internal/criuimg ./internal/rootfs
	@mkdir -p $(BIN)
	$(GO) run ./cmd/tardis-bench -json $(BIN)/bench.json $(BENCH_ARGS)

# Installs runc, containerd, iptables, busybox-static and a working CRIU (as root).
e2e-deps:
	vagrant/install.sh --with-crictl

# The real end-to-end suite (testdata/e2e) on this Linux host, as root.
e2e-local: e2e-deps build
	TARDIS_E2E=1 $(GO) test -count=1 -timeout 40m -run TestE2E -v ./cmd/tardis

# The same suite inside a Debian 13 VM under QEMU, with cgroup v2 (vagrant/vm.sh): the image
# is built from Debian packages (as root, once; cached in $(BIN)/vm), tardis and the test
# binary are built here. VM_RUNC=distro is trixie's runc (1.1.15); a version (v1.3.7) is
# built from the Go module proxy and used in its place. See notes-vm.md.
VM_RUNC ?= distro
e2e:
	GO=$(GO) TARDIS_VM_RUNC=$(VM_RUNC) vagrant/vm.sh e2e

# What CI runs in the VM: the suite over runc $(VM_CI_RUNC), without the two scripts whose
# fault injection needs runc 1.1 (they pass with VM_RUNC=distro; notes-vm.md).
VM_CI_RUNC ?= v1.3.7
VM_CI_SKIP ?= TestE2E/(restore_hangs|restore_fails_overlay)$$
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
