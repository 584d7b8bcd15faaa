//! A one-way switch that any number of tasks can wait on: the server is
//! shutting down.

use futures::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Poll, Waker};

#[derive(Default)]
pub(crate) struct Shutdown {
    on: AtomicBool,
    waiting: Mutex<Vec<Waker>>,
}

impl Shutdown {
    pub(crate) fn trigger(&self) {
        self.on.store(true, Ordering::Release);
        let waiting =
            std::mem::take(&mut *self.waiting.lock().unwrap_or_else(PoisonError::into_inner));
        for waker in waiting {
            waker.wake();
        }
    }

    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// Resolves once [`Shutdown::trigger`] was called.
    pub(crate) async fn wait(&self) {
        poll_fn(|cx| {
            if self.is_on() {
                return Poll::Ready(());
            }
            let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
            // Checked again under the lock, so a trigger cannot slip between.
            if self.is_on() {
                return Poll::Ready(());
            }
            if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
                waiting.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}
