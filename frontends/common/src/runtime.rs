//! What a runtime frontend lends the shared code: spawning and timers.

use std::future::Future;
use std::time::Duration;

/// The async runtime a server runs on (async-std, smol, ...).
pub trait Runtime: Clone + Send + Sync + 'static {
    /// Runs a task in the background.
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, task: F);

    /// Resolves after `duration`.
    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + Send;
}
