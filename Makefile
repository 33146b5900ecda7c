# feedgate — build and test.
#   make test    installs what the tests need (redis-server, node and the npm
#                packages of the test folders, chromium) when missing, then
#                checks formatting, runs go vet and the whole suite with -race.
#   make run     runs the gateway on :8080 with the embedded store.
#   make bench   runs the Go benchmarks (see BENCHMARKS.md for the load runs).

GO      ?= go
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PKGS    := ./...

.PHONY: test deps fmt-check vet unit browser run build bench

test: deps fmt-check vet unit browser

deps:
	@command -v redis-server >/dev/null 2>&1 || { \
		echo "installing redis-server (apt-get)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null; }
	@redis-server --version
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { \
		echo "installing nodejs and npm (apt-get)"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nodejs npm >/dev/null; }
	@[ -d hub/testdata/websub-subscriber/node_modules/pubsubhubbub ] || \
		npm ci --no-audit --no-fund --loglevel=error --prefix hub/testdata/websub-subscriber

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

# Browser tests: headless Chromium against a real gateway (installs chromium
# and the npm packages of web/e2e when missing).
browser:
	bash web/e2e/run.sh

run:
	$(GO) run ./cmd/gateway

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o gateway ./cmd/gateway

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)
