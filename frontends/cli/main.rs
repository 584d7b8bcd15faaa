//! The `mist` command: `mist --server` runs a broker; the subcommands are a
//! client for a running one, and `mist bench` is its load generator.
//!
//! Exit status: 0 on success, 1 when the server or the command failed (the
//! reason is printed on stderr), 2 for a usage error such as a bad flag value.

mod bench;
mod client;
mod reload;
mod server;
mod settings;
mod token;

use argh::FromArgs;
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

/// Where the client subcommands connect unless told otherwise.
const DEFAULT_HOST: &str = "127.0.0.1:1445";

fn default_host() -> String {
    DEFAULT_HOST.to_string()
}

#[derive(FromArgs)]
/// mist: a tag-based publish/subscribe broker. `mist --server` starts one;
/// the subcommands talk to a running server.
struct Cli {
    /// run mist as a server
    #[argh(switch)]
    server: bool,

    /// listener URI to serve, repeatable or comma-separated
    /// (default: tcp://127.0.0.1:1445,http://127.0.0.1:8080,ws://127.0.0.1:8888;
    /// schemes the runtime does not serve are skipped with an error)
    #[argh(option)]
    listeners: Vec<String>,

    /// path to a YAML config file; flags given here override it
    #[argh(option)]
    config: Option<String>,

    /// async runtime: async-std or smol; both serve every listener
    /// (default: async-std)
    #[argh(option)]
    runtime: Option<String>,

    /// shards the broker runs in, each with its own connections and lock,
    /// so that as many cores can deliver messages at once; 1 to 64
    /// (default: the number of cores)
    #[argh(option)]
    shards: Option<usize>,

    /// origin whose web pages may use the broker (WebSocket, SSE, HTTP),
    /// besides the server's own; repeatable; '*' allows any
    /// (default: none, only the server's own)
    #[argh(option)]
    cors_origin: Vec<String>,

    /// seconds between keepalive comments on an idle SSE stream, which is
    /// also how soon a departed SSE client is noticed (default: 15)
    #[argh(option)]
    sse_keepalive: Option<u64>,

    /// where tokens are kept, enabling authentication: memory://,
    /// scribble://?db=DIR or postgres://user@host:port?db=NAME; or
    /// jwt://?key=PATH for signed tokens, which are not kept
    /// (default: none, an open server)
    #[argh(option)]
    authenticator: Option<String>,

    /// the server token, required with a token store (optional with
    /// jwt://): clients that present it are the admin. Prefer the MIST_TOKEN environment variable
    /// or the config file: a flag shows in the process list
    #[argh(option)]
    token: Option<String>,

    /// seconds without traffic before TCP keepalive probes a client; one
    /// that stops answering is closed (0 turns it off; default: 60)
    #[argh(option)]
    keepalive: Option<u64>,

    /// seconds between server pings to WebSocket clients; one that sends
    /// nothing, not even the pong, for twice that long is closed (0 turns it
    /// off; default: 30)
    #[argh(option)]
    ws_keepalive: Option<u64>,

    /// run as one node of a broker of several, over Redis pub/sub:
    /// redis://:PASSWORD@HOST:PORT/DB (password, port and db optional),
    /// redis+unix:///PATH, or redis-cluster://HOST:PORT,HOST:PORT for a
    /// Redis Cluster; add
    /// ?prefix=NAME to keep brokers on one Redis apart (default: none, a
    /// single node)
    #[argh(option)]
    replicator: Option<String>,

    /// PEM certificate chain for the tls://, wss:// and https:// listeners
    #[argh(option)]
    tls_cert: Option<String>,

    /// PEM private key of --tls-cert
    #[argh(option)]
    tls_key: Option<String>,

    /// PEM CA certificates: only clients presenting a certificate signed by
    /// one of them get in on the TLS listeners (mutual TLS)
    #[argh(option)]
    tls_client_ca: Option<String>,

    /// seconds to let connections flush what is queued for them after
    /// SIGINT or SIGTERM before exiting (default: 10)
    #[argh(option)]
    shutdown_grace: Option<u64>,

    /// log level: trace, debug, info, warn or error (default: info)
    #[argh(option)]
    log_level: Option<String>,

    /// longest line a client may send, in bytes (default: 1048576)
    #[argh(option)]
    max_line: Option<usize>,

    /// bytes queued for one client before new messages to it are dropped
    /// (default: 16777216)
    #[argh(option)]
    max_outbox_bytes: Option<usize>,

    /// messages queued for one client before new messages to it are dropped
    /// (default: 131072)
    #[argh(option)]
    max_outbox_frames: Option<usize>,

    /// most tags in one subscription or one published message (default: 64)
    #[argh(option)]
    max_tags: Option<usize>,

    /// most bytes in one tag (default: 256)
    #[argh(option)]
    max_tag_bytes: Option<usize>,

    /// most bytes one connection's subscriptions may take in all, each tag
    /// counting its length plus 3 (default: 1048576)
    #[argh(option)]
    max_subscription_bytes: Option<usize>,

    /// most subscriptions one connection may hold (default: 10000)
    #[argh(option)]
    max_subscriptions: Option<usize>,

    /// most connections open at once, of every transport; more are
    /// refused (default: 65536)
    #[argh(option)]
    max_connections: Option<usize>,

    /// seconds a TCP client of a server with authentication has to send
    /// its auth line before it is closed (default: 10)
    #[argh(option)]
    auth_timeout: Option<u64>,

    /// milliseconds a publisher waits for a subscriber whose outbox is full
    /// before that subscriber is judged stalled and loses messages
    /// (default: 100)
    #[argh(option)]
    pace_timeout_ms: Option<u64>,

    /// seconds a client of a ws:// listener has to finish its WebSocket
    /// handshake, and a client of a TLS listener its TLS handshake
    /// (default: 10)
    #[argh(option)]
    handshake_timeout: Option<u64>,

    /// seconds an HTTP client has to send a request head; also how long an
    /// idle keep-alive connection is kept (default: 10)
    #[argh(option)]
    header_timeout: Option<u64>,

    /// seconds an HTTP client has to send a request body (default: 10)
    #[argh(option)]
    body_timeout: Option<u64>,

    /// display the version of mist
    #[argh(switch, short = 'v')]
    version: bool,

    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum Command {
    Ping(client::Ping),
    Publish(client::Publish),
    Subscribe(client::Subscribe),
    Unsubscribe(client::Unsubscribe),
    List(client::List),
    Who(client::Who),
    Listall(client::Listall),
    Bench(bench::Bench),
    Token(token::Token),
}

fn main() -> ExitCode {
    let cli: Cli = argh::from_env();
    if cli.version {
        println!("mist {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let result = match (&cli.command, cli.server) {
        (Some(_), true) => Err(Failure::Usage(
            "--server runs a server; it cannot be combined with a client subcommand".into(),
        )),
        (None, true) => server::run(&cli),
        (Some(Command::Ping(cmd)), false) => client::ping(cmd),
        (Some(Command::Publish(cmd)), false) => client::publish(cmd),
        (Some(Command::Subscribe(cmd)), false) => client::subscribe(cmd),
        (Some(Command::Unsubscribe(cmd)), false) => client::unsubscribe(cmd),
        (Some(Command::List(cmd)), false) => client::list(cmd),
        (Some(Command::Who(cmd)), false) => client::who(cmd),
        (Some(Command::Listall(cmd)), false) => client::listall(cmd),
        (Some(Command::Bench(cmd)), false) => bench::run(cmd),
        (Some(Command::Token(cmd)), false) => token::run(cmd),
        (None, false) => Err(Failure::Usage(
            "nothing to do: run `mist --server` to start a server, or `mist --help`".into(),
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("mist: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(message)) => {
            eprintln!("mist: {message}");
            ExitCode::from(1)
        }
    }
}

/// How a command failed, which decides the exit status.
#[derive(Debug)]
pub enum Failure {
    /// The command line was wrong (exit 2).
    Usage(String),
    /// The command ran and failed (exit 1).
    Failed(String),
}

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::Failed(e.to_string())
    }
}

/// Splits a `--tags a,b` value into tags.
fn split_tags(tags: &str) -> Vec<String> {
    tags.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect()
}
