#!/usr/bin/env bash
# Start Debian's PostgreSQL cluster and create the role and database the tests use
# (role livemod / password livemod, may create databases and end its own sessions).
set -euo pipefail
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! pg_lsclusters -h | grep -q .; then
    $SUDO pg_createcluster "$(ls /usr/lib/postgresql | sort -n | tail -1)" main
fi
read -r ver cluster port status _ <<<"$(pg_lsclusters -h | head -1)"
[ "$status" = online ] || $SUDO pg_ctlcluster "$ver" "$cluster" start
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then su postgres -c "$(printf '%q ' "$@")"; else sudo -u postgres "$@"; fi
}
as_pg psql -q -p "$port" -v ON_ERROR_STOP=1 -c "DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'livemod') THEN
    CREATE ROLE livemod LOGIN PASSWORD 'livemod' CREATEDB;
  END IF; END \$\$;"
as_pg psql -q -p "$port" -c "GRANT pg_signal_backend TO livemod;"
as_pg psql -tA -p "$port" -c "SELECT 1 FROM pg_database WHERE datname='livemod_test'" | grep -q 1 \
    || as_pg createdb -p "$port" -O livemod livemod_test
echo "PostgreSQL $ver/$cluster on port $port: role livemod, database livemod_test"
