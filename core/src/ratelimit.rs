//! Rate limiting: a token bucket per user (or per client address when unauthenticated) for the
//! endpoints ruma marks as rate-limited and for the Sandcat login and code endpoints, one per
//! other server for every federation request, and a
//! lockout of accounts after repeated failed passwords. Over a limit a client gets
//! `M_LIMIT_EXCEEDED` (Sandcat: 429).

use std::{net::IpAddr, num::NonZeroU32, time::Duration};

use governor::{clock::DefaultClock, state::keyed::DefaultKeyedStateStore, Quota, RateLimiter};

/// Who a request is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    User(String),
    Address(IpAddr),
    /// Another server, by the name its requests are signed with.
    Server(String),
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

/// Refuses a key after `max` failures within `window`, until the window that began with the
/// first of them has passed; a success clears the key. Counts failed password attempts per
/// account, whichever API they come through, so no door bypasses another's limit.
pub struct Lockout {
    max: u32,
    window: Duration,
    failures: std::sync::Mutex<std::collections::HashMap<String, (u32, std::time::Instant)>>,
}

impl Lockout {
    /// `max == 0` disables.
    pub fn new(max: u32, window: Duration) -> Self {
        Lockout {
            max,
            window,
            failures: Default::default(),
        }
    }

    fn map(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (u32, std::time::Instant)>>
    {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(wait)` while the key is locked out.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        if self.max == 0 {
            return Ok(());
        }
        let mut map = self.map();
        match map.get(key) {
            Some((_, since)) if since.elapsed() >= self.window => {
                map.remove(key);
                Ok(())
            }
            Some((n, since)) if *n >= self.max => Err(self.window.saturating_sub(since.elapsed())),
            _ => Ok(()),
        }
    }

    /// Records a failure.
    pub fn fail(&self, key: &str) {
        if self.max == 0 {
            return;
        }
        let mut map = self.map();
        if map.len() > 100_000 {
            let window = self.window;
            map.retain(|_, (_, since)| since.elapsed() < window);
        }
        let entry = map
            .entry(key.to_owned())
            .or_insert((0, std::time::Instant::now()));
        if entry.1.elapsed() >= self.window {
            *entry = (0, std::time::Instant::now());
        }
        entry.0 += 1;
    }

    /// A success: the key starts afresh.
    pub fn clear(&self, key: &str) {
        if self.max > 0 {
            self.map().remove(key);
        }
    }
}
