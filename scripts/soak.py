#!/usr/bin/env python3
"""Soak test for a running mist server: mixed load for a number of minutes.

Run by scripts/soak.sh, which starts the server. Threads play:
  - well-behaved pairs: publishers send numbered messages at a steady rate,
    subscribers read at once and count what is missing (their loss must be 0);
  - churn: clients that connect, subscribe, publish, leave, over and over;
  - slow and stalled subscribers on the busiest tag (their loss is theirs);
  - hostile clients: garbage and overlong lines, floods of `list` never read,
    endless HTTP heads, idle sockets that never authenticate or handshake,
    wrong tokens (from another loopback address, so that the throttle they
    earn does not fall on the well-behaved clients).
Every interval it prints the server's RSS, its sockets and counters, and
the well-behaved clients' loss; at the end, the RSS growth after warm-up.
"""

import json
import os
import random
import socket
import sys
import threading
import time

TCP = ("127.0.0.1", int(os.environ.get("SOAK_TCP", "1445")))
HTTP = ("127.0.0.1", int(os.environ.get("SOAK_HTTP", "8080")))
WS = ("127.0.0.1", int(os.environ.get("SOAK_WS", "8888")))
TOKEN = os.environ["SOAK_TOKEN"]
PID = int(os.environ["SOAK_PID"])
MINUTES = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
INTERVAL = float(os.environ.get("SOAK_INTERVAL", "30"))
stop = threading.Event()
lock = threading.Lock()
totals = {"sent": 0, "received": 0, "missing": 0, "churned": 0, "hostile": 0, "errors": 0}


def add(key, n=1):
    with lock:
        totals[key] += n


def rss_mib():
    with open(f"/proc/{PID}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def stats():
    try:
        s = socket.create_connection(HTTP, timeout=5)
        s.sendall(f"GET /stats HTTP/1.1\r\nHost: soak\r\nX-Auth-Token: {TOKEN}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return json.loads(data.split(b"\r\n\r\n", 1)[1])
    except Exception:
        return {}


def line(obj):
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def client(source=None, token=TOKEN, timeout=10):
    s = socket.socket()
    if source:
        s.bind((source, 0))
    s.settimeout(timeout)
    s.connect(TCP)
    if token is not None:
        s.sendall(line({"command": "auth", "data": token}))
    return s


def sync(s):
    s.sendall(line({"command": "ping"}))
    buf = b""
    while b'"data":"pong"' not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf


def pair(n):
    """A publisher at 500 msg/s and a subscriber that reads at once."""
    tag = f"pair-{n}"
    sub = client()
    sub.sendall(line({"command": "subscribe", "tags": [tag]}))
    sync(sub)
    pub = client()
    sync(pub)
    expected = [0]

    def read():
        buf = b""
        while not stop.is_set():
            try:
                chunk = sub.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                add("errors")
                return
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for raw in lines:
                seq = int(json.loads(raw)["data"])
                if seq > expected[0]:
                    add("missing", seq - expected[0])
                expected[0] = seq + 1
                add("received")

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seq = 0
    while not stop.is_set():
        batch = b"".join(line({"command": "publish", "tags": [tag], "data": str(seq + i)}) for i in range(50))
        pub.sendall(batch)
        seq += 50
        add("sent", 50)
        time.sleep(0.1)
    sync(pub)
    time.sleep(1)


def churn():
    while not stop.is_set():
        try:
            s = client()
            s.sendall(line({"command": "subscribe", "tags": [f"churn-{random.randrange(1000)}", "x"]}))
            s.sendall(line({"command": "publish", "tags": ["busy"], "data": "churn"}))
            sync(s)
            s.close()
            add("churned")
        except Exception:
            add("errors")
            time.sleep(0.1)


def busy_publisher():
    s = client()
    data = "z" * 1024
    while not stop.is_set():
        s.sendall(line({"command": "publish", "tags": ["busy"], "data": data}) * 20)
        sync(s)
        time.sleep(0.01)


def slow_subscriber(pause):
    s = client()
    s.sendall(line({"command": "subscribe", "tags": ["busy"]}))
    while not stop.is_set():
        if pause is None:  # stalled: never reads
            time.sleep(1)
            continue
        try:
            s.recv(4096)
        except socket.timeout:
            pass
        time.sleep(pause)


def hostile():
    attacks = [
        lambda: client().sendall(b"garbage\n{not json}\n" * 100),
        lambda: client().sendall(b'{"command":"publish","tags":["a"],"data":"' + b"x" * 2_000_000),
        lambda: flood_lists(),
        lambda: endless_head(),
        lambda: idle(TCP),
        lambda: idle(WS),
        lambda: idle(HTTP, b"GET /ping HTTP/1.1\r\n"),
        lambda: client(source="127.0.0.2", token="wrong-" + str(random.random())).recv(1024),
        lambda: client(token=None).sendall(b'{"command":"auth","data":"' + b"y" * 100_000),
        lambda: ws_junk(),
    ]
    held = []
    while not stop.is_set():
        try:
            result = random.choice(attacks)()
            if isinstance(result, socket.socket):
                held.append(result)
            add("hostile")
        except Exception:
            pass
        held = held[-200:]
        time.sleep(0.05)


def flood_lists():
    s = client()
    for i in range(50):
        s.sendall(line({"command": "subscribe", "tags": [f"flood-{i}"]}))
    s.settimeout(0.5)
    try:
        s.sendall(line({"command": "list"}) * 5000)
    except Exception:
        pass
    return s


def endless_head():
    s = socket.create_connection(HTTP, timeout=2)
    try:
        s.sendall(b"GET /ping HTTP/1.1\r\nX-Endless: " + b"x" * 1_000_000)
    except Exception:
        pass
    return s


def idle(address, first=b""):
    s = socket.create_connection(address, timeout=2)
    if first:
        s.sendall(first)
    return s


def ws_junk():
    s = socket.create_connection(WS, timeout=2)
    s.sendall(b"GET /subscribe/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nX-Auth-Token: " + TOKEN.encode() + b"\r\n\r\n")
    s.sendall(os.urandom(4096))
    return s


def main():
    threads = [threading.Thread(target=pair, args=(n,), daemon=True) for n in range(4)]
    threads += [threading.Thread(target=churn, daemon=True) for _ in range(2)]
    threads += [threading.Thread(target=busy_publisher, daemon=True)]
    threads += [threading.Thread(target=slow_subscriber, args=(p,), daemon=True) for p in (0.05, 0.5, None, None)]
    threads += [threading.Thread(target=hostile, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    started = time.time()
    samples = []
    print(f"{'min':>5} {'RSS MiB':>8} {'sockets':>7} {'sent':>9} {'received':>9} {'lost':>6} {'churned':>8} {'hostile':>8} {'dropped':>9}")
    while time.time() - started < MINUTES * 60:
        time.sleep(INTERVAL)
        rss = rss_mib()
        elapsed = (time.time() - started) / 60
        if elapsed >= 1:  # after warm-up
            samples.append((elapsed, rss))
        s = stats()
        with lock:
            t = dict(totals)
        print(f"{elapsed:5.1f} {rss:8.1f} {s.get('sockets', '?'):>7} {t['sent']:>9} {t['received']:>9} {t['missing']:>6} {t['churned']:>8} {t['hostile']:>8} {s.get('dropped', '?'):>9}", flush=True)
    stop.set()
    time.sleep(3)
    with lock:
        t = dict(totals)
    loss = 100.0 * t["missing"] / max(1, t["sent"])
    print(f"well-behaved loss: {t['missing']} of {t['sent']} ({loss:.3f} %)")
    if len(samples) >= 2:
        # Least squares: memory that is flat has a slope near zero.
        n = len(samples)
        mx = sum(x for x, _ in samples) / n
        my = sum(y for _, y in samples) / n
        slope = sum((x - mx) * (y - my) for x, y in samples) / sum((x - mx) ** 2 for x, _ in samples)
        low, high = min(y for _, y in samples), max(y for _, y in samples)
        print(f"RSS after warm-up: {low:.0f} to {high:.0f} MiB, trend {slope:+.2f} MiB per minute")
    return 0 if t["missing"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
