//! The engine's limits: what one client may cost the server.

use std::time::Duration;

/// Bounds the engine enforces per connection. The defaults suit a general
/// purpose broker; the server exposes every one that a user may need to
/// change as a flag and config key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Bytes a connection's outbox may hold (queued plus being written),
    /// replies and deliveries alike. A publisher whose delivery does not fit
    /// waits for the subscriber's writer (see [`Config::pace_timeout`]); a
    /// delivery to a subscriber judged stalled is dropped. A command whose reply might not fit waits, unapplied, until the client
    /// has read enough. An empty outbox always takes one frame, so a message
    /// or reply larger than the bound still gets through to a reader that
    /// keeps up.
    pub max_outbox_bytes: usize,
    /// Frames a connection's outbox may hold, counted like the bytes.
    pub max_outbox_frames: usize,
    /// Tags one subscription or one published message may carry.
    pub max_tags: usize,
    /// Bytes one tag may have.
    pub max_tag_bytes: usize,
    /// Subscriptions one connection may hold.
    pub max_subscriptions: usize,
    /// What one connection's subscriptions may take in all, counted as the
    /// `subscriptions` array of its `list` reply writes them: each tag as a
    /// JSON string plus a separator (its length plus 3), and 2 per
    /// subscription. Bounds the memory a client's subscriptions pin and the
    /// matching work they can add to every publish.
    pub max_subscription_bytes: usize,
    /// Connections open at once; more are refused. The frontends count
    /// every accepted socket against it too, those still in a handshake or
    /// not yet authenticated included.
    pub max_connections: usize,
    /// Work the engine does for one connection's queued input before it
    /// hands control back ([`crate::Flow::Yield`]), in the engine's own
    /// units (about one unit per subscription examined, tag compared or
    /// delivery queued). One command is never split, so a turn may run over
    /// by one command's work.
    pub work_per_turn: u64,
    /// How long a client that must send `auth` first may take to do so
    /// before it is refused and closed.
    pub auth_timeout: Duration,
    /// Failed authentications one client address may make within
    /// [`Config::auth_failure_window`] before its further attempts are
    /// refused, unchecked, until the window has passed.
    pub max_auth_failures: u32,
    /// The window over which failed authentications are counted.
    pub auth_failure_window: Duration,
    /// How long a publisher waits for a subscriber's full outbox to make room
    /// before that subscriber, if its writer is stuck writing, is judged
    /// stalled: deliveries to it are then dropped, and nobody waits for it
    /// again until its writer takes frames (writes something). A subscriber
    /// whose writer has not taken anything yet is waited for until it does. The engine reads no clock: the frontend times the
    /// wait and reports its end with [`crate::Engine::handle_pace_expired`].
    pub pace_timeout: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_outbox_bytes: 16 * 1024 * 1024,
            max_outbox_frames: 128 * 1024,
            max_tags: 64,
            max_tag_bytes: 256,
            max_subscriptions: 10_000,
            max_subscription_bytes: 1024 * 1024,
            max_connections: 65_536,
            work_per_turn: 64 * 1024,
            auth_timeout: Duration::from_secs(10),
            max_auth_failures: 5,
            auth_failure_window: Duration::from_secs(60),
            pace_timeout: Duration::from_millis(100),
        }
    }
}
