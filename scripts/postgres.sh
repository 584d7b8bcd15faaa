# Sourced by scripts/test.sh: starts a throwaway PostgreSQL cluster for the
# authenticator tests and exports MIST_TEST_POSTGRES=127.0.0.1:PORT (user
# postgres, trust authentication, loopback only). The cluster also speaks
# TLS with a certificate for localhost and 127.0.0.1 signed by a throwaway
# CA, whose PEM file is exported as MIST_TEST_POSTGRES_CA. The cluster lives
# in a temporary directory and is stopped and removed when the test run ends.
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

# A throwaway CA and a server certificate for localhost and 127.0.0.1,
# readable by the cluster's account.
make_certificates() {
  local dir=$1
  mkdir -p "$dir"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=mist-test-ca \
    -keyout "$dir/ca.key" -out "$dir/ca.pem" >/dev/null 2>&1 || return 1
  openssl req -newkey rsa:2048 -nodes -subj /CN=localhost \
    -keyout "$dir/server.key" -out "$dir/server.csr" >/dev/null 2>&1 || return 1
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >"$dir/san.ext"
  openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 2 -extfile "$dir/san.ext" -out "$dir/server.pem" >/dev/null 2>&1 || return 1
  chmod 600 "$dir/server.key"
  if [ "$(id -u)" = 0 ]; then chown -R postgres "$dir"; fi
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
  make_certificates "$MIST_PG_DIR/tls" || return 1
  $MIST_PG_RUN "$bindir/pg_ctl -D $MIST_PG_DIR/data -l $MIST_PG_DIR/server.log -w \
    -o '-p $port -k $MIST_PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off \
        -c ssl=on -c ssl_cert_file=$MIST_PG_DIR/tls/server.pem -c ssl_key_file=$MIST_PG_DIR/tls/server.key' start" >/dev/null \
    || { cat "$MIST_PG_DIR/server.log"; return 1; }
  export MIST_TEST_POSTGRES_CA="$MIST_PG_DIR/tls/ca.pem"
  rm -f "$MIST_PG_DIR.initdb.log"
  export MIST_TEST_POSTGRES="127.0.0.1:$port"
  echo "== PostgreSQL for the tests on $MIST_TEST_POSTGRES"
}
