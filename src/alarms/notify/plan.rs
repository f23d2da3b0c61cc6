//! The pure part of notifying: quiet hours, which waiting events go out now and in how many
//! messages (one each, or one digest when many are due at once), the retry schedule, and the
//! webhook signature.

use chrono::{DateTime, NaiveTime, TimeDelta, Utc};
use chrono_tz::Tz;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A daily window in a list's time zone; `from > until` spans midnight (22:00–06:00).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    pub from: NaiveTime,
    pub until: NaiveTime,
}

impl QuietHours {
    pub fn contains(&self, local: NaiveTime) -> bool {
        if self.from <= self.until {
            self.from <= local && local < self.until
        } else {
            local >= self.from || local < self.until
        }
    }

    pub fn at(&self, now: DateTime<Utc>, tz: Tz) -> bool {
        self.contains(now.with_timezone(&tz).time())
    }
}

/// What goes out now: each message is the events it tells of.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<E> {
    One(E),
    Digest(Vec<E>),
}

/// Splits a list's waiting events into the messages to send now and the events held: during
/// quiet hours only urgent events (critical) go out; when more than `threshold` are due they go
/// out as one digest.
pub fn plan<E>(
    waiting: Vec<E>,
    quiet: bool,
    threshold: usize,
    urgent: impl Fn(&E) -> bool,
) -> (Vec<Message<E>>, Vec<E>) {
    let (due, held): (Vec<E>, Vec<E>) = waiting.into_iter().partition(|e| !quiet || urgent(e));
    let messages =
        if due.len() > threshold { vec![Message::Digest(due)] } else { due.into_iter().map(Message::One).collect() };
    (messages, held)
}

/// Attempts before a delivery is given up as failed.
pub const MAX_ATTEMPTS: i32 = 8;

/// When to try again after `attempts` failed attempts (30 s, doubling, at most an hour), or
/// `None`: give up.
pub fn retry_after(attempts: i32) -> Option<TimeDelta> {
    (attempts < MAX_ATTEMPTS).then(|| TimeDelta::seconds((30i64 << (attempts.clamp(1, 8) - 1)).min(3600)))
}

/// The `X-Tau-Signature` of a webhook body: `sha256=` and the hex HMAC-SHA256 of the body's bytes
/// under the list's secret.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn hm(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn quiet_hours_may_span_midnight() {
        let night = QuietHours { from: hm(22, 0), until: hm(6, 30) };
        assert!(night.contains(hm(23, 0)) && night.contains(hm(3, 0)) && night.contains(hm(22, 0)));
        assert!(!night.contains(hm(6, 30)) && !night.contains(hm(12, 0)));
        let lunch = QuietHours { from: hm(12, 0), until: hm(13, 0) };
        assert!(lunch.contains(hm(12, 30)) && !lunch.contains(hm(13, 0)) && !lunch.contains(hm(11, 59)));
        let at = "2026-12-02T20:30:00Z".parse::<DateTime<Utc>>().unwrap();
        assert!(night.at(at, chrono_tz::Africa::Johannesburg), "22:30 in Johannesburg");
        assert!(!night.at(at, chrono_tz::UTC));
    }

    #[test]
    fn many_due_at_once_make_a_digest() {
        let (messages, held) = plan(vec![1, 2, 3], false, 2, |_| false);
        assert_eq!((messages, held), (vec![Message::Digest(vec![1, 2, 3])], vec![]));
        let (messages, _) = plan(vec![1, 2], false, 2, |_| false);
        assert_eq!(messages, vec![Message::One(1), Message::One(2)]);
    }

    #[test]
    fn quiet_hours_hold_all_but_the_urgent() {
        let (messages, held) = plan(vec![1, 2, 3, 4], true, 5, |e| *e == 3);
        assert_eq!((messages, held), (vec![Message::One(3)], vec![1, 2, 4]));
    }

    #[test]
    fn retries_back_off_then_give_up() {
        let s = |a| retry_after(a).map(|d| d.num_seconds());
        assert_eq!([s(1), s(2), s(3), s(7), s(8)], [Some(30), Some(60), Some(120), Some(1920), None]);
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    proptest! {
        /// Every waiting event is either in exactly one message or held, and only non-urgent
        /// ones during quiet hours are held; at most `threshold` single messages go out.
        #[test]
        fn nothing_is_lost_or_told_twice(
            events in prop::collection::vec(0u8..10, 0..50),
            quiet in any::<bool>(),
            threshold in 1usize..10,
        ) {
            let tagged: Vec<(usize, u8)> = events.into_iter().enumerate().collect();
            let urgent = |e: &(usize, u8)| e.1 == 0;
            let (messages, held) = plan(tagged.clone(), quiet, threshold, urgent);
            let mut told: Vec<(usize, u8)> = Vec::new();
            let singles = messages.iter().filter(|m| matches!(m, Message::One(_))).count();
            prop_assert!(singles <= threshold);
            for m in messages {
                match m {
                    Message::One(e) => told.push(e),
                    Message::Digest(es) => told.extend(es),
                }
            }
            prop_assert!(held.iter().all(|e| quiet && !urgent(e)));
            told.extend(held);
            told.sort();
            prop_assert_eq!(told, tagged);
        }
    }
}
