# System packages from Debian that the tests use as real components. Installed only when missing;
# apt-get update runs at most once per `make deps`.

# binary:package pairs
SYSTEM_BINARIES := redis-server:redis-server nginx:nginx-light wrk:wrk promtool:prometheus \
                   chromium:chromium chromedriver:chromium-driver
PG_BINDIR ?= $(firstword $(wildcard /usr/lib/postgresql/*/bin))

DEPS_TARGETS += system-deps

.PHONY: system-deps
system-deps: ## install missing Debian packages (redis, nginx, wrk, promtool, chromium, postgresql)
	@missing=""; \
	for pair in $(SYSTEM_BINARIES); do \
	  b=$${pair%%:*}; p=$${pair##*:}; \
	  command -v $$b >/dev/null 2>&1 || [ -x /usr/sbin/$$b ] || missing="$$missing $$p"; \
	done; \
	if [ -z "$(PG_BINDIR)" ] || [ ! -x "$(PG_BINDIR)/initdb" ]; then missing="$$missing postgresql"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
