#!/usr/bin/env bash
# Starts this machine's PostgreSQL cluster when it is not running, creates the test role and
# database when missing, and prints their SQLAlchemy URL (the tests read it from
# IMAGERECOGNIZE_TEST_POSTGRES_URL). Needs Debian's postgresql package and root (or the
# postgres user). The role may create databases: each test gets a fresh one.
set -euo pipefail
ROLE=${TEST_POSTGRES_ROLE:-imagerecognize_test}
PASSWORD=${TEST_POSTGRES_PASSWORD:-imagerecognize_test}

read -r version cluster port status _ < <(pg_lsclusters --no-header | head -n 1)
if [[ "$status" != online* ]]; then
    pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start >&2
fi

as_postgres() {
    if [[ "$(id -un)" == postgres ]]; then "$@"; else runuser -u postgres -- "$@"; fi
}
psql_admin() { as_postgres psql --quiet --no-psqlrc --port "$port" -v ON_ERROR_STOP=1 "$@"; }

if [[ -z "$(psql_admin -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$ROLE'")" ]]; then
    psql_admin -c "CREATE ROLE $ROLE LOGIN CREATEDB PASSWORD '$PASSWORD'" >&2
fi
if [[ -z "$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$ROLE'")" ]]; then
    psql_admin -c "CREATE DATABASE $ROLE OWNER $ROLE" >&2
fi
echo "postgresql+psycopg://$ROLE:$PASSWORD@127.0.0.1:$port/$ROLE"
