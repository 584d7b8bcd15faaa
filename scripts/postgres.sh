# Sourced by scripts/test.sh: starts a throwaway PostgreSQL cluster for the
# authenticator tests and exports MIST_TEST_POSTGRES=127.0.0.1:PORT (user
# postgres, trust authentication, loopback only). The cluster lives in a
# temporary directory and is stopped and removed when the test run ends.
# Without PostgreSQL, CI (or root) installs Debian's package; elsewhere the
# PostgreSQL tests skip themselves with a notice.

postgres_bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

stop_postgres() {
  if [ -n "${MIST_PG_DIR:-}" ] && [ -d "$MIST_PG_DIR" ]; then
    $MIST_PG_RUN "$(postgres_bindir)/pg_ctl -D $MIST_PG_DIR/data -m immediate stop" >/dev/null 2>&1 || true
    rm -rf "$MIST_PG_DIR"
  fi
}

start_postgres() {
  if [ -z "$(postgres_bindir)" ]; then
    install_for_tests postgresql "the PostgreSQL authenticator tests" || return 0
  fi
  local bindir port
  bindir=$(postgres_bindir)
  MIST_PG_DIR=$(mktemp -d /tmp/mist-pg.XXXXXX)
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  if [ "$(id -u)" = 0 ]; then
    # initdb refuses to run as root: the cluster belongs to the postgres account.
    chown postgres "$MIST_PG_DIR"
    MIST_PG_RUN="runuser -u postgres -- sh -c"
  else
    MIST_PG_RUN="sh -c"
  fi
  trap stop_postgres EXIT
  $MIST_PG_RUN "$bindir/initdb -D $MIST_PG_DIR/data -A trust -U postgres" >"$MIST_PG_DIR.initdb.log" 2>&1 \
    || { cat "$MIST_PG_DIR.initdb.log"; return 1; }
  $MIST_PG_RUN "$bindir/pg_ctl -D $MIST_PG_DIR/data -l $MIST_PG_DIR/server.log -w \
    -o '-p $port -k $MIST_PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off' start" >/dev/null \
    || { cat "$MIST_PG_DIR/server.log"; return 1; }
  rm -f "$MIST_PG_DIR.initdb.log"
  export MIST_TEST_POSTGRES="127.0.0.1:$port"
  echo "== PostgreSQL for the tests on $MIST_TEST_POSTGRES"
}
