# testssl.sh, the TLS scanner the suite runs once against a TLS listener with default settings
# (gateway/listener/testssl_e2e_test.go). Debian names the binary testssl. Installed only when
# missing.

DEPS_TARGETS += tls-deps

.PHONY: tls-deps
tls-deps: ## install testssl.sh (Debian package) when missing
	@if ! command -v testssl >/dev/null 2>&1 && ! command -v testssl.sh >/dev/null 2>&1; then \
	  echo "installing: testssl.sh"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends testssl.sh >/dev/null; \
	fi
