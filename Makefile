# tardis: build, tests, and the real end-to-end suite.
GO      ?= go
BIN     ?= bin
PREFIX  ?= /usr/local

FUZZTIME ?= 10s
FUZZERS  := internal/runcargs:FuzzParse internal/config:FuzzLoad internal/store:FuzzManifest internal/criuimg:FuzzValidate

.PHONY: bench fuzz all build test vet check e2e-deps e2e-local e2e demo install clean

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

# Everything CI runs: dependencies, unit and scenario tests, the real end-to-end suite.
check: e2e-deps test fuzz e2e-local

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

# Installs runc, containerd, iptables, busybox-static, a working CRIU, crictl, and docker.io
# and podman with their services left off (as root).
e2e-deps:
	vagrant/install.sh --with-crictl --with-docker-podman

# The real end-to-end suite (testdata/e2e) on this Linux host, as root.
e2e-local: e2e-deps build
	TARDIS_E2E=1 $(GO) test -count=1 -timeout 40m -run TestE2E -v ./cmd/tardis

# The same suite inside a Debian 13 VM (vagrant/Vagrantfile).
e2e:
	cd vagrant && vagrant up --provision && vagrant ssh -c 'cd /tardis && sudo make e2e-local'

install: build
	install -D -m 0755 $(BIN)/tardis $(DESTDIR)$(PREFIX)/bin/tardis
	install -D -m 0755 $(BIN)/tardisctl $(DESTDIR)$(PREFIX)/bin/tardisctl

clean:
	rm -rf $(BIN)
