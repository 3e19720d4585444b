# Services the arena tests need in CI, sourced by .ci/run: PostgreSQL 15 (Debian's packages)
# on a throwaway data folder started as the postgres user, and Debian's chromium +
# chromium-driver. Exports PREFKIT_TEST_POSTGRES (the URL the tests read) and
# PREFKIT_REQUIRE_ARENA_SERVICES=1 (the arena tests then fail instead of skipping); exits
# the calling script with an error if either service cannot be provided.
#   source tests/arena/ci_services.sh
_arena_fail() { echo "arena CI: $*" >&2; exit 1; }
_arena_pgbin=/usr/lib/postgresql/15/bin
_arena_need=()
[ -x "$_arena_pgbin/initdb" ] || _arena_need+=(postgresql-15)
command -v chromium >/dev/null 2>&1 || _arena_need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || _arena_need+=(chromium-driver)
if [ ${#_arena_need[@]} -gt 0 ]; then
    echo "arena CI: installing ${_arena_need[*]}" >&2
    apt-get update -qq || _arena_fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${_arena_need[@]}" >/dev/null \
        || _arena_fail "apt-get install ${_arena_need[*]} failed"
fi
[ -x "$_arena_pgbin/initdb" ] || _arena_fail "PostgreSQL 15 binaries missing after install"
command -v chromium >/dev/null && command -v chromedriver >/dev/null \
    || _arena_fail "chromium/chromedriver missing after install"
_arena_port="${PREFKIT_TEST_POSTGRES_PORT:-55432}"
# a port something else already listens on (an earlier run's server) is skipped
while (echo >"/dev/tcp/127.0.0.1/$_arena_port") 2>/dev/null; do
    _arena_port=$((_arena_port + 1))
    [ "$_arena_port" -lt 55532 ] || _arena_fail "no free port for PostgreSQL near 55432"
done
_arena_data="$(mktemp -d /tmp/prefkit-pg.XXXXXX)"
chown postgres "$_arena_data" || _arena_fail "cannot hand $_arena_data to the postgres user"
su postgres -s /bin/sh -c "$_arena_pgbin/initdb -D $_arena_data -U postgres --auth=trust -E UTF8 >/dev/null" \
    || _arena_fail "initdb failed"
su postgres -s /bin/sh -c "$_arena_pgbin/pg_ctl -D $_arena_data -o '-p $_arena_port -k /tmp -c listen_addresses=127.0.0.1' -l $_arena_data/log -w start >/dev/null" \
    || _arena_fail "PostgreSQL did not start (log: $_arena_data/log)"
# stopped (and its folder removed) when the calling script exits, however it exits
_arena_stop() {
    su postgres -s /bin/sh -c "$_arena_pgbin/pg_ctl -D $_arena_data -m fast -w stop" >/dev/null 2>&1 || true
    rm -rf "$_arena_data"
}
trap _arena_stop EXIT
export PREFKIT_TEST_POSTGRES="postgresql://postgres@127.0.0.1:$_arena_port/postgres"
export PREFKIT_REQUIRE_ARENA_SERVICES=1
echo "arena CI: PostgreSQL 15 at $PREFKIT_TEST_POSTGRES (data $_arena_data); chromium $(chromium --version 2>/dev/null | head -1)" >&2
