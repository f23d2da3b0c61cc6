//! A bounded in-memory buffer in front of [`write`](super::write) for producers that must never
//! wait on the database (the Modbus poller): readings are pushed without blocking and written
//! in batches by one flush task. While the database is unavailable they stay in the buffer and
//! are written when it returns; when the buffer is full the OLDEST readings are dropped (the
//! live view matters more than old samples, and energy comes from counters, so a gap costs
//! resolution, not kWh), counted in `tau_portal_readings_dropped_total` and logged.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Reading, write};

/// Rows per write: large enough to amortise the round trips, small enough to keep one batch's
/// COPY data (~320 bytes a row) well under a few MB.
const BATCH: usize = 5_000;
/// How long a reading may wait for a batch to fill before it is written anyway.
const FLUSH_EVERY: Duration = Duration::from_millis(500);
/// Retry delays while the database is unavailable.
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(15);

#[derive(Clone)]
pub struct WriteBuffer {
    inner: Arc<Inner>,
}

struct Inner {
    source: &'static str,
    capacity: usize,
    queue: Mutex<Queue>,
    /// Wakes the flush task when a full batch is waiting.
    batch_ready: Notify,
    /// `tau_portal_readings_buffered`: how many wait (rising while the database is away or
    /// slower than the producers).
    buffered: metrics::Gauge,
}

#[derive(Default)]
struct Queue {
    readings: VecDeque<Reading>,
    /// Dropped since the last log line about it.
    dropped: u64,
    /// Taken by the flush task and not yet stored (still counted as buffered).
    in_flight: usize,
}

impl WriteBuffer {
    /// `source` labels the metrics (`modbus`, `fleet`).
    pub fn new(source: &'static str, capacity: usize) -> WriteBuffer {
        WriteBuffer {
            inner: Arc::new(Inner {
                source,
                capacity: capacity.max(1),
                queue: Mutex::new(Queue::default()),
                batch_ready: Notify::new(),
                buffered: metrics::gauge!("tau_portal_readings_buffered", "source" => source),
            }),
        }
    }

    /// Queues a reading; never waits.
    pub fn push(&self, reading: Reading) {
        let mut queue = self.inner.lock();
        if queue.readings.len() >= self.inner.capacity {
            queue.readings.pop_front();
            queue.dropped += 1;
            metrics::counter!("tau_portal_readings_dropped_total", "source" => self.inner.source).increment(1);
        }
        queue.readings.push_back(reading);
        self.inner.count(&queue);
        if queue.readings.len() >= BATCH {
            self.inner.batch_ready.notify_one();
        }
    }

    /// Readings waiting to be written, the batch being written included (so a final flush cut
    /// short at shutdown counts it as lost).
    pub fn len(&self) -> usize {
        let queue = self.inner.lock();
        queue.readings.len() + queue.in_flight
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes batches until `shutdown`, then makes one last attempt to write what is left
    /// (bounded by `final_flush`), so a clean shutdown loses nothing the database accepts.
    pub async fn run(self, db: PgPool, shutdown: CancellationToken, final_flush: Duration) {
        let mut retry = RETRY_MIN;
        let mut unavailable = false;
        loop {
            tokio::select! {
                () = tokio::time::sleep(FLUSH_EVERY) => {}
                () = self.inner.batch_ready.notified() => {}
                () = shutdown.cancelled() => break,
            }
            match self.flush(&db).await {
                Ok(written) => {
                    if unavailable {
                        tracing::info!(
                            source = self.inner.source,
                            readings = written,
                            "Database available again; buffered readings written"
                        );
                        unavailable = false;
                    }
                    retry = RETRY_MIN;
                }
                Err(e) => {
                    if !unavailable {
                        tracing::warn!(
                            source = self.inner.source,
                            buffered = self.len(),
                            capacity = self.inner.capacity,
                            "Cannot write readings, holding them until the database answers: {e}"
                        );
                        unavailable = true;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(retry) => {}
                        () = shutdown.cancelled() => break,
                    }
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
        match tokio::time::timeout(final_flush, self.flush(&db)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(lost = self.len(), "Readings not written at shutdown: {e}"),
            Err(_) => tracing::warn!(
                lost = self.len(),
                "Readings not written at shutdown: the database did not answer in time"
            ),
        }
    }

    /// Writes everything queued, batch by batch; a failed batch goes back to the front.
    /// Returns how many readings were written.
    async fn flush(&self, db: &PgPool) -> Result<usize, sqlx::Error> {
        let mut written = 0;
        loop {
            let (batch, dropped) = {
                let mut queue = self.inner.lock();
                let n = queue.readings.len().min(BATCH);
                queue.in_flight = n;
                (queue.readings.drain(..n).collect::<Vec<_>>(), std::mem::take(&mut queue.dropped))
            };
            if dropped > 0 {
                tracing::warn!(
                    source = self.inner.source,
                    dropped,
                    capacity = self.inner.capacity,
                    "Reading buffer full: dropped the oldest readings"
                );
            }
            if batch.is_empty() {
                return Ok(written);
            }
            match write(db, &batch).await {
                Ok(new) => {
                    let mut queue = self.inner.lock();
                    queue.in_flight = 0;
                    self.inner.count(&queue);
                    drop(queue);
                    metrics::counter!("tau_portal_readings_ingested_total", "source" => self.inner.source)
                        .increment(new);
                    written += batch.len();
                }
                Err(e) => {
                    self.requeue(batch);
                    return Err(e);
                }
            }
        }
    }

    /// Puts a batch back at the front, in order, keeping the capacity (newer readings win).
    fn requeue(&self, batch: Vec<Reading>) {
        let mut queue = self.inner.lock();
        let room = self.inner.capacity.saturating_sub(queue.readings.len());
        let skip = batch.len().saturating_sub(room);
        if skip > 0 {
            queue.dropped += skip as u64;
            metrics::counter!("tau_portal_readings_dropped_total", "source" => self.inner.source)
                .increment(skip as u64);
        }
        for reading in batch.into_iter().skip(skip).rev() {
            queue.readings.push_front(reading);
        }
        queue.in_flight = 0;
        self.inner.count(&queue);
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, queue: &Queue) {
        self.buffered.set((queue.readings.len() + queue.in_flight) as f64);
    }
}
