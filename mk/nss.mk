# certutil (Debian's libnss3-tools): the storefront's browser test serves HTTPS with a test CA and
# adds that CA to a throwaway NSS database, the trust store Chromium reads on Linux
# (internal/stack/stack_e2e_test.go). Installed only when missing.

DEPS_TARGETS += nss-deps

.PHONY: nss-deps
nss-deps: ## install certutil (libnss3-tools) when missing
	@if ! command -v certutil >/dev/null 2>&1; then \
	  echo "installing: libnss3-tools"; \
	  if [ "$$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends libnss3-tools >/dev/null; \
	fi
