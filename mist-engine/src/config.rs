//! The engine's limits: what one client may cost the server.

/// Bounds the engine enforces per connection. The defaults suit a general
/// purpose broker; every one can be changed from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Bytes a connection's outbox may hold (queued plus being written) before
    /// deliveries to it are dropped. A delivery to an empty outbox is always
    /// accepted, so any message that passed the line limit can be delivered.
    pub max_outbox_bytes: usize,
    /// Frames a connection's outbox may hold before deliveries are dropped.
    pub max_outbox_frames: usize,
    /// Tags one subscription or one published message may carry.
    pub max_tags: usize,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// Connections open at once; more are refused.
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_outbox_bytes: 16 * 1024 * 1024,
            max_outbox_frames: 128 * 1024,
            max_tags: 64,
            max_subscriptions: 10_000,
            max_connections: 65_536,
        }
    }
}
