//! Warnings that a hostile client can cause at will, at most once per period,
//! with a count of those left out, so an attack cannot flood the log.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Lets one message through per period.
pub struct LogLimit {
    period: Duration,
    /// When the last message went out, and how many were left out since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimit {
    /// At most one message per `period`.
    pub const fn new(period: Duration) -> LogLimit {
        LogLimit {
            period,
            state: Mutex::new((None, 0)),
        }
    }

    /// Whether a message may go out now, with how many were left out
    /// before it; counts it as left out otherwise.
    pub fn allow(&self) -> Option<u64> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match state.0 {
            Some(last) if now < last + self.period => {
                state.1 += 1;
                None
            }
            _ => {
                let left_out = state.1;
                *state = (Some(now), 0);
                Some(left_out)
            }
        }
    }
}

/// Logs at `level` through `limit`, noting how many similar messages were
/// left out.
#[macro_export]
macro_rules! log_limited {
    ($limit:expr, $level:expr, $($arg:tt)+) => {
        if let Some(left_out) = $limit.allow() {
            if left_out > 0 {
                log::log!($level, "{} ({left_out} similar messages left out)", format_args!($($arg)+));
            } else {
                log::log!($level, $($arg)+);
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_per_period_with_a_count_of_the_rest() {
        let limit = LogLimit::new(Duration::from_secs(3600));
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.allow(), None);
        limit.state.lock().unwrap().0 = Some(Instant::now() - Duration::from_secs(3601));
        assert_eq!(limit.allow(), Some(2));
    }
}
