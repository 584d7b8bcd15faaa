#!/usr/bin/env bash
# The performance matrix of the README: mist (async-std and smol) against
# nats-server, with ../shared/pubsub-bench, in alternating runs on fresh
# servers, three each; prints one table of medians and ratios.
#   scripts/bench.sh [ROUNDS]          (needs nats-server: apt-get install nats-server)
# The nodes-* scenarios measure two mist nodes over one redis-server (a
# publisher on one, 100 subscribers on the other, with `mist bench
# --subscribe-host`) against redis-server's own pub/sub fan-out to 100
# subscribers (pubsub-bench --proto redis) on a fresh redis-server; they
# need redis-server (apt-get install redis-server).
# Environment: MIST_BENCH_RUNTIMES (default "async-std smol"),
# MIST_BENCH_SCENARIOS (names from the list below, default all),
# MIST_BENCH_ARGS (more server flags, e.g. "--shards 1").
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
runtimes=${MIST_BENCH_RUNTIMES:-async-std smol}
bench_dir=${PUBSUB_BENCH:-../shared/pubsub-bench}

command -v nats-server >/dev/null || { echo "nats-server is needed: apt-get install nats-server" >&2; exit 1; }
cargo build --release --locked --quiet
cargo build --release --locked --quiet --manifest-path "$bench_dir/Cargo.toml" --target-dir target/pubsub-bench
B=target/pubsub-bench/release/pubsub-bench
MIST=target/release/mist

# name|pubsub-bench arguments
scenarios=(
  "fanout-1|--scenario fanout --subs 1 --msgs 2000000 --size 128"
  "fanout-10|--scenario fanout --subs 10 --msgs 500000 --size 128"
  "fanout-100|--scenario fanout --subs 100 --msgs 100000 --size 128"
  "pairs-2|--scenario pairs --pairs 2 --msgs 500000 --size 128"
  "pairs-8|--scenario pairs --pairs 8 --msgs 200000 --size 128"
  "latency|--scenario latency --rate 10000 --duration 5 --size 128"
  "conns|--scenario conns --conns 10000"
  "nodes-100|--subs 100 --msgs 100000 --size 128"
  "nodes-100-tag|--subs 100 --msgs 100000 --size 128"
)
if [ -n "${MIST_BENCH_SCENARIOS:-}" ]; then
  keep=()
  for s in "${scenarios[@]}"; do
    for want in $MIST_BENCH_SCENARIOS; do [ "${s%%|*}" = "$want" ] && keep+=("$s"); done
  done
  scenarios=("${keep[@]}")
fi

results=$(mktemp)
trap 'rm -f "$results"; kill ${server:-} ${redis:-} ${nodes:-} 2>/dev/null || true' EXIT
port=$($B free-port)

# Starts a throwaway redis-server on $rport; sets $redis.
start_redis() {
  rport=$($B free-port)
  redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir /tmp >/dev/null & redis=$!
  until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
}

# One run of a nodes-* scenario for $who (nats stands for redis-server's own
# pub/sub); prints pubsub-bench's JSON line, or the same fields for mist.
nodes_run() {
  local who=$1 name=$2 args=$3 query=""
  [ "$name" = nodes-100-tag ] && query="?routing=tag"
  start_redis
  if [ "$who" = nats ]; then
    # shellcheck disable=SC2086
    $B --proto redis --addr "127.0.0.1:$rport" --scenario fanout $args --server-pid "$redis" --quiet 2>/dev/null || true
  else
    local a b out
    a=$($B free-port); b=$($B free-port)
    nodes=""
    for p in "$a" "$b"; do
      # shellcheck disable=SC2086
      "$MIST" --server --runtime "$who" --listeners "tcp://127.0.0.1:$p" --log-level error \
        --replicator "redis://127.0.0.1:$rport$query" ${MIST_BENCH_ARGS:-} & nodes="$nodes $!"
    done
    sleep 1
    # shellcheck disable=SC2086
    out=$("$MIST" bench --host "127.0.0.1:$a" --subscribe-host "127.0.0.1:$b" $args 2>/dev/null || true)
    # shellcheck disable=SC2086
    kill $nodes 2>/dev/null || true
    # shellcheck disable=SC2086
    wait $nodes 2>/dev/null || true
    nodes=""
    python3 -c '
import json, re, sys
text = sys.stdin.read()
rate = re.search(r"^delivered\s+\d+ msgs in\s+[\d.]+ s\s+([\d.]+) msg/s", text, re.M)
loss = re.search(r"^loss\s+([\d.]+)%", text, re.M)
print(json.dumps({"deliver_rate": float(rate.group(1)) if rate else None,
                  "loss_pct": float(loss.group(1)) if loss else None}))' <<<"$out"
  fi
  kill "$redis" 2>/dev/null || true
  wait "$redis" 2>/dev/null || true
}

for round in $(seq "$rounds"); do
  for s in "${scenarios[@]}"; do
    name=${s%%|*}
    args=${s#*|}
    if [[ $name == nodes-* ]]; then
      command -v redis-server >/dev/null || { echo "skipping $name: redis-server is needed (apt-get install redis-server)" >&2; continue; }
      for who in nats $runtimes; do
        echo "$who|$name|$(nodes_run "$who" "$name" "$args")" >>"$results"
      done
      echo "round $round: $name done" >&2
      continue
    fi
    for who in nats $runtimes; do
      if [ "$who" = nats ]; then
        nats-server -a 127.0.0.1 -p "$port" >/dev/null 2>&1 & server=$!
        proto=nats
      else
        # shellcheck disable=SC2086
        "$MIST" --server --runtime "$who" --listeners "tcp://127.0.0.1:$port" --log-level error ${MIST_BENCH_ARGS:-} & server=$!
        proto=mist
      fi
      sleep 0.5
      # shellcheck disable=SC2086
      line=$($B --proto $proto --addr "127.0.0.1:$port" $args --server-pid "$server" --quiet 2>/dev/null || true)
      kill "$server" 2>/dev/null || true
      wait "$server" 2>/dev/null || true
      echo "$who|$name|$line" >>"$results"
    done
    echo "round $round: $name done" >&2
  done
done

python3 - "$results" "$runtimes" <<'EOF'
import json, statistics, sys
rows = {}
for raw in open(sys.argv[1]):
    who, name, line = raw.rstrip("\n").split("|", 2)
    try:
        d = json.loads(line)
    except ValueError:
        d = {}
    rows.setdefault(name, {}).setdefault(who, []).append(d)
runtimes = sys.argv[2].split()
def med(ds, key):
    vals = [d[key] for d in ds if d.get(key) is not None]
    return statistics.median(vals) if vals else None
print(f"{'scenario':<11} {'metric':<16} {'nats-server':>12} " + " ".join(f"{r:>22}" for r in runtimes))
for name, by in rows.items():
    if name == "latency":
        metrics = [("lat_p50_us", "p50 µs", False), ("lat_p99_us", "p99 µs", False), ("lat_p999_us", "p99.9 µs", False)]
    elif name == "conns":
        metrics = [("connect_s", "connect s", False), ("rss_per_conn_kb", "KB per conn", False)]
    else:
        metrics = [("deliver_rate", "delivered M/s", True)]
    for key, label, higher in metrics:
        base = med(by.get("nats", []), key)
        cells = []
        for r in runtimes:
            v = med(by.get(r, []), key)
            if v is None:
                cells.append(f"{'-':>22}")
                continue
            scale = 1e6 if key == "deliver_rate" else 1
            ratio = (v / base if higher else base / v) if base else float("nan")
            loss = max((d.get("loss_pct") or 0) for d in by.get(r, [])) if key == "deliver_rate" else None
            extra = f" loss≤{loss:.1f}%" if loss else ""
            cells.append(f"{v/scale:>8.2f} ({ratio:.2f}x){extra:>9}")
        shown = f"{base/(1e6 if key == 'deliver_rate' else 1):.2f}" if base else "-"
        print(f"{name:<11} {label:<16} {shown:>12} " + " ".join(cells))
print("ratios: mist over nats-server for rates; nats-server over mist for times, latencies and memory (above 1 is better for mist)")
print("nodes-*: two mist nodes over one redis-server, 1 publisher on one and 100 subscribers on the other (-tag: ?routing=tag);")
print("         the base column there is redis-server's own fan-out to 100 subscribers, not nats-server")
EOF
