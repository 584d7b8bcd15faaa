//! Publishes that cross shards: a shard that applies a publish offers it to
//! every other shard that may hold a matching subscription
//! ([`Output::Offer`]), and the caller hands it to each of them in the
//! publisher's order ([`Engine::handle_offer`]). The receiving shard matches
//! it against its own index and delivers it as if it were published there,
//! pacing the publisher the same way: when a recipient is full, the offer
//! waits and the publisher's reader retries it after [`Output::Resume`], or
//! gives up waiting with [`Engine::handle_offer_expired`]. Once every offer
//! of a turn is delivered, [`Engine::handle_offered`] on the publisher's
//! shard lets its own replies go out.
//!
//! [`Output::Offer`]: super::Output::Offer
//! [`Output::Resume`]: super::Output::Resume

use super::publish::Pacing;
use super::{ConnId, Engine, Output};
use bytes::Bytes;

/// A publish on its way to other shards; see [`Output::Offer`].
///
/// [`Output::Offer`]: super::Output::Offer
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    publisher: ConnId,
    frame: Bytes,
    tags: Vec<String>,
    /// The shards it goes to, as a bit mask.
    targets: u64,
    /// Whether its publisher waits for full recipients.
    wait: bool,
}

impl Offer {
    pub(super) fn new(
        publisher: ConnId,
        frame: Bytes,
        tags: Vec<String>,
        targets: u64,
        wait: bool,
    ) -> Offer {
        Offer {
            publisher,
            frame,
            tags,
            targets,
            wait,
        }
    }

    /// The connection that published it.
    pub fn publisher(&self) -> ConnId {
        self.publisher
    }

    /// The frame every recipient gets.
    pub fn frame(&self) -> &Bytes {
        &self.frame
    }

    /// The shards to hand it to, as a bit mask: bit `s` for shard `s`.
    pub fn shard_mask(&self) -> u64 {
        self.targets
    }

    /// The shards to hand it to, in ascending order.
    pub fn shards(&self) -> impl Iterator<Item = usize> + '_ {
        let mut left = self.targets;
        std::iter::from_fn(move || {
            let shard = (left != 0).then(|| left.trailing_zeros() as usize)?;
            left &= left - 1;
            Some(shard)
        })
    }
}

impl Engine {
    /// Input: a publish from another shard ([`Output::Offer`]). Returns
    /// whether it was delivered; if not, a recipient is full and the
    /// publisher must wait: retry after this shard sends
    /// [`Output::Resume`] for the publisher, or after the publisher's
    /// [`Config::pace_timeout`] call [`Engine::handle_offer_expired`].
    ///
    /// [`Output::Offer`]: super::Output::Offer
    /// [`Config::pace_timeout`]: crate::Config::pace_timeout
    pub fn handle_offer(&mut self, offer: &Offer) -> bool {
        let pacing = if offer.wait {
            Pacing::Wait
        } else {
            Pacing::Never
        };
        self.take_offer(offer, pacing)
    }

    /// Input: the publisher of `offer` waited its bounded time. Returns
    /// whether it was delivered: recipients still full whose writer is
    /// stuck writing lose it and are judged stalled; if one whose writer has
    /// not had its turn yet is full, it still waits (as for
    /// [`Engine::handle_offer`]).
    pub fn handle_offer_expired(&mut self, offer: &Offer) -> bool {
        self.take_offer(offer, Pacing::Expired)
    }

    fn take_offer(&mut self, offer: &Offer, pacing: Pacing) -> bool {
        let (len, waiter) = (offer.frame.len(), offer.publisher);
        if self.find_recipients(&offer.tags, None, Some(waiter), len, pacing) {
            return false;
        }
        self.deliver(&offer.frame, pacing);
        true
    }

    /// Input, on the publisher's shard: every offer of `publisher` so far
    /// has been delivered, so its own frames may go out again.
    pub fn handle_offered(&mut self, publisher: ConnId) {
        let Some(c) = self.conn_mut(publisher) else {
            return;
        };
        c.offering = false;
        if c.outbox.has_queued() {
            self.outputs.push_back(Output::Transmit(publisher));
        }
    }
}
