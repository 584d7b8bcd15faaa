//! A connection's bounded queue of outgoing frames and the drop policy.
//!
//! Frames are copied into one buffer per connection, back to back, rather
//! than queued as shared handles: a delivery costs a copy of a few hundred
//! bytes from a hot cache instead of a reference count touched by two
//! threads and a free on the writer's, and the writer sends the buffer
//! as it is. The bytes counted against the bound are the bytes held.

use crate::Config;
use bytes::{Bytes, BytesMut};

/// A buffer that has held more than this is given back when the
/// connection goes idle, so a burst does not pin its memory.
const RETAINED: usize = 8 * 1024;

/// Frames handed to a connection's writer by
/// [`Engine::poll_transmit`](crate::Engine::poll_transmit): complete lines,
/// each ending in `\n`, back to back, in the order they were queued.
///
/// A writer keeps one `Batch` and hands it back each time; the engine
/// swaps buffers with it, so a connection that keeps up allocates nothing.
#[derive(Debug, Default)]
pub struct Batch {
    bytes: BytesMut,
    frames: usize,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// The frames, back to back, as one buffer to write.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// How many frames it holds.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Whether it holds no frame.
    pub fn is_empty(&self) -> bool {
        self.frames == 0
    }

    /// Each frame, without its `\n` (one message of a transport that frames
    /// messages itself, such as WebSocket).
    pub fn lines(&self) -> impl Iterator<Item = &[u8]> + '_ {
        self.bytes[..].split(|&b| b == b'\n').take(self.frames)
    }

    /// Takes the frames out as shared buffers, each without its `\n`,
    /// leaving the batch empty; no frame is copied.
    pub fn take_lines(&mut self) -> impl Iterator<Item = Bytes> {
        let bytes = self.bytes.split().freeze();
        let frames = std::mem::take(&mut self.frames);
        let mut start = 0;
        std::iter::from_fn(move || {
            let end = start + memchr::memchr(b'\n', &bytes[start..])?;
            let line = bytes.slice(start..end);
            start = end + 1;
            Some(line)
        })
        .take(frames)
    }

    /// Empties it, keeping its buffer for the next batch.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.frames = 0;
    }
}

/// Frames waiting for a connection's writer, plus the batch it is writing.
///
/// The bound covers both, so memory per connection stays bounded however
/// slowly the client reads.
#[derive(Default)]
pub(crate) struct Outbox {
    queue: BytesMut,
    queued_frames: usize,
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
        self.queued_frames + self.in_flight_frames
    }

    fn bytes(&self) -> usize {
        self.queue.len() + self.in_flight_bytes
    }

    /// Queues a reply to the client's own command. Replies are never dropped:
    /// the engine applies a command only when [`Outbox::has_room`] for the
    /// largest reply it can give.
    pub(crate) fn push_reply(&mut self, frame: &[u8]) -> Queued {
        debug_assert!(
            frame.last() == Some(&b'\n') && memchr::memchr(b'\n', frame) == Some(frame.len() - 1),
            "a frame is one line"
        );
        let first = self.queued_frames == 0;
        self.queue.extend_from_slice(frame);
        self.queued_frames += 1;
        Queued::Yes { first }
    }

    /// Queues a delivery if it fits, else drops and counts it. A delivery to an
    /// empty outbox always fits, so the largest allowed message can get through.
    pub(crate) fn push_delivery(&mut self, frame: &[u8], config: &Config) -> Queued {
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

    /// Hands every queued frame to `batch` (which must be empty), marking
    /// them in flight. The batch handed out by the previous call is taken as
    /// written. Returns whether anything was handed over.
    pub(crate) fn take(&mut self, batch: &mut Batch) -> bool {
        debug_assert!(batch.is_empty(), "the writer hands back an emptied batch");
        batch.clear();
        self.in_flight_frames = std::mem::take(&mut self.queued_frames);
        self.in_flight_bytes = self.queue.len();
        if self.in_flight_frames == 0 {
            // Idle: what a burst grew is given back.
            for buffer in [&mut self.queue, &mut batch.bytes] {
                if buffer.capacity() > RETAINED {
                    *buffer = BytesMut::new();
                }
            }
            return false;
        }
        std::mem::swap(&mut self.queue, &mut batch.bytes);
        batch.frames = self.in_flight_frames;
        true
    }

    /// Whether the writer holds a batch it has not reported written.
    pub(crate) fn writing(&self) -> bool {
        self.in_flight_frames > 0
    }

    /// Whether frames are queued and not yet handed to the writer.
    pub(crate) fn has_queued(&self) -> bool {
        self.queued_frames > 0
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
        let frame: &[u8] = b"x\n";
        assert_eq!(
            outbox.push_delivery(frame, &config),
            Queued::Yes { first: true }
        );
        assert_eq!(
            outbox.push_delivery(frame, &config),
            Queued::Yes { first: false }
        );
        assert_eq!(outbox.push_delivery(frame, &config), Queued::Dropped);
        assert_eq!(outbox.dropped, 1);
        assert!(!outbox.has_room(1, &config), "no room for a reply either");
        let mut batch = Batch::new();
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
        let frame: &[u8] = b"12345678\n";
        assert_eq!(
            outbox.push_delivery(frame, &config),
            Queued::Yes { first: true }
        );
        let mut batch = Batch::new();
        assert!(outbox.take(&mut batch));
        assert_eq!(
            outbox.push_delivery(frame, &config),
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
        let mut big = vec![b'x'; 63];
        big.push(b'\n');
        assert!(
            outbox.has_room(64, &config),
            "an empty outbox takes any reply"
        );
        assert_eq!(
            outbox.push_delivery(&big, &config),
            Queued::Yes { first: true }
        );
        assert_eq!(outbox.push_delivery(&big, &config), Queued::Dropped);
    }

    #[test]
    fn a_batch_holds_its_frames_back_to_back_and_splits_them_into_lines() {
        let config = config(100, 1000);
        let mut outbox = Outbox::default();
        outbox.push_reply(b"{\"a\":1}\n");
        outbox.push_delivery(b"{\"b\":2}\n", &config);
        let mut batch = Batch::new();
        assert!(outbox.take(&mut batch));
        assert_eq!(batch.frames(), 2);
        assert_eq!(batch.as_bytes(), b"{\"a\":1}\n{\"b\":2}\n");
        let lines: Vec<&[u8]> = batch.lines().collect();
        assert_eq!(lines, [&b"{\"a\":1}"[..], b"{\"b\":2}"]);
        let taken: Vec<Bytes> = batch.take_lines().collect();
        assert_eq!(taken, [&b"{\"a\":1}"[..], b"{\"b\":2}"]);
        assert!(batch.is_empty() && batch.as_bytes().is_empty());
    }

    #[test]
    fn an_idle_outbox_gives_back_what_a_burst_grew() {
        let config = config(100_000, 10_000_000);
        let mut outbox = Outbox::default();
        let mut batch = Batch::new();
        let frame = [&[b'x'; 99][..], b"\n"].concat();
        for _ in 0..2 {
            for _ in 0..1000 {
                outbox.push_delivery(&frame, &config);
            }
            assert!(outbox.take(&mut batch));
            assert_eq!(batch.as_bytes().len(), 100_000);
            batch.clear();
        }
        assert!(outbox.queue.capacity() > RETAINED, "a burst keeps its room");
        assert!(!outbox.take(&mut batch), "written; nothing new");
        assert!(outbox.queue.capacity() <= RETAINED);
        assert!(batch.bytes.capacity() <= RETAINED);
        assert_eq!(outbox.queued(), (0, 0));
    }
}
