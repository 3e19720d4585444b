#!/usr/bin/env bash
# Services the arena tests need in CI: PostgreSQL 15 (Debian's packages) on a throwaway data
# folder, and Debian's chromium + chromium-driver. Source it: it exports PREFKIT_TEST_POSTGRES
# (the connection URL the tests read) and fails loudly if either cannot be provided.
#   source tests/arena/ci_services.sh
set -euo pipefail
_pg_bin() { ls -d /usr/lib/postgresql/15/bin 2>/dev/null || true; }
_need=()
[ -n "$(_pg_bin)" ] || _need+=(postgresql-15)
command -v chromium >/dev/null 2>&1 || _need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || _need+=(chromium-driver)
if [ ${#_need[@]} -gt 0 ]; then
    echo "arena CI: installing ${_need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${_need[@]}" >/dev/null
fi
PGBIN="$(_pg_bin)"
[ -x "$PGBIN/initdb" ] || { echo "arena CI: PostgreSQL 15 binaries missing after install" >&2; exit 1; }
command -v chromium >/dev/null && command -v chromedriver >/dev/null \
    || { echo "arena CI: chromium/chromedriver missing after install" >&2; exit 1; }
PGPORT="${PREFKIT_TEST_POSTGRES_PORT:-55432}"
PGDATA="$(mktemp -d /tmp/prefkit-pg.XXXXXX)"
chown postgres "$PGDATA"
su postgres -s /bin/sh -c "$PGBIN/initdb -D $PGDATA -U postgres --auth=trust -E UTF8 >/dev/null"
su postgres -s /bin/sh -c "$PGBIN/pg_ctl -D $PGDATA -o '-p $PGPORT -k /tmp -c listen_addresses=127.0.0.1' -l $PGDATA/log -w start >/dev/null"
export PREFKIT_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$PGPORT/postgres"
echo "arena CI: PostgreSQL 15 at $PREFKIT_TEST_POSTGRES (data $PGDATA)" >&2
set +euo pipefail
