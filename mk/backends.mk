# Reference backends (backends/<name>): build, seed, admin account, targeted tests.
# Each binary reads DATABASE_URL (and its other settings) from the environment; see docs/backends.md.

BACKENDS := users products orders payments

.PHONY: backends seed admin test-backends

backends: ## build the backend services into ./bin
	$(GO) build -o $(BIN)/ $(addprefix ./backends/,$(BACKENDS))

seed: ## restore the original product catalog (products seed; honours DATABASE_URL)
	$(GO) build -o $(BIN)/ ./backends/products
	$(BIN)/products seed

ADMIN_EMAIL    ?= admin@archway.local
ADMIN_PASSWORD ?=
admin: ## create or promote an admin: make admin ADMIN_EMAIL=... ADMIN_PASSWORD=...
	@if [ -z "$(ADMIN_PASSWORD)" ]; then echo "set ADMIN_PASSWORD (at least 8 characters)"; exit 2; fi
	$(GO) build -o $(BIN)/ ./backends/users
	$(BIN)/users create-admin -email "$(ADMIN_EMAIL)" -password "$(ADMIN_PASSWORD)"

test-backends: ## the backends' and test infrastructure's tests only (race, shuffled)
	$(GO) test -race -shuffle=on ./backends/... ./internal/...

# The docs/api.md examples are run with curl by backends/internal/apidocs.
DEPS_TARGETS += backends-deps
.PHONY: backends-deps
backends-deps: ## install curl if missing (runs the docs/api.md examples)
	@if ! command -v curl >/dev/null 2>&1; then \
	  echo "installing: curl"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends curl ca-certificates >/dev/null; \
	fi
