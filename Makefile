# tardis: build, tests, and the real end-to-end suite.
GO      ?= go
BIN     ?= bin
PREFIX  ?= /usr/local

FUZZTIME ?= 10s
FUZZERS  := internal/runcargs:FuzzParse internal/config:FuzzLoad internal/store:FuzzManifest internal/criuimg:FuzzValidate

.PHONY: fuzz all build test vet check e2e-deps e2e-local e2e demo install clean

all: build

build:
	$(GO) build -o $(BIN)/tardis ./cmd/tardis
	$(GO) build -o $(BIN)/tardisctl ./cmd/tardisctl

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

# Installs runc, containerd, iptables, busybox-static and a working CRIU (as root).
e2e-deps:
	vagrant/install.sh --with-crictl

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
