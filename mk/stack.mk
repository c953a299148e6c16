# The whole stack (make run lives in the root Makefile): health through the gateway.

GATEWAY_URL ?= http://localhost:8080
# Extra curl options, e.g. CURL_FLAGS="--cacert ssl/ca.crt" for the compose stack's HTTPS.
CURL_FLAGS  ?=

.PHONY: health
health: ## every service's health through the gateway; non-zero exit when one is down
	@fail=0; \
	for s in gateway users products orders payments; do \
	  path=/health/$$s; [ $$s = gateway ] && path=/health; \
	  code=$$(curl -s $(CURL_FLAGS) -o /dev/null -m 5 -w '%{http_code}' $(GATEWAY_URL)$$path || true); \
	  if [ "$$code" = 200 ]; then state=up; else state="DOWN ($$code)"; fail=1; fi; \
	  printf '  %-10s %s\n' $$s "$$state"; \
	done; exit $$fail
