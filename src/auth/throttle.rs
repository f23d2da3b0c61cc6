//! Login throttling, in memory: after a few failures an account (and, more generously, a client
//! address) must wait before the next attempt is even checked, the wait doubling with each further
//! failure up to a cap. There is no permanent lockout; a success clears the account's record.
//!
//! An attacker failing on purpose must not keep the owner out (one failure every 15 minutes held
//! the account at the cap): a browser that signed in to an account before carries a signed
//! device cookie for it (OWASP's "device cookies"), and its attempts for that account are
//! throttled on their own, by that device's record only. The account's and the address's limits
//! apply to everyone else.

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
/// A trusted browser (one device cookie): like an account.
pub const PER_DEVICE: Policy = PER_ACCOUNT;

/// Who makes a sign-in attempt.
#[derive(Debug, Clone, Copy)]
pub enum Attempt<'a> {
    /// A browser whose device cookie proves an earlier sign-in to this account (its nonce).
    Trusted { device: &'a str },
    /// Anyone else, from this client address.
    Untrusted { address: &'a str },
}

/// Records older than this (since their last failure) are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(24 * 3600);
const MAX_RECORDS: usize = 100_000;

#[derive(Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: DateTime<Utc>,
}

/// Failure records by key (an account's email, an address, a device's nonce).
type Records = Mutex<HashMap<String, Record>>;

pub struct Throttle {
    clock: Clock,
    accounts: Records,
    addresses: Records,
    devices: Records,
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

fn lock(m: &Records) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Throttle {
    pub fn new(clock: Clock) -> Throttle {
        Throttle { clock, accounts: Mutex::default(), addresses: Mutex::default(), devices: Mutex::default() }
    }

    /// The records an attempt counts against, with their policies.
    fn records(&self, email: &str, who: Attempt<'_>) -> Vec<(&Records, String, Policy)> {
        match who {
            Attempt::Trusted { device } => vec![(&self.devices, device.to_string(), PER_DEVICE)],
            Attempt::Untrusted { address } => vec![
                (&self.accounts, email.to_lowercase(), PER_ACCOUNT),
                (&self.addresses, address.to_string(), PER_ADDRESS),
            ],
        }
    }

    /// How long this attempt must wait, if at all (the longest of its limits).
    pub fn check(&self, email: &str, who: Attempt<'_>) -> Option<Duration> {
        let now = self.clock.now();
        self.records(email, who)
            .into_iter()
            .filter_map(|(map, key, policy)| lock(map).get(&key).and_then(|r| wait_for(policy, r, now)))
            .max()
    }

    pub fn failed(&self, email: &str, who: Attempt<'_>) {
        let now = self.clock.now();
        for (map, key, _) in self.records(email, who) {
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

    /// A successful sign-in clears the record it was checked against: the account's for anyone
    /// (not the address: one good password from an address must not reset a spray against
    /// others), only the device's for a trusted browser (the owner signing in during an attack
    /// must not hand the attacker fresh attempts).
    pub fn succeeded(&self, email: &str, who: Attempt<'_>) {
        match who {
            Attempt::Trusted { device } => lock(&self.devices).remove(device),
            Attempt::Untrusted { .. } => lock(&self.accounts).remove(&email.to_lowercase()),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(address: &str) -> Attempt<'_> {
        Attempt::Untrusted { address }
    }

    /// The attack of the review: failures from anywhere hold the account at the cap, yet the
    /// owner's browser signs in; its own failures lock that browser only.
    #[test]
    fn a_trusted_browser_is_throttled_on_its_own() {
        let clock = Clock::default();
        let t = Throttle::new(clock.clone());
        let owner = Attempt::Trusted { device: "nonce-of-the-owners-browser" };
        for i in 0..40 {
            t.failed("admin@x.io", from(&format!("10.0.0.{}", i % 3)));
            clock.advance(Duration::from_secs(1));
        }
        assert!(t.check("admin@x.io", from("10.9.9.9")).is_some(), "untrusted clients wait");
        assert_eq!(t.check("admin@x.io", owner), None, "the owner's browser does not");
        t.succeeded("admin@x.io", owner);
        assert!(t.check("admin@x.io", from("10.9.9.9")).is_some(), "the owner's success frees no attacker");
        for _ in 0..5 {
            t.failed("admin@x.io", owner);
        }
        assert!(t.check("admin@x.io", owner).is_some(), "the device's own failures count");
        let other = Attempt::Trusted { device: "another-browser" };
        assert_eq!(t.check("admin@x.io", other), None);
    }

    #[test]
    fn five_free_failures_then_doubling_waits_up_to_a_cap() {
        let clock = Clock::default();
        let t = Throttle::new(clock.clone());
        for _ in 0..4 {
            t.failed("a@x.io", from("1.1.1.1"));
            assert_eq!(t.check("a@x.io", from("1.1.1.1")), None);
        }
        t.failed("A@X.io", from("1.1.1.1"));
        let first = t.check("a@x.io", from("1.1.1.1")).expect("the fifth failure starts the back-off");
        assert!(first <= Duration::from_secs(1) && first > Duration::from_millis(900), "{first:?}");
        clock.advance(Duration::from_secs(2));
        assert_eq!(t.check("a@x.io", from("1.1.1.1")), None, "the wait is over");
        t.failed("a@x.io", from("1.1.1.1"));
        assert!(t.check("a@x.io", from("1.1.1.1")).unwrap() > Duration::from_millis(1900));
        for _ in 0..30 {
            t.failed("a@x.io", from("2.2.2.2"));
        }
        assert!(t.check("a@x.io", from("3.3.3.3")).unwrap() <= Duration::from_secs(15 * 60), "capped");
        clock.advance(Duration::from_secs(15 * 60 + 1));
        assert_eq!(t.check("a@x.io", from("3.3.3.3")), None, "never a permanent lockout");
    }

    #[test]
    fn success_clears_the_account_but_not_the_address() {
        let t = Throttle::new(Clock::default());
        for i in 0..25 {
            t.failed(&format!("user{i}@x.io"), from("9.9.9.9"));
        }
        t.failed("b@x.io", from("8.8.8.8"));
        t.succeeded("b@x.io", from("8.8.8.8"));
        assert_eq!(t.check("b@x.io", from("8.8.8.8")), None);
        assert!(t.check("fresh@x.io", from("9.9.9.9")).is_some(), "a password spray from one address is slowed");
    }
}
