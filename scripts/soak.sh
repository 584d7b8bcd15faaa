#!/usr/bin/env bash
# Soak test: a release build of mist, with authentication, under mixed load
# for MINUTES (default 10): well-behaved publisher/subscriber pairs, churn,
# slow and stalled subscribers and hostile clients (see
# mist-client/examples/soak.rs, which plays them with mist-client).
# Prints the server's RSS over time and the well-behaved clients' loss; exits
# non-zero if a well-behaved client lost a message. Not part of CI.
#   scripts/soak.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
cargo build --release --locked --quiet
cargo build --release --locked --quiet -p mist-client --example soak
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export SOAK_TCP=$(free_port) SOAK_HTTP=$(free_port) SOAK_WS=$(free_port)
export SOAK_TOKEN="soak-admin-$RANDOM$RANDOM"
MIST_TOKEN=$SOAK_TOKEN target/release/mist --server --authenticator memory:// \
  --listeners "tcp://127.0.0.1:$SOAK_TCP,http://127.0.0.1:$SOAK_HTTP,ws://127.0.0.1:$SOAK_WS" \
  --log-level warn 2>/tmp/mist-soak.log &
export SOAK_PID=$!
trap 'kill $SOAK_PID 2>/dev/null || true' EXIT
sleep 1
echo "== soak: mist (pid $SOAK_PID) for $minutes minutes; server log in /tmp/mist-soak.log"
status=0
target/release/examples/soak "$minutes" || status=$?
echo "== server log lines: $(wc -l </tmp/mist-soak.log)"
exit $status
