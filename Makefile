# Ratatouille. `make demo` and `make test` are the two commands that must
# work on a fresh machine; see README.md.
SHELL := /bin/bash
GO ?= go
MODULES := evidence device .
BIN := $(CURDIR)/bin
FUZZTIME ?= 10s
export CGO_ENABLED ?= 1

.PHONY: hooks all build test demo bench fuzz tamper-all lint e2e clean check-deps yocto-toolchain yocto-mods yocto-vendor

all: build

build:
	@mkdir -p $(BIN)
	cd device && CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/rat-agent ./cmd/rat-agent
	cd device && CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/rat-agent-linux-arm64 ./cmd/rat-agent
	cd device && CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/rat-agent-linux-arm ./cmd/rat-agent
	$(GO) build -o $(BIN)/ ./cmd/...

# Unit and integration tests of all three modules. Integration tests start
# their own swtpm / mosquitto / git processes on free loopback ports; with
# RAT_REQUIRE_INTEGRATION=1 a missing tool fails the test instead of skipping.
test: check-deps
	@set -e; for m in $(MODULES); do echo "== go test ($$m)"; (cd $$m && $(GO) test -count=1 -timeout 9m ./...); done

# The agent binary must not pull in hub-only dependencies.
check-deps:
	@cd device && if $(GO) list -deps ./... | grep -E 'sigstore|net/http/httputil|go-chi|gin-gonic|mochi-mqtt'; then echo "check-deps: hub-only dependency in the device module" >&2; exit 1; fi
	@echo "check-deps: device module is free of hub-only dependencies"

demo: build
	./scripts/demo.sh

bench:
	./scripts/bench.sh

fuzz:
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

# Flip every byte of a real evidence bundle, one at a time (make test does a
# sample): rat-audit must never say TRUSTED for a changed bundle. Long.
tamper-all:
	RAT_TAMPER_ALL=1 $(GO) test -count=1 -timeout 3h -run TestByteTamper ./audit/

e2e: build
	@if [ -x test/e2e/run.sh ]; then ./test/e2e/run.sh; else echo "e2e: the real-kernel harness (issue 8) is not built yet"; fi

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) vet ./...); done
	@set -e; if command -v staticcheck >/dev/null; then for m in $(MODULES); do (cd $$m && staticcheck ./...); done; else echo "staticcheck not installed (.ci/run installs it)"; [ -z "$$CI" ]; fi

# Build the device side with the Go of Yocto walnascar (downloads through the module proxy).
yocto-toolchain:
	cd evidence && GOTOOLCHAIN=go1.24.6 $(GO) build ./...
	cd device && GOTOOLCHAIN=go1.24.6 CGO_ENABLED=0 $(GO) build ./...

# Rewrite the rat-agent recipe's gomod:// and license includes and its SRCREV
# (HEAD) from device/go.sum; commit them with the go.sum change (yocto/README.md).
yocto-mods:
	$(GO) run ./yocto/cmd/gomods

# Reproducible source tarball of HEAD with device/vendor/ (for bitbake without gomod://).
yocto-vendor:
	$(GO) run ./yocto/cmd/vendortar -o $(BIN)

# Refuse >1 MiB files and ELF binaries at commit time (a session's submission is size-limited).
hooks:
	install -m 0755 scripts/pre-commit .git/hooks/pre-commit

clean:
	rm -rf $(BIN) demo-out
