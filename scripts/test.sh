#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it: formatting, lints, every unit,
# property, fuzz-regression and end-to-end test, and a build of the fuzz target.
# It starts what the tests need: Chromium for the browser test, a
# throwaway PostgreSQL cluster for the PostgreSQL authenticator, and
# redis-server (each replication test starts its own).
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs a Debian package the tests need, in CI or wherever we are root;
# elsewhere says which tests will skip themselves. Fails (1) when it did not
# install.
install_for_tests() {
  if [ -n "${CI:-}" ] || [ "$(id -u)" = 0 ]; then
    echo "== installing $1 for $2"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "$1" >/dev/null
  else
    echo "NOTICE: $1 not found; $2 will be skipped (apt-get install $1)"
    return 1
  fi
}

# The replication tests start their own redis-server; CI must run them.
if ! command -v redis-server >/dev/null 2>&1; then
  install_for_tests redis-server "the replication tests" || true
fi

# The TLS tests talk to the server with curl (https, SSE) and openssl
# s_client (tls://), as users do; CI must run them.
if ! command -v curl >/dev/null 2>&1; then
  install_for_tests curl "the TLS tests' curl part" || true
fi

# The browser test needs Chromium; CI must run it.
if ! command -v chromium >/dev/null 2>&1; then
  install_for_tests chromium "the browser test" || true
fi

echo "== cargo fmt --check"
cargo fmt --all --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== rustdoc: every link resolves"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

echo "== the smol frontend's dependency tree has no async-std"
if cargo tree --locked -p mist-smol -e normal --prefix none | grep -q '^async-std '; then
  echo "async-std found in mist-smol's dependency tree" >&2
  exit 1
fi

echo "== the fuzz target still builds"
cargo check --manifest-path fuzz/Cargo.toml --locked --quiet

# The PostgreSQL authenticator is tested against a real server, over TLS
# too, with certificates made by openssl; the TLS tests use openssl
# s_client, and the browser test openssl to fingerprint a certificate.
if ! command -v openssl >/dev/null 2>&1; then
  install_for_tests openssl "the PostgreSQL TLS test, the TLS tests' openssl part and the browser test" || true
fi
source scripts/postgres.sh
start_postgres

echo "== cargo test"
cargo test --workspace --locked
