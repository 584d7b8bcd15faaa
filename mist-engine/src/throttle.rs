//! Failed authentications per client address, so that tokens cannot be
//! guessed at speed: once an address has failed `max` times within a window,
//! its further attempts are refused, unchecked, until that window ends.
//!
//! Time is passed in. IPv6 addresses count per /64, the block one client
//! usually holds. At most [`MAX_TRACKED`] addresses are tracked; when the
//! table is full of live entries a new address is not tracked, so an
//! attacker with more addresses than that gains guesses but can never lock
//! everyone else out.

use std::collections::HashMap;
use std::hash::RandomState;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Addresses tracked at most.
pub(crate) const MAX_TRACKED: usize = 65_536;

struct Failures {
    count: u32,
    /// When the window began: at the first failure in it.
    since: Instant,
}

pub(crate) struct Throttle {
    max: u32,
    window: Duration,
    by_addr: HashMap<IpAddr, Failures, RandomState>,
    /// A full table is swept for ended windows at most once per window.
    next_sweep: Option<Instant>,
}

/// The address whose failures a client's count against.
fn key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

impl Throttle {
    pub(crate) fn new(max: u32, window: Duration) -> Throttle {
        Throttle {
            max,
            window,
            by_addr: HashMap::default(),
            next_sweep: None,
        }
    }

    /// How long `addr` must wait before its attempts are checked again, if
    /// it has used up its failures.
    pub(crate) fn blocked(&self, addr: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.by_addr.get(&key(addr))?;
        let ends = failures.since + self.window;
        (failures.count >= self.max && now < ends).then(|| ends - now)
    }

    /// Counts a failed attempt. Returns true when this failure used up the
    /// address's allowance, so that it is reported once.
    pub(crate) fn failed(&mut self, addr: IpAddr, now: Instant) -> bool {
        let addr = key(addr);
        if !self.by_addr.contains_key(&addr) && self.by_addr.len() >= MAX_TRACKED {
            self.sweep(now);
            if self.by_addr.len() >= MAX_TRACKED {
                return false;
            }
        }
        let failures = self.by_addr.entry(addr).or_insert(Failures {
            count: 0,
            since: now,
        });
        if now >= failures.since + self.window {
            *failures = Failures {
                count: 0,
                since: now,
            };
        }
        failures.count += 1;
        failures.count == self.max
    }

    /// Forgets addresses whose window has ended, at most once per window.
    fn sweep(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|next| now < next) {
            return;
        }
        self.next_sweep = Some(now + self.window);
        let window = self.window;
        self.by_addr.retain(|_, f| now < f.since + window);
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.by_addr.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn an_address_is_blocked_after_its_failures_until_the_window_ends() {
        let start = Instant::now();
        let mut throttle = Throttle::new(3, MINUTE);
        let addr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        assert!(!throttle.failed(addr, start));
        assert!(!throttle.failed(addr, start + Duration::from_secs(1)));
        assert_eq!(throttle.blocked(addr, start), None);
        assert!(
            throttle.failed(addr, start + Duration::from_secs(2)),
            "the third is reported"
        );
        assert_eq!(
            throttle.blocked(addr, start + Duration::from_secs(10)),
            Some(Duration::from_secs(50))
        );
        assert_eq!(throttle.blocked(other, start), None, "per address");
        assert_eq!(
            throttle.blocked(addr, start + MINUTE),
            None,
            "the window ended"
        );
        assert!(!throttle.failed(addr, start + MINUTE), "a new window");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let start = Instant::now();
        let mut throttle = Throttle::new(2, MINUTE);
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:1".parse().unwrap();
        throttle.failed(a, start);
        throttle.failed(b, start);
        assert!(throttle
            .blocked("2001:db8::2".parse().unwrap(), start)
            .is_some());
        assert!(throttle
            .blocked("2001:db9::1".parse().unwrap(), start)
            .is_none());
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        throttle.failed(mapped, start);
        throttle.failed(v4, start);
        assert!(throttle.blocked(v4, start).is_some());
    }

    #[test]
    fn the_table_is_bounded_and_swept() {
        let start = Instant::now();
        let mut throttle = Throttle::new(1, MINUTE);
        for i in 0..MAX_TRACKED as u32 {
            throttle.failed(IpAddr::V4(Ipv4Addr::from(i)), start);
        }
        let late = IpAddr::V4(Ipv4Addr::from(u32::MAX));
        throttle.failed(late, start);
        assert_eq!(throttle.tracked(), MAX_TRACKED, "full: not tracked");
        assert_eq!(throttle.blocked(late, start), None);
        throttle.failed(late, start + MINUTE);
        assert_eq!(throttle.tracked(), 1, "ended windows swept");
        assert!(throttle.blocked(late, start + MINUTE).is_some());
    }
}
