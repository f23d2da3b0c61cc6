//! What every periodic background task shares: a tick (missed ticks skipped, not bunched up
//! after a slow cycle) that ends at shutdown, and a failure logged once when it starts and once
//! when the task recovers, so a database that is away for an hour does not fill the log with a
//! warning a tick. The cycle itself stays in the task's own loop (run it with
//! `shutdown.run_until_cancelled(..)`), where it may borrow the task mutably.

use std::fmt::Display;
use std::time::Duration;

use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

pub struct Ticker {
    tick: Interval,
    failing: bool,
    /// Logged (followed by the error) when cycles start failing.
    failing_message: &'static str,
    /// Logged when a cycle works again.
    recovered_message: &'static str,
}

impl Ticker {
    pub fn new(every: Duration, failing_message: &'static str, recovered_message: &'static str) -> Ticker {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Ticker { tick, failing: false, failing_message, recovered_message }
    }

    /// Waits for the next tick; false once `shutdown` is cancelled.
    pub async fn tick(&mut self, shutdown: &CancellationToken) -> bool {
        shutdown.run_until_cancelled(self.tick.tick()).await.is_some()
    }

    /// Logs a cycle's outcome when it changes from working to failing or back.
    pub fn outcome<T, E: Display>(&mut self, outcome: &Result<T, E>) {
        match outcome {
            Ok(_) if self.failing => {
                tracing::info!("{}", self.recovered_message);
                self.failing = false;
            }
            Ok(_) => {}
            Err(e) if !self.failing => {
                tracing::warn!("{}: {e}", self.failing_message);
                self.failing = true;
            }
            Err(_) => {}
        }
    }
}
