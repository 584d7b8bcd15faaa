//! A one-bit, runtime-agnostic wake-up between two tasks.

use futures::future::poll_fn;
use futures::task::AtomicWaker;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

/// Set by one task, awaited by another. Several notifications before the
/// waiter runs count as one, which is what lets writes coalesce.
#[derive(Default)]
pub(crate) struct Signal {
    set: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    pub(crate) fn notify(&self) {
        if !self.set.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// Resolves once `notify` has been called since the last `wait` resolved.
    pub(crate) async fn wait(&self) {
        poll_fn(|cx| {
            if self.set.swap(false, Ordering::AcqRel) {
                return Poll::Ready(());
            }
            self.waker.register(cx.waker());
            // A notify between the check and the registration must not be lost.
            if self.set.swap(false, Ordering::AcqRel) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}
