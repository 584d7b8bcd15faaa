//! Several nodes as one broker over a real Redis (`--replicator`): what a
//! client publishes on any node, over any transport, reaches matching
//! subscribers on every node once, in order, never its publisher; brokers
//! on different prefixes stay apart; Redis going away stops only
//! cross-node delivery, and the link comes back on its own.

mod support;

use std::time::{Duration, Instant};
use support::{Client, Redis, Server, Transport};

/// How the nodes of a test route messages (`?routing=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Routing {
    All,
    Tag,
}

impl Routing {
    fn url(self, base: &str) -> String {
        match self {
            Routing::All => base.to_string(),
            Routing::Tag => format!("{base}?routing=tag"),
        }
    }
}

/// Runs the test body `$body(routing)` once in each routing.
macro_rules! in_both_routings {
    ($name:ident, $body:ident) => {
        mod $name {
            #[test]
            fn routing_all() {
                super::$body(super::Routing::All);
            }
            #[test]
            fn routing_by_tag() {
                super::$body(super::Routing::Tag);
            }
        }
    };
}

fn node(redis: &Redis, extra: &[&str]) -> Server {
    routed(Routing::All, "async-std", redis, extra)
}

fn routed(routing: Routing, runtime: &str, redis: &Redis, extra: &[&str]) -> Server {
    let url = routing.url(&redis.url());
    let mut args = vec!["--replicator", url.as_str()];
    args.extend_from_slice(extra);
    let server = Server::start_on(runtime, &args);
    wait_for_log(&server, "subscribed");
    server
}

fn wait_for_log(server: &Server, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !server.log().iter().any(|line| line.contains(text)) {
        assert!(
            Instant::now() < deadline,
            "no {text:?} in {:#?}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `subscriber` has `count` deliveries, returning their data.
fn collect(subscriber: &mut Client, count: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < count {
        match subscriber.try_recv(Duration::from_secs(5)) {
            Some(m) if m.command == "publish" => got.push(m.data.unwrap_or_default()),
            Some(m) => panic!("unexpected {m:?}"),
            None => panic!("only {} of {count} came: {got:?}", got.len()),
        }
    }
    got
}

fn nothing_more(client: &mut Client) {
    assert_eq!(client.try_recv(Duration::from_millis(300)), None);
}

in_both_routings!(
    a_publish_on_one_node_reaches_every_node_once_and_never_its_publisher,
    reaches_every_node_once
);
fn reaches_every_node_once(routing: Routing) {
    let Some(redis) = Redis::start() else { return };
    let first = routed(routing, "async-std", &redis, &[]);
    let second = routed(routing, "async-std", &redis, &[]);
    let mut ws = first.client(Transport::Ws);
    ws.subscribe(&["news"]);
    let mut tcp_elsewhere = second.connect();
    tcp_elsewhere.subscribe(&["news"]);
    let mut publisher = second.connect();
    publisher.subscribe(&["news"]);
    let mut other_tag = first.connect();
    other_tag.subscribe(&["sport"]);

    assert_eq!(
        publisher.publish(&["news", "x"], "from tcp"),
        [],
        "never its own"
    );
    assert_eq!(collect(&mut ws, 1), ["from tcp"]);
    assert_eq!(collect(&mut tcp_elsewhere, 1), ["from tcp"]);
    // Over HTTP on the other node.
    let body = br#"{"tags":["news"],"data":"from http"}"#;
    let reply = support::http(first.http(), "POST", "/publish", &[], body);
    assert_eq!(reply.status, 200);
    assert_eq!(collect(&mut ws, 1), ["from http"]);
    assert_eq!(collect(&mut tcp_elsewhere, 1), ["from http"]);
    assert_eq!(collect(&mut publisher, 1), ["from http"]);
    for client in [&mut ws, &mut tcp_elsewhere, &mut publisher, &mut other_tag] {
        nothing_more(client);
    }
    // Each node counts what it sent and what it received from the other.
    let stats = support::http(second.http(), "GET", "/stats", &[], b"").json();
    let link = &stats["replicator"];
    assert_eq!(link["connected"], true, "{stats}");
    assert_eq!(link["sent"], 1, "{stats}");
    assert_eq!(link["received"], 1, "{stats}");
    assert_eq!(stats["remote"], 1, "{stats}");
    let metrics = support::http(first.http(), "GET", "/metrics", &[], b"").body;
    assert!(metrics.contains("mist_replicator_connected 1"), "{metrics}");
    assert!(
        metrics.contains("mist_replicator_sent_total 1"),
        "{metrics}"
    );
    // `who` counts this node's connections only, and says so.
    let mut asker = first.connect();
    asker.send(mist_proto::Request::new("who"));
    let who = asker.recv();
    assert!(who.data.unwrap().ends_with("on this node"));
}

in_both_routings!(each_publishers_order_holds_across_nodes, order_holds);
fn order_holds(routing: Routing) {
    let Some(redis) = Redis::start() else { return };
    let first = routed(routing, "async-std", &redis, &[]);
    let second = routed(routing, "smol", &redis, &[]);
    let mut subscriber = second.connect();
    subscriber.subscribe(&["seq"]);
    let mut publisher = first.connect();
    const N: usize = 2000;
    for i in 0..N {
        publisher.send(
            mist_proto::Request::new("publish")
                .tags(["seq"])
                .data(i.to_string()),
        );
    }
    publisher.sync();
    let got = collect(&mut subscriber, N);
    let want: Vec<String> = (0..N).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
    nothing_more(&mut subscriber);
}

#[test]
fn brokers_on_different_prefixes_stay_apart() {
    let Some(redis) = Redis::start() else { return };
    let chat = format!("{}?prefix=chat", redis.url());
    let games = format!("{}?prefix=games", redis.url());
    let first = Server::start_with(&["--replicator", &chat]);
    let same = Server::start_with(&["--replicator", &chat]);
    let other = Server::start_with(&["--replicator", &games]);
    for server in [&first, &same, &other] {
        wait_for_log(server, "subscribed");
    }
    let mut near = same.connect();
    near.subscribe(&["t"]);
    let mut far = other.connect();
    far.subscribe(&["t"]);
    first.connect().publish(&["t"], "hi");
    assert_eq!(collect(&mut near, 1), ["hi"]);
    nothing_more(&mut far);
}

in_both_routings!(
    redis_going_away_stops_only_cross_node_delivery_until_it_is_back,
    redis_goes_away
);
fn redis_goes_away(routing: Routing) {
    let Some(redis) = Redis::start() else { return };
    let first = routed(routing, "async-std", &redis, &[]);
    let second = routed(routing, "async-std", &redis, &[]);
    let mut local = first.connect();
    local.subscribe(&["t"]);
    let mut remote = second.connect();
    remote.subscribe(&["t"]);
    let mut publisher = first.connect();
    publisher.publish(&["t"], "before");
    assert_eq!(collect(&mut local, 1), ["before"]);
    assert_eq!(collect(&mut remote, 1), ["before"]);

    let port = redis.stop();
    publisher.publish(&["t"], "while down");
    assert_eq!(
        collect(&mut local, 1),
        ["while down"],
        "local delivery goes on"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = support::http(second.http(), "GET", "/stats", &[], b"").json();
        if stats["replicator"]["connected"] == false {
            assert!(stats["replicator"]["last_error"].is_string(), "{stats}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the link still looks up: {stats}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let _redis = Redis::start_on(port).expect("redis-server again");
    // Back within a few seconds: publish until the other node hears one.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        publisher.publish(&["t"], "after");
        assert_eq!(collect(&mut local, 1), ["after"]);
        if let Some(m) = remote.try_recv(Duration::from_millis(500)) {
            if m.data.as_deref() == Some("after") {
                break;
            }
            // What was queued while down may arrive first.
            assert_eq!(m.data.as_deref(), Some("while down"));
        }
        assert!(
            Instant::now() < deadline,
            "the link did not come back: {:#?}",
            second.log()
        );
    }
    let stats = support::http(second.http(), "GET", "/stats", &[], b"").json();
    assert!(
        stats["replicator"]["reconnects"].as_u64().unwrap() >= 1,
        "{stats}"
    );
}

in_both_routings!(
    a_subscription_killed_in_redis_is_made_again,
    killed_subscription
);
fn killed_subscription(routing: Routing) {
    let Some(redis) = Redis::start() else { return };
    let first = routed(routing, "async-std", &redis, &[]);
    let second = routed(routing, "async-std", &redis, &[]);
    let mut remote = second.connect();
    remote.subscribe(&["t"]);
    let killed = redis.cli(&["CLIENT", "KILL", "TYPE", "pubsub"]);
    assert!(killed.trim().parse::<u32>().unwrap_or(0) >= 2, "{killed}");
    let mut publisher = first.connect();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        publisher.publish(&["t"], "again");
        if remote.try_recv(Duration::from_millis(500)).is_some() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not subscribed again: {:#?}",
            second.log()
        );
    }
}

#[test]
fn a_bad_replicator_url_is_refused_at_start_naming_the_problem() {
    for (url, says) in [
        ("tcp://127.0.0.1:1446", "scheme \"tcp\""),
        ("redis://:hunter2@127.0.0.1:x", "port \"x\""),
        ("redis://127.0.0.1?prefix=a b", "prefix"),
        ("redis-cluster://127.0.0.1:7000?db=2", "no databases"),
    ] {
        let out = support::mist()
            .args([
                "--server",
                "--listeners",
                "tcp://127.0.0.1:0",
                "--replicator",
                url,
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains(says), "{url}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

#[test]
fn a_password_and_a_unix_socket_work_and_a_wrong_password_is_reported_without_it() {
    let port = support::free_port();
    let socket = std::env::temp_dir().join(format!("mist-redis-{port}.sock"));
    let socket_text = socket.to_str().unwrap().to_string();
    let Some(_redis) = Redis::start_with(
        port,
        &["--requirepass", "s3cret", "--unixsocket", &socket_text],
    ) else {
        return;
    };
    let over_tcp = format!("redis://:s3cret@127.0.0.1:{port}/2");
    let over_unix = format!("redis+unix://{socket_text}?db=2&password=s3cret");
    let first = Server::start_with(&["--replicator", &over_tcp]);
    let second = Server::start_with(&["--replicator", &over_unix]);
    wait_for_log(&first, "subscribed");
    wait_for_log(&second, "subscribed");
    let mut subscriber = second.connect();
    subscriber.subscribe(&["t"]);
    first
        .connect()
        .publish(&["t"], "through a password and a socket");
    assert_eq!(
        collect(&mut subscriber, 1),
        ["through a password and a socket"]
    );

    // A Redis 6 ACL user with only the rights the README lists.
    redis_cli_acl(port, "mist", "mist");
    let as_user = format!("redis://mist:n0de-pass@127.0.0.1:{port}");
    let third = Server::start_with(&["--replicator", &as_user]);
    wait_for_log(&third, "subscribed");
    let mut on_third = third.connect();
    on_third.subscribe(&["t"]);
    first.connect().publish(&["t"], "to an ACL user's node");
    assert_eq!(collect(&mut on_third, 1), ["to an ACL user's node"]);
    assert_eq!(collect(&mut subscriber, 1), ["to an ACL user's node"]);
    // The same, routing by tag, on a broker of its own.
    redis_cli_acl(port, "lean", "lean");
    let lean = format!("redis://lean:n0de-pass@127.0.0.1:{port}?prefix=lean&routing=tag");
    let (fourth, fifth) = (
        Server::start_with(&["--replicator", &lean]),
        Server::start_with(&["--replicator", &lean]),
    );
    wait_for_log(&fourth, "subscribed");
    wait_for_log(&fifth, "subscribed");
    let mut on_fifth = fifth.connect();
    on_fifth.subscribe(&["t"]);
    fourth.connect().publish(&["t"], "by tag, as an ACL user");
    assert_eq!(collect(&mut on_fifth, 1), ["by tag, as an ACL user"]);

    let wrong = format!("redis://:hunter2@127.0.0.1:{port}");
    let refused = Server::start_with(&["--replicator", &wrong]);
    wait_for_log(&refused, "AUTH refused");
    assert!(refused.log().iter().all(|line| !line.contains("hunter2")));
    let stats = support::http(refused.http(), "GET", "/stats", &[], b"").json();
    assert_eq!(stats["replicator"]["connected"], false, "{stats}");
    assert!(!stats.to_string().contains("hunter2"));
    // Its own clients are served all the same.
    let mut local = refused.connect();
    local.subscribe(&["t"]);
    refused.connect().publish(&["t"], "local");
    assert_eq!(collect(&mut local, 1), ["local"]);
}

/// A "Redis" that answers with what is not RESP, or with a value far too
/// large: the node reports it, keeps trying (not in a hot loop), and its
/// own clients never notice.
#[test]
fn a_redis_that_lies_costs_the_node_nothing_but_the_link() {
    for answer in [
        &b"?not resp at all\r\n"[..],
        b"$99999999999\r\n",
        b"*3\r\n$7\r\nmessage\r\n$4\r\nmist\r\n$9999999\r\nxx",
    ] {
        let fake = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = fake.local_addr().unwrap().port();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connections.clone();
        std::thread::spawn(move || {
            for stream in fake.incoming() {
                let Ok(mut stream) = stream else { return };
                counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let answer = answer.to_vec();
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut buf = [0u8; 1024];
                    let _ = stream.read(&mut buf);
                    let _ = stream.write_all(&answer);
                    std::thread::sleep(Duration::from_secs(30));
                });
            }
        });
        let server = Server::start_with(&["--replicator", &format!("redis://127.0.0.1:{port}")]);
        let mut local = server.connect();
        local.subscribe(&["t"]);
        server.connect().publish(&["t"], "served");
        assert_eq!(collect(&mut local, 1), ["served"]);
        std::thread::sleep(Duration::from_secs(2));
        let stats = support::http(server.http(), "GET", "/stats", &[], b"").json();
        assert_eq!(stats["replicator"]["connected"], false, "{stats}");
        let tries = connections.load(std::sync::atomic::Ordering::Relaxed);
        assert!((2..=40).contains(&tries), "{tries} connections in 2 s");
        assert!(server.rss_kib() < 256 * 1024, "{} KiB", server.rss_kib());
    }
}

in_both_routings!(admin_changes_reach_every_node, admin_changes);
/// Admin changes made on one node take effect on every node: a token
/// registered on one is good on the other (each keeps its tokens in
/// memory), tags taken away end those subscriptions everywhere, and a
/// revoked token's connections close everywhere.
fn admin_changes(routing: Routing) {
    let Some(redis) = Redis::start() else { return };
    let secured = ["--authenticator", "memory://", "--token", "admin-secret"];
    let first = routed(routing, "async-std", &redis, &secured);
    let second = routed(routing, "async-std", &redis, &secured);
    support::register(&first, "admin-secret", "reader", &["news", "sport"]);
    // The change travels: wait until the other node takes the token.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut reader = loop {
        let mut client = second.client_with_token(Transport::Tcp, "reader");
        client.send(mist_proto::Request::new("ping"));
        match client.try_recv(Duration::from_secs(5)) {
            Some(reply) if reply.error.is_none() => break client,
            refused => {
                assert!(
                    Instant::now() < deadline,
                    "the token never reached the other node: {refused:?}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    reader.subscribe(&["news"]);
    reader.subscribe(&["sport"]);
    let mut admin = first.client_with_token(Transport::Tcp, "admin-secret");
    admin.send(
        mist_proto::Request::new("unset")
            .tags(["sport"])
            .data("reader"),
    );
    assert_eq!(admin.sync(), []);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        reader.send(mist_proto::Request::new("list"));
        let list = reader.sync();
        if list.last().and_then(|m| m.data.as_deref()) == Some("news") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sport was not taken away: {list:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    admin.send(mist_proto::Request::new("unregister").data("reader"));
    assert_eq!(admin.sync(), []);
    reader.until_closed();
    assert!(
        second
            .log()
            .iter()
            .chain(first.log().iter())
            .all(|l| !l.contains("admin-secret")),
        "no token in the log"
    );
}

/// A TCP proxy in front of Redis whose connections can be made to go
/// silent (nothing more from Redis, the socket left open), as a
/// subscription that died without its connection closing, or slow (what
/// the node sends waits `delay_ms` before it goes on to Redis).
struct Proxy {
    port: u16,
    silent: std::sync::Arc<std::sync::atomic::AtomicBool>,
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Proxy {
    fn new(upstream: u16) -> Proxy {
        use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let silent = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicUsize::new(0));
        let (flag, count, delay) = (silent.clone(), connections.clone(), delay_ms.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                count.fetch_add(1, Ordering::Relaxed);
                // Only connections made before the silence fall silent.
                let born_silent = flag.load(Ordering::Relaxed);
                let pipe = |mut from: std::net::TcpStream,
                            mut to: std::net::TcpStream,
                            gate: Option<Arc<AtomicBool>>,
                            delay: Option<Arc<AtomicU64>>| {
                    std::thread::spawn(move || {
                        use std::io::{Read, Write};
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            let Ok(n) = from.read(&mut buf) else { return };
                            if n == 0 {
                                return;
                            }
                            if let Some(delay) = &delay {
                                let ms = delay.load(Ordering::Relaxed);
                                std::thread::sleep(Duration::from_millis(ms));
                            }
                            if gate.as_ref().is_some_and(|g| g.load(Ordering::Relaxed))
                                && !born_silent
                            {
                                continue;
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    });
                };
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    None,
                    Some(delay.clone()),
                );
                pipe(server, client, Some(flag.clone()), None);
            }
        });
        Proxy {
            port,
            silent,
            delay_ms,
            connections,
        }
    }
}

#[test]
fn a_subscription_that_goes_silent_is_noticed_and_made_again() {
    use std::sync::atomic::Ordering;
    let Some(redis) = Redis::start() else { return };
    let proxy = Proxy::new(redis.port);
    let through_proxy = format!("redis://127.0.0.1:{}", proxy.port);
    let first = node(&redis, &[]);
    let second = Server::start_with(&["--replicator", &through_proxy]);
    wait_for_log(&second, "subscribed");
    let mut remote = second.connect();
    remote.subscribe(&["t"]);
    let mut publisher = first.connect();
    publisher.publish(&["t"], "before");
    assert_eq!(collect(&mut remote, 1), ["before"]);
    let before = proxy.connections.load(Ordering::Relaxed);
    // Everything Redis sends the second node's open connections is lost
    // from now on, and their sockets stay open.
    proxy.silent.store(true, Ordering::Relaxed);
    let started = Instant::now();
    loop {
        publisher.publish(&["t"], "again");
        if let Some(m) = remote.try_recv(Duration::from_millis(250)) {
            assert_eq!(m.data.as_deref(), Some("again"));
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the silent subscription was never made again: {:#?}",
            second.log()
        );
    }
    assert!(
        proxy.connections.load(Ordering::Relaxed) > before,
        "connected again"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "noticed by silence, not by chance"
    );
}

in_both_routings!(nodes_on_a_redis_cluster_are_one_broker, on_a_cluster);
/// Nodes on a Redis Cluster use sharded pub/sub on the master that owns
/// the channel's slot, whichever seed they were given.
fn on_a_cluster(routing: Routing) {
    let Some(cluster) = support::RedisCluster::start() else {
        return;
    };
    let ports = cluster.ports();
    let url = |seeds: &[u16]| {
        let seeds: Vec<String> = seeds.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        routing.url(&format!("redis-cluster://{}", seeds.join(",")))
    };
    // Each seeded differently: at least two of them must be told where
    // the channel's slot lives.
    let nodes: Vec<Server> = ports
        .iter()
        .map(|&p| Server::start_with(&["--replicator", &url(&[p])]))
        .collect();
    for node in &nodes {
        wait_for_log(node, "subscribed");
    }
    let mut subscribers: Vec<Client> = nodes.iter().map(|n| n.connect()).collect();
    for s in &mut subscribers {
        s.subscribe(&["t"]);
    }
    nodes[0].connect().publish(&["t"], "across the cluster");
    for s in &mut subscribers {
        assert_eq!(collect(s, 1), ["across the cluster"]);
        nothing_more(s);
    }
    // Nobody published with plain PUBLISH: the traffic is sharded.
    assert_eq!(
        cluster_stat(&ports, "pubsub_channels"),
        0,
        "no plain channel"
    );
    // The broker's channel, and routing by tag the anchor's: one slot.
    let channels = match routing {
        Routing::All => 1,
        Routing::Tag => 2,
    };
    assert_eq!(
        cluster_stat(&ports, "pubsubshard_channels"),
        channels,
        "sharded channels"
    );
}

/// The sum over the masters of an `INFO` field.
fn cluster_stat(ports: &[u16], field: &str) -> u64 {
    ports
        .iter()
        .map(|p| {
            let out = std::process::Command::new("redis-cli")
                .args(["-p", &p.to_string(), "INFO", "stats"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .find_map(|l| {
                    l.strip_prefix(&format!("{field}:"))
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0)
        })
        .sum()
}

/// `mist bench --subscribe-host` measures delivery across nodes.
#[test]
fn mist_bench_measures_fan_out_across_nodes() {
    let Some(redis) = Redis::start() else { return };
    let (first, second) = (node(&redis, &[]), node(&redis, &[]));
    let out = support::mist()
        .args(["bench", "--subs", "3", "--msgs", "500", "--size", "64"])
        .args(["--host", &first.addr, "--subscribe-host", &second.addr])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!("subscribers on {}", second.addr)),
        "{text}"
    );
    assert!(text.contains("(0 of 1500 deliveries missing)"), "{text}");
}

/// Adds the ACL user `user` (password `n0de-pass`) with only what the
/// README says a node needs for the broker on `prefix`, to the Redis on
/// `port`, whose default user has the password `s3cret`.
fn redis_cli_acl(port: u16, user: &str, prefix: &str) {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "--no-auth-warning", "-a", "s3cret"])
        .args(["ACL", "SETUSER", user, "on", ">n0de-pass"])
        .arg(format!("&{prefix}"))
        .arg(format!("&{{{prefix}}}:*"))
        .args(["+@pubsub", "+ping", "+cluster|slots"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
}

in_both_routings!(the_seed_table_holds_across_three_nodes, seed_table);
/// The seed README's table, with the subscribers on two nodes over every
/// transport and the publisher on a third.
fn seed_table(routing: Routing) {
    let Some(redis) = Redis::start() else { return };
    let nodes: Vec<Server> = (0..3)
        .map(|_| routed(routing, "async-std", &redis, &[]))
        .collect();
    let sets: [&[&str]; 3] = [
        &["onefish"],
        &["onefish", "twofish"],
        &["onefish", "twofish", "redfish"],
    ];
    let transports = [Transport::Tcp, Transport::Ws, Transport::HttpWs];
    // Each set on both receiving nodes, over each transport.
    let mut subscribers: Vec<(usize, Client)> = Vec::new();
    for (i, tags) in sets.iter().enumerate() {
        for node in &nodes[1..] {
            for transport in transports {
                let mut client = node.client(transport);
                client.subscribe(tags);
                subscribers.push((i, client));
            }
        }
    }
    // And over Server-Sent Events.
    let mut events: Vec<(usize, support::EventStream)> = sets
        .iter()
        .enumerate()
        .map(|(i, tags)| {
            let path = format!("/subscribe?tags={}", tags.join(","));
            (i, support::EventStream::open(nodes[2].http(), &path))
        })
        .collect();
    let mut publisher = nodes[0].client(Transport::Ws);
    for tags in sets {
        publisher.publish(tags, &tags.join("+"));
    }
    let want: [&[&str]; 3] = [
        &["onefish", "onefish+twofish", "onefish+twofish+redfish"],
        &["onefish+twofish", "onefish+twofish+redfish"],
        &["onefish+twofish+redfish"],
    ];
    for (i, client) in &mut subscribers {
        assert_eq!(collect(client, want[*i].len()), want[*i], "set {i}");
        nothing_more(client);
    }
    for (i, stream) in &mut events {
        let got: Vec<String> = (0..want[*i].len())
            .map(|_| stream.next().data.unwrap_or_default())
            .collect();
        assert_eq!(got, want[*i], "set {i} over SSE");
    }
}

/// The channels a Redis has subscribers on now.
fn channels(redis: &Redis) -> Vec<String> {
    let mut channels: Vec<String> = redis
        .cli(&["PUBSUB", "CHANNELS"])
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect();
    channels.sort();
    channels
}

fn stat(server: &Server, pointer: &str) -> u64 {
    let stats = support::http(server.http(), "GET", "/stats", &[], b"").json();
    stats
        .pointer(pointer)
        .and_then(|v| v.as_u64())
        .unwrap_or_else(|| panic!("no {pointer} in {stats}"))
}

/// Routing by tag, a node subscribes to the channel of each subscription's
/// first tag in sorted order while it has one, hears only messages carrying
/// such a tag, and delivers a message it hears on several once.
#[test]
fn routing_by_tag_a_node_hears_only_what_its_subscribers_may_want() {
    let Some(redis) = Redis::start() else { return };
    let first = routed(Routing::Tag, "async-std", &redis, &[]);
    let second = routed(Routing::Tag, "smol", &redis, &["--shards", "2"]);
    let third = routed(Routing::Tag, "async-std", &redis, &[]);
    let mut both = second.connect();
    both.subscribe(&["b", "a"]);
    both.subscribe(&["c"]);
    let mut other_shard = second.connect();
    other_shard.subscribe(&["c", "d"]);
    assert_eq!(
        channels(&redis),
        ["mist", "{mist}:a", "{mist}:c"],
        "the broker's channel and one per anchor"
    );

    let mut publisher = first.connect();
    publisher.publish(&["z"], "nobody");
    publisher.publish(&["b"], "no anchor of theirs");
    publisher.publish(&["a", "b", "c", "d"], "heard twice");
    assert_eq!(collect(&mut both, 1), ["heard twice"]);
    assert_eq!(collect(&mut other_shard, 1), ["heard twice"]);
    nothing_more(&mut both);
    nothing_more(&mut other_shard);
    assert_eq!(stat(&second, "/replicator/received"), 1, "once");
    assert_eq!(stat(&third, "/replicator/received"), 0, "nothing at all");
    assert_eq!(stat(&first, "/replicator/sent"), 3);

    // An anchor's channel goes with its last subscription on the node.
    both.send(mist_proto::Request::new("unsubscribe").tags(["a", "b"]));
    both.sync();
    other_shard.send(mist_proto::Request::new("unsubscribe").tags(["c", "d"]));
    other_shard.sync();
    assert_eq!(channels(&redis), ["mist", "{mist}:c"], "c is still held");
    drop(both);
    let deadline = Instant::now() + Duration::from_secs(10);
    while channels(&redis) != ["mist"] {
        assert!(Instant::now() < deadline, "{:?}", channels(&redis));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Routing by tag, a client's `subscribe` is answered (by a `ping` after
/// it) only once Redis confirmed the anchor's channel, so a message
/// published on another node right after that is not missed, however slow
/// the way to Redis is.
#[test]
fn routing_by_tag_a_subscribe_answered_misses_nothing_published_elsewhere() {
    use std::sync::atomic::Ordering;
    let Some(redis) = Redis::start() else { return };
    let proxy = Proxy::new(redis.port);
    let slow = Routing::Tag.url(&format!("redis://127.0.0.1:{}", proxy.port));
    let first = routed(Routing::Tag, "async-std", &redis, &[]);
    let second = Server::start_with(&["--replicator", &slow]);
    wait_for_log(&second, "subscribed");
    proxy.delay_ms.store(400, Ordering::Relaxed);
    let mut publisher = first.connect();
    let mut kept = Vec::new();
    for round in 0..3 {
        let tag = format!("fresh-{round}");
        let mut subscriber = second.connect();
        let started = Instant::now();
        subscriber.subscribe(&[&tag]);
        assert!(
            started.elapsed() >= Duration::from_millis(400),
            "answered before Redis could have confirmed it"
        );
        publisher.publish(&[&tag], "once");
        assert_eq!(collect(&mut subscriber, 1), ["once"]);
        kept.push(subscriber);
    }
    // An SSE stream starts only once its subscription is heard, too.
    let started = Instant::now();
    let mut events = support::EventStream::open(second.http(), "/subscribe?tags=over-sse");
    assert!(started.elapsed() >= Duration::from_millis(400));
    publisher.publish(&["over-sse"], "once");
    assert_eq!(events.next().data.as_deref(), Some("once"));
    // A second subscription on an anchor already heard is not held.
    let mut again = second.connect();
    let started = Instant::now();
    again.subscribe(&["fresh-0", "more"]);
    assert!(started.elapsed() < Duration::from_millis(400));
}

in_both_routings!(
    a_stalled_client_costs_only_itself_across_nodes,
    stalled_client
);
/// A client on one node that subscribes and never reads loses messages
/// once its outbox is full; its neighbour on that node, reading as it
/// goes, gets every one in order, and the node's link to Redis keeps up.
fn stalled_client(routing: Routing) {
    let Some(redis) = Redis::start() else { return };
    let first = routed(routing, "async-std", &redis, &[]);
    let second = routed(routing, "async-std", &redis, &[]);
    // Subscribed (the pong says so), then never reads again.
    let mut stalled = second.connect();
    stalled.subscribe(&["t"]);
    let mut healthy = second.connect();
    healthy.subscribe(&["t"]);
    // 32 MiB: twice what the stalled client's outbox and socket hold.
    const N: usize = 2000;
    let reader = std::thread::spawn(move || {
        let mut next = 0;
        while next < N {
            let Some(m) = healthy.try_recv(Duration::from_secs(10)) else {
                panic!("only {next} of {N} came");
            };
            let data = m.data.unwrap_or_default();
            let number = data.split(' ').next().unwrap_or_default();
            assert_eq!(number, next.to_string(), "out of order or lost");
            next += 1;
        }
    });
    let mut publisher = first.connect();
    let data = "x".repeat(16 * 1024);
    for i in 0..N {
        publisher.send(
            mist_proto::Request::new("publish")
                .tags(["t"])
                .data(format!("{i} {data}")),
        );
    }
    publisher.sync();
    reader.join().expect("the neighbour got every message");
    assert!(
        stat(&second, "/dropped") > 0,
        "the stalled client lost some"
    );
    assert_eq!(stat(&second, "/replicator/dropped"), 0);
    assert_eq!(stat(&second, "/replicator/reconnects"), 0);
    drop(stalled);
}
