#!/usr/bin/env bash
# One database per service, each owned by a role of the same name that only it can use. The
# postgres image runs this once, on the first start of an empty data directory
# (/docker-entrypoint-initdb.d); it is idempotent, so running it again by hand is safe:
#
#   docker compose exec postgres bash /docker-entrypoint-initdb.d/10-archway.sh
#
# The password of role <service> is read from $SECRETS_DIR/<service>_db_password (compose
# secrets, default /run/secrets). psql's own connection settings apply (PGHOST, PGPORT, ...).
set -euo pipefail

SECRETS_DIR=${SECRETS_DIR:-/run/secrets}
SERVICES=${ARCHWAY_DATABASES:-users products orders payments}

for svc in $SERVICES; do
  secret="$SECRETS_DIR/${svc}_db_password"
  if [ ! -s "$secret" ]; then
    echo "init-databases: $secret is missing or empty" >&2
    exit 1
  fi
  password=$(<"$secret")
  psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet \
       --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
       -v name="$svc" -v password="$password" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'name')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'name')\gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'name', :'password')\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'name')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name')\gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'name')\gexec
SELECT format('GRANT ALL ON DATABASE %I TO %I', :'name', :'name')\gexec
SQL
  echo "init-databases: database $svc, owned by role $svc"
done
