#!/usr/bin/env bash
# TLS against plain TCP on the same server: `mist bench` fan-out to 100
# subscribers and 2 and 8 publisher/subscriber pairs, over a tcp:// and a
# tls:// listener of one mist in alternating runs, ROUNDS each (default 3);
# prints the medians and TLS as a fraction of plain. The client encrypts
# and decrypts too, on the same machine. Two layouts: "shared" lets server
# and client share every core (the fraction then includes the client's own
# TLS cost); "pinned" runs the server on CPU 0 and the client on CPU 1
# (taskset), so each side's cost stays its own.
#   scripts/bench-tls.sh [ROUNDS]      (needs openssl, to make a throwaway CA, and taskset)
# Environment: MIST_BENCH_RUNTIMES (default "async-std smol").
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
runtimes=${MIST_BENCH_RUNTIMES:-async-std smol}
cargo build --release --locked --quiet
MIST=target/release/mist

dir=$(mktemp -d)
trap 'rm -rf "$dir"; kill "${server:-}" 2>/dev/null || true' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 2 -subj /CN=bench-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout "$dir/server.key" -out "$dir/server.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$dir/ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
  -CAcreateserial -out "$dir/server.pem" -days 2 -extfile "$dir/ext" 2>/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# name|mist bench arguments
scenarios=(
  "fanout-100|--mode fanout --subs 100 --msgs 50000 --size 128"
  "pairs-2|--mode pairs --pairs 2 --msgs 500000 --size 128"
  "pairs-8|--mode pairs --pairs 8 --msgs 200000 --size 128"
)
results="$dir/results"
for round in $(seq "$rounds"); do
  for layout in shared pinned; do
    if [ "$layout" = pinned ]; then on_server=(taskset -c 0); on_client=(taskset -c 1); else on_server=(); on_client=(); fi
    for runtime in $runtimes; do
      plain=$(free_port); tls=$(free_port)
      "${on_server[@]}" "$MIST" --server --runtime "$runtime" --log-level error \
        --listeners "tcp://127.0.0.1:$plain,tls://127.0.0.1:$tls" \
        --tls-cert "$dir/server.pem" --tls-key "$dir/server.key" & server=$!
      sleep 0.5
      for s in "${scenarios[@]}"; do
        name=${s%%|*}
        args=${s#*|}
        for how in plain tls; do
          if [ "$how" = plain ]; then host=(--host "127.0.0.1:$plain"); else host=(--host "127.0.0.1:$tls" --tls-ca "$dir/ca.pem"); fi
          # shellcheck disable=SC2086
          rate=$("${on_client[@]}" "$MIST" bench $args "${host[@]}" | awk '/^delivered/ {print $(NF-1)}')
          echo "$layout|$runtime|$name|$how|$rate" >>"$results"
        done
      done
      kill "$server"; wait "$server" 2>/dev/null || true
      echo "round $round: $layout $runtime done" >&2
    done
  done
done

python3 - "$results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    layout, runtime, name, how, rate = line.strip().split("|")
    rows.setdefault((layout, runtime, name), {}).setdefault(how, []).append(float(rate or 0))
print(f"{'layout':<7} {'runtime':<10} {'scenario':<11} {'plain M/s':>10} {'tls M/s':>10} {'tls/plain':>10}")
for (layout, runtime, name), by in rows.items():
    plain = statistics.median(by["plain"]); tls = statistics.median(by["tls"])
    print(f"{layout:<7} {runtime:<10} {name:<11} {plain/1e6:>10.2f} {tls/1e6:>10.2f} {tls/plain if plain else float('nan'):>10.2f}")
PY
