# hop — run `make help` for the targets.
GO      ?= go
BIN     ?= bin/hop
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/hop-dev/hop/app.Version=$(VERSION)
FUZZTIME ?= 30s

.DEFAULT_GOAL := help
.PHONY: help build run test fuzz lint bench docker services chromium chaos screenshots

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

build: ## build the static binary into bin/hop
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) .

services: ## make sure local PostgreSQL and Redis are running (starts them if needed)
	@bash scripts/ensure-services.sh

run: build ## run hop on :8080 with its embedded PostgreSQL in ./hop-data (needs PostgreSQL's binaries, no server)
	./$(BIN) serve

chromium: ## make sure headless Chromium is installed for the browser tests (apt-get install chromium if missing)
	@bash scripts/ensure-chromium.sh

test: services chromium ## run every test with the race detector, then each fuzz target briefly (5,000 inputs)
	$(GO) test -race -count=1 ./...
	@$(MAKE) --no-print-directory fuzz FUZZTIME=5000x

screenshots: services chromium ## write docs/screenshots/*.png from a seeded demo instance in headless Chromium
	@mkdir -p docs/screenshots
	HOP_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run '^TestScreenshots$$' -v ./app/

fuzz: ## run each fuzz target for FUZZTIME (default 30s)
	@log=$$(mktemp); trap 'rm -f $$log' EXIT; n=0; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -hoE '^func (Fuzz[A-Za-z0-9_]+)' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    if ! $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg >$$log 2>&1; then \
	      if grep -q "context deadline exceeded" $$log && ! grep -q "Failing input" $$log; then \
	        echo "  (go fuzz coordinator timed out without a failing input; running again)"; \
	        $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg >$$log 2>&1 || { cat $$log; echo "fuzz: $$n passed, 1 failed"; exit 1; }; \
	      else cat $$log; echo "fuzz: $$n passed, 1 failed"; exit 1; fi; \
	    fi; \
	    n=$$((n+1)); \
	  done; \
	done; echo "fuzz: $$n passed, 0 failed"

lint: ## gofmt check (tracked and new files) and go vet
	@out=$$(gofmt -l $$(git ls-files --cached --others --exclude-standard '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench: services build ## micro-benchmarks and the load benchmarks in bench/ (prints figures)
	$(GO) test -run '^$$' -bench . -benchmem -count 3 ./modules/...
	bash bench/run.sh

chaos: ## crash and outage scenarios against real hop processes; CHAOS_FLAGS='-scenarios kill9-noredis -phase 2s' picks and sizes (-list names them)
	$(GO) run ./chaos -root . $(CHAOS_FLAGS)

docker: ## build the container image hop:$(VERSION)
	docker build -t hop:$(VERSION) --build-arg VERSION=$(VERSION) .
