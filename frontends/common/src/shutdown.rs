//! A one-way switch that any number of tasks can wait on: the server is
//! shutting down.

use event_listener::Event;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Default)]
pub(crate) struct Shutdown {
    on: AtomicBool,
    event: Event,
}

impl Shutdown {
    pub(crate) fn trigger(&self) {
        self.on.store(true, Ordering::Release);
        self.event.notify(usize::MAX);
    }

    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    /// Resolves once [`Shutdown::trigger`] was called.
    pub(crate) async fn wait(&self) {
        loop {
            if self.is_on() {
                return;
            }
            let listener = self.event.listen();
            // Checked again once listening, so a trigger cannot slip between.
            if self.is_on() {
                return;
            }
            listener.await;
        }
    }
}
