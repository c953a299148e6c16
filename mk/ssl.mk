# A certificate for `docker compose up` on a machine without a real one: a local CA and a
# certificate for localhost (and 127.0.0.1) it signs, in ./ssl, which compose mounts into the
# gateways (ssl/README.md). Kept when present; `rm ssl/*.crt ssl/*.key` to make new ones.

SSL_DIR ?= ssl

.PHONY: ssl-dev
ssl-dev: ## write a local CA and a localhost certificate into ./ssl for compose (kept when present)
	@if [ -f $(SSL_DIR)/tls.crt ] && [ -f $(SSL_DIR)/tls.key ]; then \
	  echo "$(SSL_DIR)/tls.crt and tls.key exist; keeping them"; exit 0; \
	fi; \
	set -e; mkdir -p $(SSL_DIR); cd $(SSL_DIR); \
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
	  -subj "/CN=Archway local CA" -addext "basicConstraints=critical,CA:TRUE" \
	  -addext "keyUsage=critical,keyCertSign,cRLSign" -keyout ca.key -out ca.crt 2>/dev/null; \
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
	  -keyout tls.key -out tls.csr 2>/dev/null; \
	printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n' > tls.ext; \
	openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 397 \
	  -extfile tls.ext -out tls.crt 2>/dev/null; \
	rm -f tls.csr tls.ext ca.srl; \
	chmod 600 ca.key; \
	chmod 644 tls.key; \
	echo "wrote $(SSL_DIR)/tls.crt and tls.key (localhost, signed by $(SSL_DIR)/ca.crt);"; \
	echo "the key is world-readable so the gateway's user 65532 can read it: for development only"; \
	echo "try: curl --cacert $(SSL_DIR)/ca.crt https://localhost/health"
