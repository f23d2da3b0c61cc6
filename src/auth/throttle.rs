//! Login throttling, in memory: after a few failures an account (and, more generously, a client
//! address) must wait before the next attempt is even checked, the wait doubling with each further
//! failure up to a cap. There is no permanent lockout, so an attacker cannot lock an admin out
//! for good by failing on purpose; a success clears the account's record.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;

#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failures allowed before waiting starts.
    pub free_failures: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

pub const PER_ACCOUNT: Policy =
    Policy { free_failures: 5, first_delay: Duration::from_secs(1), max_delay: Duration::from_secs(15 * 60) };
/// An office behind one NAT address shares it: more headroom than per account.
pub const PER_ADDRESS: Policy =
    Policy { free_failures: 20, first_delay: Duration::from_secs(1), max_delay: Duration::from_secs(15 * 60) };

/// Records older than this (since their last failure) are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);
const MAX_RECORDS: usize = 100_000;

#[derive(Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: DateTime<Utc>,
}

pub struct Throttle {
    clock: Clock,
    accounts: Mutex<HashMap<String, Record>>,
    addresses: Mutex<HashMap<String, Record>>,
}

fn wait_for(policy: Policy, r: &Record, now: DateTime<Utc>) -> Option<Duration> {
    if r.failures < policy.free_failures {
        return None;
    }
    let doublings = (r.failures - policy.free_failures).min(20);
    let delay = (policy.first_delay * 2u32.pow(doublings)).min(policy.max_delay);
    let until = r.last_failure + chrono::Duration::from_std(delay).ok()?;
    (until > now).then(|| (until - now).to_std().unwrap_or_default())
}

fn lock(m: &Mutex<HashMap<String, Record>>) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Throttle {
    pub fn new(clock: Clock) -> Throttle {
        Throttle { clock, accounts: Mutex::default(), addresses: Mutex::default() }
    }

    /// How long this attempt must wait, if at all (the longer of the two limits).
    pub fn check(&self, email: &str, address: &str) -> Option<Duration> {
        let now = self.clock.now();
        let account = lock(&self.accounts).get(&email.to_lowercase()).and_then(|r| wait_for(PER_ACCOUNT, r, now));
        let addr = lock(&self.addresses).get(address).and_then(|r| wait_for(PER_ADDRESS, r, now));
        account.max(addr)
    }

    pub fn failed(&self, email: &str, address: &str) {
        let now = self.clock.now();
        for (map, key) in [(&self.accounts, email.to_lowercase()), (&self.addresses, address.to_string())] {
            let mut map = lock(map);
            if map.len() >= MAX_RECORDS {
                let horizon = chrono::Duration::from_std(FORGET_AFTER).unwrap_or_default();
                map.retain(|_, r| now - r.last_failure < horizon);
            }
            let r = map.entry(key).or_insert(Record { failures: 0, last_failure: now });
            r.failures += 1;
            r.last_failure = now;
        }
    }

    /// A successful sign-in clears the account (not the address: one good password from an
    /// address must not reset a spray against others).
    pub fn succeeded(&self, email: &str) {
        lock(&self.accounts).remove(&email.to_lowercase());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_free_failures_then_doubling_waits_up_to_a_cap() {
        let clock = Clock::default();
        let t = Throttle::new(clock.clone());
        for _ in 0..4 {
            t.failed("a@x.io", "1.1.1.1");
            assert_eq!(t.check("a@x.io", "1.1.1.1"), None);
        }
        t.failed("A@X.io", "1.1.1.1");
        let first = t.check("a@x.io", "1.1.1.1").expect("the fifth failure starts the back-off");
        assert!(first <= Duration::from_secs(1) && first > Duration::from_millis(900), "{first:?}");
        clock.advance(Duration::from_secs(2));
        assert_eq!(t.check("a@x.io", "1.1.1.1"), None, "the wait is over");
        t.failed("a@x.io", "1.1.1.1");
        assert!(t.check("a@x.io", "1.1.1.1").unwrap() > Duration::from_millis(1900));
        for _ in 0..30 {
            t.failed("a@x.io", "2.2.2.2");
        }
        assert!(t.check("a@x.io", "3.3.3.3").unwrap() <= Duration::from_secs(15 * 60), "capped");
        clock.advance(Duration::from_secs(15 * 60 + 1));
        assert_eq!(t.check("a@x.io", "3.3.3.3"), None, "never a permanent lockout");
    }

    #[test]
    fn success_clears_the_account_but_not_the_address() {
        let t = Throttle::new(Clock::default());
        for i in 0..25 {
            t.failed(&format!("user{i}@x.io"), "9.9.9.9");
        }
        t.failed("b@x.io", "8.8.8.8");
        t.succeeded("b@x.io");
        assert_eq!(t.check("b@x.io", "8.8.8.8"), None);
        assert!(t.check("fresh@x.io", "9.9.9.9").is_some(), "a password spray from one address is slowed");
    }
}
