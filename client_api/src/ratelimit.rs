//! Rate limiting of the endpoints ruma marks as rate-limited: a token bucket per user (or per
//! client address when unauthenticated). Over the limit a client gets `M_LIMIT_EXCEEDED`.

use std::{net::IpAddr, num::NonZeroU32, time::Duration};

use governor::{clock::DefaultClock, state::keyed::DefaultKeyedStateStore, Quota, RateLimiter};

/// Who a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    User(String),
    Address(IpAddr),
}

pub struct Limiter {
    inner: Option<RateLimiter<Key, DefaultKeyedStateStore<Key>, DefaultClock>>,
}

impl Limiter {
    /// `per_second` requests per second with bursts of `burst`; `per_second == 0` disables.
    pub fn new(per_second: f64, burst: u32) -> Self {
        if per_second <= 0.0 {
            return Limiter { inner: None };
        }
        let period = Duration::from_secs_f64(1.0 / per_second);
        let inner = Quota::with_period(period)
            .map(|q| q.allow_burst(NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN)))
            .map(RateLimiter::keyed);
        Limiter { inner }
    }

    /// `Err(wait)` when the key is over its limit.
    pub fn check(&self, key: Key) -> Result<(), Duration> {
        let Some(limiter) = &self.inner else {
            return Ok(());
        };
        limiter.check_key(&key).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::Clock::now(&DefaultClock::default()))
        })
    }
}
