# The React storefront in storefront/, built with Vite and served by the gateway from
# storefront/dist. Node.js and npm come with the machine; Chromium (for the browser tests) is
# installed by system-deps. See storefront/README.md.

NPM            ?= npm
SF             := storefront
SF_STAMP_DEPS  := $(SF)/node_modules/.package-lock.json
# Everything the production bundle is built from: a change to any of these rebuilds it, and
# nothing else does (the build is a no-op otherwise).
SF_SOURCES     := $(shell find $(SF)/src $(SF)/public -type f 2>/dev/null) \
                  $(SF)/index.html $(SF)/vite.config.ts $(SF)/tsconfig.json $(SF)/package.json $(SF)/package-lock.json

DEPS_TARGETS += storefront-deps
RUN_PREREQS  += storefront-build
# The Go suite starts the whole stack, whose gateway serves storefront/dist.
TEST_GO_PREREQS += storefront-build
TEST_TARGETS += storefront-test

.PHONY: storefront-deps storefront-build storefront-test storefront-e2e storefront-dev storefront-screenshot

# npm writes node_modules/.package-lock.json on every install: it is the stamp that the
# installed tree matches the lock file.
$(SF_STAMP_DEPS): $(SF)/package.json $(SF)/package-lock.json
	cd $(SF) && $(NPM) ci --no-audit --no-fund --loglevel=error
	@touch $@

storefront-deps: $(SF_STAMP_DEPS) ## install the storefront's npm packages (npm ci; idempotent)

$(SF)/dist/index.html: $(SF_SOURCES) $(SF_STAMP_DEPS)
	cd $(SF) && $(NPM) run --silent build
	@touch $@

storefront-build: $(SF)/dist/index.html ## type-check and build storefront/dist when its sources changed

storefront-test: $(SF_STAMP_DEPS) $(SF)/dist/index.html ## storefront component tests (Vitest), bundle size budget, browser UI check
	cd $(SF) && npx --no-install vitest run
	cd $(SF) && node scripts/check-size.mjs
	cd $(SF) && node browser/ui-check.mjs

storefront-screenshot: $(SF_STAMP_DEPS) $(SF)/dist/index.html ## regenerate docs/img/storefront.png (the README picture)
	cd $(SF) && node browser/ui-check.mjs --readme

# Buys a product in headless Chromium against the running stack (gateway + backends); see
# storefront/README.md for what it needs. STOREFRONT_E2E_URL points it at a running gateway.
storefront-e2e: $(SF_STAMP_DEPS) $(SF)/dist/index.html ## browser end-to-end test against the whole stack
	cd $(SF) && node browser/e2e.mjs

storefront-dev: $(SF_STAMP_DEPS) ## Vite dev server on :5173, /api proxied to the gateway on :8080
	cd $(SF) && $(NPM) run dev
