//! The portal's subscriber: one MQTT connection (rumqttc) as the portal's own superuser account,
//! subscribed to `sensor/#` with QoS 1 and a persistent session (clean session off), so the broker
//! keeps what arrives while the portal restarts or reconnects.
//!
//! Messages are acknowledged by hand, and only after the batch holding them is stored through the
//! single write path (`measurements::write`): a message the database never got is delivered
//! again. A redelivered message stores nothing twice: readings are keyed by device and time.
//! An invalid message (unknown device, bad topic or payload) is counted, logged with its topic
//! and acknowledged, so it cannot block the ones behind it. A lost broker is retried with
//! backoff; a database outage keeps the batch unacknowledged and retries it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, Publish, QoS, SubscribeReasonCode};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::payload::{self, SUBSCRIPTION};
use crate::clock::Clock;
use crate::config::MqttSettings;
use crate::measurements::{self, Reading};
use crate::sites::directory::DeviceDirectory;

/// A batch is written at most this long after its first message arrived.
const FLUSH_AFTER: Duration = Duration::from_millis(100);
/// ... or when it holds this many messages.
const MAX_BATCH: usize = 500;
/// Requests (acks, the subscription) queued for the connection; more than a batch, so acking a
/// whole batch never waits on the connection it is acked through.
const REQUESTS: usize = 2 * MAX_BATCH;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Invalid messages of one topic are logged at most once per this long (each is counted).
const LOG_EVERY: Duration = Duration::from_secs(60);

pub struct Subscriber {
    pub db: PgPool,
    pub devices: DeviceDirectory,
    pub clock: Clock,
    /// Readings before this are refused (`Measurements__EarliestTime`).
    pub earliest: chrono::DateTime<chrono::Utc>,
    pub settings: MqttSettings,
}

fn count(result: &'static str, n: u64) {
    metrics::counter!("tau_portal_mqtt_messages_total", "result" => result).increment(n);
}

/// Logs invalid messages with their topic, at most once per topic per [`LOG_EVERY`].
#[derive(Default)]
struct InvalidLog {
    last: HashMap<String, (Instant, u64)>,
}

impl InvalidLog {
    fn note(&mut self, topic: &str, why: &str) {
        if self.last.len() > 10_000 {
            self.last.clear();
        }
        let now = Instant::now();
        match self.last.get_mut(topic) {
            Some((at, suppressed)) if now.duration_since(*at) < LOG_EVERY => *suppressed += 1,
            entry => {
                let suppressed = entry.map_or(0, |e| e.1);
                tracing::warn!(topic, suppressed, "Invalid MQTT message on {topic}: {why}");
                self.last.insert(topic.to_string(), (now, 0));
            }
        }
    }
}

impl Subscriber {
    fn options(&self) -> MqttOptions {
        // One stable client id per portal user: the broker keeps this session (and what arrives
        // for it) across reconnects and restarts.
        let mut options =
            MqttOptions::new(format!("{}-subscriber", self.settings.username), &self.settings.host, self.settings.port);
        let password = self.settings.password.as_ref().map(|p| p.expose_secret().to_string()).unwrap_or_default();
        options
            .set_credentials(self.settings.username.clone(), password)
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_max_packet_size(256 * 1024, 256 * 1024);
        options
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let target = format!("{}:{}", self.settings.host, self.settings.port);
        let (client, mut events) = AsyncClient::new(self.options(), REQUESTS);
        let mut batch: Vec<Publish> = Vec::new();
        let mut first_at: Option<tokio::time::Instant> = None;
        let mut failures: u32 = 0;
        let mut outage_since: Option<Instant> = None;
        let mut write_failures: u32 = 0;
        let mut invalid = InvalidLog::default();
        metrics::gauge!("tau_portal_mqtt_connected").set(0.0);
        loop {
            let flush_at = first_at.map(|t| t + FLUSH_AFTER);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = async { tokio::time::sleep_until(flush_at.unwrap_or_else(tokio::time::Instant::now)).await }, if flush_at.is_some() => {
                    match self.flush(&client, &mut batch, &mut invalid).await {
                        Ok(()) => { first_at = None; write_failures = 0; }
                        Err(e) => {
                            // Not acknowledged: kept, and tried again after a pause (the broker
                            // sends no more than its in-flight window meanwhile).
                            write_failures += 1;
                            let wait = crate::fleet::push::backoff(write_failures, MAX_BACKOFF);
                            if write_failures == 1 {
                                tracing::warn!("Cannot store MQTT readings ({e}); keeping {} messages unacknowledged and retrying", batch.len());
                            }
                            first_at = Some(tokio::time::Instant::now() + wait);
                        }
                    }
                }
                event = events.poll() => match event {
                    Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                        failures = 0;
                        metrics::gauge!("tau_portal_mqtt_connected").set(1.0);
                        match outage_since.take() {
                            Some(since) => tracing::info!(outage_seconds = since.elapsed().as_secs_f64(), "Connected to the MQTT broker {target} again after {:.1} s", since.elapsed().as_secs_f64()),
                            None => tracing::info!("Connected to the MQTT broker {target}; subscribing to {SUBSCRIPTION}"),
                        }
                        // A broker that lost the session (no persistence) no longer knows the
                        // subscription; subscribing again is harmless when it does.
                        if !ack.session_present
                            && let Err(e) = client.try_subscribe(SUBSCRIPTION, QoS::AtLeastOnce)
                        {
                            tracing::error!("Cannot subscribe to {SUBSCRIPTION}: {e}");
                        }
                    }
                    Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                        if ack.return_codes.iter().any(|c| matches!(c, SubscribeReasonCode::Failure)) {
                            tracing::error!(
                                "The MQTT broker refused the subscription to {SUBSCRIPTION}: Mqtt__Username must be a superuser in mqtt_users (the portal writes it at startup)"
                            );
                        }
                    }
                    Ok(Event::Incoming(Incoming::Publish(publish))) => {
                        batch.push(publish);
                        first_at.get_or_insert_with(tokio::time::Instant::now);
                        if batch.len() >= MAX_BATCH && write_failures == 0 {
                            first_at = Some(tokio::time::Instant::now());
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        failures += 1;
                        metrics::gauge!("tau_portal_mqtt_connected").set(0.0);
                        metrics::counter!("tau_portal_mqtt_connection_failures_total").increment(1);
                        if outage_since.is_none() {
                            outage_since = Some(Instant::now());
                            tracing::warn!("Cannot reach the MQTT broker {target}: {e}; retrying");
                        } else {
                            tracing::debug!("MQTT broker {target} still unreachable: {e}");
                        }
                        let wait = crate::fleet::push::backoff(failures, MAX_BACKOFF);
                        tokio::select! {
                            () = tokio::time::sleep(wait) => {}
                            () = shutdown.cancelled() => break,
                        }
                    }
                },
            }
        }
        // What is stored is acknowledged on the way out; the rest the broker delivers again.
        if !batch.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.flush(&client, &mut batch, &mut invalid)).await;
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                loop {
                    if events.poll().await.is_err() {
                        break;
                    }
                }
            })
            .await;
        }
        let _ = client.try_disconnect();
        metrics::gauge!("tau_portal_mqtt_connected").set(0.0);
    }

    /// Stores the batch and acknowledges it; on a database error nothing is acknowledged and the
    /// batch is kept.
    async fn flush(
        &self,
        client: &AsyncClient,
        batch: &mut Vec<Publish>,
        invalid: &mut InvalidLog,
    ) -> Result<(), sqlx::Error> {
        if batch.is_empty() {
            return Ok(());
        }
        let devices = self.devices.snapshot().await?;
        let horizon = measurements::Horizon { earliest: self.earliest, now: self.clock.now() };
        // Quantities of one device and time (the single-quantity topics of one instant) form
        // one reading.
        let mut readings: Vec<Reading> = Vec::new();
        let mut at: HashMap<(i32, chrono::DateTime<chrono::Utc>), usize> = HashMap::new();
        let mut rejected = 0u64;
        for publish in batch.iter() {
            let message = payload::parse(&publish.topic, &publish.payload, horizon).and_then(|m| {
                match devices.get(&m.external_id) {
                    Some(&id) => Ok((id, m)),
                    None => Err(format!("no device has the external ID {:?} (create it under Sites)", m.external_id)),
                }
            });
            match message {
                Ok((id, m)) => {
                    let i = *at.entry((id, m.time)).or_insert_with(|| {
                        readings.push(Reading::empty(id, m.time));
                        readings.len() - 1
                    });
                    for (slot, value) in m.values {
                        readings[i].set(slot, value);
                    }
                }
                Err(why) => {
                    rejected += 1;
                    invalid.note(&publish.topic, &why);
                }
            }
        }
        let stored = measurements::write(&self.db, &readings).await?;
        metrics::counter!("tau_portal_readings_ingested_total", "source" => "mqtt").increment(stored);
        count("accepted", batch.len() as u64 - rejected);
        count("invalid", rejected);
        for publish in batch.drain(..) {
            if let Err(e) = client.try_ack(&publish) {
                // The connection's queue is full or gone: the broker delivers it again.
                tracing::debug!("Cannot acknowledge an MQTT message on {}: {e}", publish.topic);
            }
        }
        Ok(())
    }
}
