//! Connection ids: what names a connection in every input and output.

use std::fmt;

/// Most shards one server may run (see [`crate::Engine::shards`]): a
/// publish names the shards it is offered to in a 64-bit mask.
pub const MAX_SHARDS: usize = 64;

/// Names one connection for as long as it is open, and the shard that owns
/// it. Ids of closed connections are not confused with new ones: a slot's
/// generation changes on reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(u64);

/// Bits of the generation; the shard takes the 8 above them.
const GENERATION_BITS: u32 = 24;

impl ConnId {
    pub(crate) fn new(shard: usize, slot: u32, generation: u32) -> ConnId {
        let generation = u64::from(generation & ((1 << GENERATION_BITS) - 1));
        ConnId((shard as u64) << 56 | generation << 32 | u64::from(slot))
    }

    pub(crate) fn slot(self) -> usize {
        (self.0 & u64::from(u32::MAX)) as usize
    }

    pub(crate) fn generation(self) -> u32 {
        ((self.0 >> 32) as u32) & ((1 << GENERATION_BITS) - 1)
    }

    /// The shard that owns the connection: the [`crate::Engine`] that
    /// every input about it goes to.
    pub fn shard(self) -> usize {
        (self.0 >> 56) as usize
    }

    #[cfg(test)]
    pub(crate) fn for_test(n: u64) -> ConnId {
        ConnId(n)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}.{}", self.shard(), self.slot(), self.generation())
    }
}
