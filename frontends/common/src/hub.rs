//! The engine shared by every connection task, and the wiring that wakes them.

use crate::signal::Signal;
use bytes::Bytes;
use mist_engine::{Config, ConnId, Engine, Output, Stats};
use mist_proto::{ProtoError, Request};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What a connection's tasks share with the hub.
#[derive(Default)]
pub(crate) struct Link {
    /// The engine queued frames for this connection.
    pub(crate) outbox_ready: Signal,
    /// The writer took frames out, so a throttled reader may go on.
    pub(crate) room: Signal,
    /// The reader has finished; the writer stops once the outbox is empty.
    pub(crate) input_done: AtomicBool,
}

struct State {
    engine: Engine,
    links: HashMap<ConnId, Arc<Link>>,
}

/// The broker as the connection tasks see it: one [`Engine`] behind a lock.
///
/// Every method takes the lock once, applies its input, drains the engine's
/// outputs and releases the lock before waking anyone, so no task ever does
/// IO, or even a wake-up, while holding it.
pub struct Hub {
    state: Mutex<State>,
    max_line: usize,
}

impl Hub {
    /// A hub around a fresh engine; lines longer than `max_line` are refused.
    pub fn new(config: Config, max_line: usize) -> Hub {
        Hub {
            state: Mutex::new(State {
                engine: Engine::new(config),
                links: HashMap::new(),
            }),
            max_line,
        }
    }

    /// The longest line a client may send, in bytes.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// The engine's counters.
    pub fn stats(&self) -> Stats {
        self.lock().engine.stats()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The engine never panics on client input; if something else did while
        // holding the lock, serving the other clients beats stopping them all.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn connect(&self) -> (ConnId, Arc<Link>) {
        let link = Arc::new(Link::default());
        let mut state = self.lock();
        let conn = state.engine.handle_connect();
        state.links.insert(conn, link.clone());
        (conn, link)
    }

    /// Applies a batch of decoded lines in order; returns whether the
    /// connection may keep sending (see [`Engine::accepts_input`]).
    pub(crate) fn handle_messages(
        &self,
        conn: ConnId,
        messages: &mut Vec<Result<Request, ProtoError>>,
    ) -> bool {
        let mut state = self.lock();
        for message in messages.drain(..) {
            state.engine.handle_message(conn, message);
        }
        let accepts = state.engine.accepts_input(conn);
        let woken = drain_outputs(&mut state);
        drop(state);
        wake(woken);
        accepts
    }

    /// Applies a request, returning its failure rather than queueing it.
    pub(crate) fn command(
        &self,
        conn: ConnId,
        request: &Request,
    ) -> Result<(), mist_engine::Error> {
        let mut state = self.lock();
        let outcome = state.engine.handle_command(conn, request);
        let woken = drain_outputs(&mut state);
        drop(state);
        wake(woken);
        outcome
    }

    pub(crate) fn accepts_input(&self, conn: ConnId) -> bool {
        self.lock().engine.accepts_input(conn)
    }

    pub(crate) fn input_closed(&self, conn: ConnId) {
        let mut state = self.lock();
        state.engine.handle_input_closed(conn);
        let woken = drain_outputs(&mut state);
        drop(state);
        wake(woken);
    }

    pub(crate) fn disconnect(&self, conn: ConnId) {
        let mut state = self.lock();
        state.engine.handle_disconnect(conn);
        state.links.remove(&conn);
    }

    /// Hands every frame queued for `conn` to its writer (see [`Engine::poll_transmit`]).
    pub(crate) fn transmit(&self, conn: ConnId, batch: &mut VecDeque<Bytes>) -> bool {
        self.lock().engine.poll_transmit(conn, batch)
    }
}

/// Collects the links to wake; the caller wakes them after unlocking.
fn drain_outputs(state: &mut State) -> Vec<Arc<Link>> {
    let mut woken = Vec::new();
    while let Some(output) = state.engine.poll_output() {
        match output {
            Output::Transmit(conn) => {
                if let Some(link) = state.links.get(&conn) {
                    woken.push(link.clone());
                }
            }
            other => log::error!("unhandled engine output {other:?}"),
        }
    }
    woken
}

fn wake(links: Vec<Arc<Link>>) {
    for link in links {
        link.outbox_ready.notify();
    }
}
