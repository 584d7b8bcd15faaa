#!/usr/bin/env bash
# mist-client against pubsub-bench's raw client on the same server: the
# fan-out and pairs scenarios run by pubsub-bench (--proto mist, which
# scans lines for what it needs) and by `mist bench --decode` (a Rust
# program publishing and subscribing through mist-client: every message
# queued with queue_publish, every delivery decoded into a Message), in
# alternating runs on one fresh server per round, ROUNDS each (default 3);
# prints the medians and mist-client as a fraction of the raw client.
#   scripts/bench-client.sh [ROUNDS]
# Environment: MIST_BENCH_RUNTIMES (default "async-std smol").
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
runtimes=${MIST_BENCH_RUNTIMES:-async-std smol}
bench_dir=${PUBSUB_BENCH:-../shared/pubsub-bench}
cargo build --release --locked --quiet
cargo build --release --locked --quiet --manifest-path "$bench_dir/Cargo.toml" --target-dir target/pubsub-bench
B=target/pubsub-bench/release/pubsub-bench
MIST=target/release/mist

results=$(mktemp)
trap 'rm -f "$results"; kill "${server:-}" 2>/dev/null || true' EXIT

# name|the scenario's arguments, as both tools spell them but the first word
scenarios=(
  "fanout-1|fanout --subs 1 --msgs 1000000 --size 128"
  "fanout-10|fanout --subs 10 --msgs 500000 --size 128"
  "fanout-100|fanout --subs 100 --msgs 100000 --size 128"
  "pairs-2|pairs --pairs 2 --msgs 500000 --size 128"
  "pairs-8|pairs --pairs 8 --msgs 200000 --size 128"
)
for round in $(seq "$rounds"); do
  for runtime in $runtimes; do
    port=$($B free-port)
    "$MIST" --server --runtime "$runtime" --log-level error --listeners "tcp://127.0.0.1:$port" & server=$!
    until "$MIST" ping --host "127.0.0.1:$port" >/dev/null 2>&1; do sleep 0.05; done
    for s in "${scenarios[@]}"; do
      name=${s%%|*}
      read -r scenario rest <<<"${s#*|}"
      # shellcheck disable=SC2086
      raw=$($B --proto mist --addr "127.0.0.1:$port" --scenario "$scenario" $rest 2>/dev/null |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["deliver_rate"] if d["loss_pct"] == 0 else 0)')
      # shellcheck disable=SC2086
      client=$("$MIST" bench --host "127.0.0.1:$port" --decode --mode "$scenario" $rest |
        awk '/^delivered/ {rate=$(NF-1)} /^loss/ {lost=($2 != "0.000%")} END {print lost ? 0 : rate}')
      echo "$runtime|$name|$raw|$client" >>"$results"
    done
    kill "$server"; wait "$server" 2>/dev/null || true
    echo "round $round: $runtime done" >&2
  done
done

python3 - "$results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    runtime, name, raw, client = line.strip().split("|")
    by = rows.setdefault((runtime, name), {"raw": [], "client": []})
    by["raw"].append(float(raw or 0)); by["client"].append(float(client or 0))
print("delivered M msg/s, medians; a run with any loss counts as 0")
print(f"{'runtime':<10} {'scenario':<11} {'raw client':>11} {'mist-client':>12} {'ratio':>6}")
for (runtime, name), by in rows.items():
    raw = statistics.median(by["raw"]); client = statistics.median(by["client"])
    ratio = client / raw if raw else float("nan")
    print(f"{runtime:<10} {name:<11} {raw/1e6:>11.2f} {client/1e6:>12.2f} {ratio:>6.2f}")
PY
