//! A connection's bounded queue of outgoing frames and the drop policy.

use crate::Config;
use bytes::Bytes;
use std::collections::VecDeque;

/// Frames waiting for a connection's writer, plus the batch it is writing.
///
/// The bound covers both, so memory per connection stays bounded however
/// slowly the client reads.
#[derive(Default)]
pub(crate) struct Outbox {
    queue: VecDeque<Bytes>,
    queued_bytes: usize,
    in_flight_frames: usize,
    in_flight_bytes: usize,
    /// Deliveries dropped because the outbox was full.
    pub(crate) dropped: u64,
}

/// What happened to a frame offered to an outbox.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Queued {
    /// Queued; `first` when the queue was empty, so the writer needs a nudge.
    Yes { first: bool },
    /// Dropped: the outbox is full.
    Dropped,
}

impl Outbox {
    fn frames(&self) -> usize {
        self.queue.len() + self.in_flight_frames
    }

    fn bytes(&self) -> usize {
        self.queued_bytes + self.in_flight_bytes
    }

    /// Queues a reply to the client's own command. Replies are never dropped:
    /// the engine applies a command only when [`Outbox::has_room`] for the
    /// largest reply it can give.
    pub(crate) fn push_reply(&mut self, frame: Bytes) -> Queued {
        let first = self.queue.is_empty();
        self.queued_bytes += frame.len();
        self.queue.push_back(frame);
        Queued::Yes { first }
    }

    /// Queues a delivery if it fits, else drops and counts it. A delivery to an
    /// empty outbox always fits, so the largest allowed message can get through.
    pub(crate) fn push_delivery(&mut self, frame: Bytes, config: &Config) -> Queued {
        if self.fits(frame.len(), config) {
            self.push_reply(frame)
        } else {
            self.dropped += 1;
            Queued::Dropped
        }
    }

    /// Whether a delivery of `len` bytes fits now: within the bounds, or
    /// into an empty outbox.
    pub(crate) fn fits(&self, len: usize, config: &Config) -> bool {
        self.frames() == 0
            || (self.frames() < config.max_outbox_frames
                && self.bytes().saturating_add(len) <= config.max_outbox_bytes)
    }

    /// Moves every queued frame into `batch` (which must be empty), marking
    /// them in flight. The batch handed out by the previous call is taken as
    /// written. Returns whether anything was handed over.
    pub(crate) fn take(&mut self, batch: &mut VecDeque<Bytes>) -> bool {
        debug_assert!(batch.is_empty(), "the writer hands back an emptied batch");
        batch.clear();
        std::mem::swap(&mut self.queue, batch);
        self.in_flight_frames = batch.len();
        self.in_flight_bytes = std::mem::take(&mut self.queued_bytes);
        !batch.is_empty()
    }

    /// Whether the writer holds a batch it has not reported written.
    pub(crate) fn writing(&self) -> bool {
        self.in_flight_frames > 0
    }

    /// Whether frames are queued and not yet handed to the writer.
    pub(crate) fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Whether nothing is queued or being written.
    pub(crate) fn is_empty(&self) -> bool {
        self.frames() == 0
    }

    /// Whether a reply of up to `bytes` fits: within the bounds, or into an
    /// empty outbox (so a client that reads always gets its answer).
    pub(crate) fn has_room(&self, bytes: usize, config: &Config) -> bool {
        self.fits(bytes, config)
    }

    pub(crate) fn queued(&self) -> (usize, usize) {
        (self.frames(), self.bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(frames: usize, bytes: usize) -> Config {
        Config {
            max_outbox_frames: frames,
            max_outbox_bytes: bytes,
            ..Config::default()
        }
    }

    #[test]
    fn deliveries_beyond_the_frame_bound_are_dropped_and_counted() {
        let config = config(2, 1000);
        let mut outbox = Outbox::default();
        let frame = Bytes::from_static(b"x\n");
        assert_eq!(
            outbox.push_delivery(frame.clone(), &config),
            Queued::Yes { first: true }
        );
        assert_eq!(
            outbox.push_delivery(frame.clone(), &config),
            Queued::Yes { first: false }
        );
        assert_eq!(
            outbox.push_delivery(frame.clone(), &config),
            Queued::Dropped
        );
        assert_eq!(outbox.dropped, 1);
        assert!(!outbox.has_room(1, &config), "no room for a reply either");
        let mut batch = VecDeque::new();
        outbox.take(&mut batch);
        batch.clear();
        outbox.take(&mut batch);
        assert!(
            outbox.has_room(100_000, &config),
            "an empty outbox takes anything"
        );
        outbox.push_reply(frame);
        assert!(outbox.has_room(998, &config));
        assert!(!outbox.has_room(999, &config), "2 + 999 > 1000");
    }

    #[test]
    fn the_batch_in_flight_counts_until_the_next_take() {
        let config = config(100, 10);
        let mut outbox = Outbox::default();
        let frame = Bytes::from_static(b"12345678\n");
        assert_eq!(
            outbox.push_delivery(frame.clone(), &config),
            Queued::Yes { first: true }
        );
        let mut batch = VecDeque::new();
        assert!(outbox.take(&mut batch));
        assert_eq!(
            outbox.push_delivery(frame.clone(), &config),
            Queued::Dropped,
            "9 + 9 > 10"
        );
        batch.clear();
        assert!(
            !outbox.take(&mut batch),
            "acknowledges the batch; nothing new"
        );
        assert_eq!(outbox.queued(), (0, 0));
        assert_eq!(
            outbox.push_delivery(frame, &config),
            Queued::Yes { first: true }
        );
    }

    #[test]
    fn an_empty_outbox_takes_a_frame_larger_than_its_bound() {
        let config = config(100, 4);
        let mut outbox = Outbox::default();
        let big = Bytes::from(vec![b'x'; 64]);
        assert!(
            outbox.has_room(64, &config),
            "an empty outbox takes any reply"
        );
        assert_eq!(
            outbox.push_delivery(big.clone(), &config),
            Queued::Yes { first: true }
        );
        assert_eq!(outbox.push_delivery(big, &config), Queued::Dropped);
    }
}
