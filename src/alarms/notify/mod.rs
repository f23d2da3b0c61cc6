//! Alarm notifications: e-mail over SMTP (lettre) and signed webhooks, per recipient list.
//!
//! # Flow
//! 1. *Queued with the alarm.* The transaction that raises or ends an alarm (the evaluator's
//!    cycle, a user's clear, a rule's change) also writes one `alarms."Outbox"` row per enabled
//!    recipient list whose least severity the alarm meets (`db::queue`): no event is lost between
//!    the alarm and its notification, and nothing is sent from inside that transaction.
//! 2. *Planned.* The [`Notifier`] task (every few seconds, Client mode, tracked and cancellable)
//!    takes each list's waiting events, decides with the pure [`plan::plan`] what goes out now
//!    (quiet hours hold all but critical ones until they end; more than
//!    `Notifications__DigestThreshold` due at once become one digest), renders each message once
//!    (branded with the white label at that moment) and stores it as an `alarms."Deliveries"`
//!    row per channel, removing the events it tells of in the same transaction.
//! 3. *Sent.* Due deliveries are sent one by one, each under `Notifications__SmtpTimeoutSeconds`;
//!    the outcome is recorded: sent, or failed with the reason and retried with backoff
//!    ([`plan::retry_after`]), given up after [`plan::MAX_ATTEMPTS`]. Settings → Notifications
//!    shows every delivery. The task is its own: a slow or failing SMTP server or webhook holds
//!    up neither the evaluator, nor polling, nor any page; a database outage makes a cycle fail
//!    and the next one carry on.
//!
//! Webhooks are `POST`s of JSON signed with the list's secret: `X-Tau-Signature: sha256=<hex
//! HMAC-SHA256 of the body>`, `X-Tau-Delivery: <delivery id>` (the same on every retry, so a
//! receiver can drop duplicates); any 2xx is success, redirects are not followed.

pub mod db;
mod forms;
pub mod plan;
mod routes;

use std::time::Duration;

use askama::Template;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use url::Url;

use self::db::{DeliveryRow, ListRow, NewDelivery, Waiting};
use self::plan::{Message, QuietHours};
use super::rules::Severity;
use crate::branding::{Branding, Theme};
use crate::clock::Clock;
use crate::config::{Notifications, SmtpSecurity, SmtpSettings};
use crate::periodic;
use crate::sites::readings::local_time;

pub use routes::{confirm_delete, create_list, delete_list, edit_list, list_page, new_list, update_list};

/// How often waiting events are planned and due deliveries sent.
pub const EVERY: Duration = Duration::from_secs(5);
/// Deliveries sent per cycle at most (the rest wait for the next).
const SEND_BATCH: i64 = 50;

pub struct Notifier {
    pub db: PgPool,
    pub clock: Clock,
    pub branding: Branding,
    pub settings: Notifications,
    /// Links in messages point here (`Application__PublicUrl`).
    pub public_url: Option<Url>,
    /// How often [`run`](Self::run) works ([`EVERY`]; tests make it shorter).
    pub every: Duration,
    mailer: Option<AsyncSmtpTransport<Tokio1Executor>>,
    http: reqwest::Client,
}

/// What one cycle did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Cycle {
    pub planned: usize,
    pub sent: usize,
    pub failed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error("the SMTP relay {host} cannot be used: {source}")]
    Smtp { host: String, source: lettre::transport::smtp::Error },
    #[error("cannot build the HTTP client for webhooks: {0}")]
    Http(#[from] reqwest::Error),
}

fn mailer(smtp: &SmtpSettings, timeout: Duration) -> Result<AsyncSmtpTransport<Tokio1Executor>, NotifierError> {
    let failed = |source| NotifierError::Smtp { host: smtp.host.clone(), source };
    let builder = match smtp.security {
        SmtpSecurity::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host).map_err(failed)?,
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(failed)?,
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
    };
    let mut builder = builder.port(smtp.port).timeout(Some(timeout));
    if let Some(user) = &smtp.username {
        let password = smtp.password.as_ref().map(|p| p.expose_secret().to_string()).unwrap_or_default();
        builder = builder.credentials(Credentials::new(user.clone(), password));
    }
    Ok(builder.build())
}

impl Notifier {
    pub fn new(
        db: PgPool,
        clock: Clock,
        branding: Branding,
        settings: Notifications,
        public_url: Option<Url>,
    ) -> Result<Notifier, NotifierError> {
        let mailer = settings.smtp.as_ref().map(|s| mailer(s, settings.timeout)).transpose()?;
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tau-portal/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Notifier { db, clock, branding, settings, public_url, every: EVERY, mailer, http })
    }

    /// Plans and sends until `shutdown`; a failed cycle is logged once and retried.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticker = periodic::Ticker::new(
            self.every,
            "Cannot send alarm notifications, will retry",
            "Alarm notifications resumed",
        );
        while ticker.tick(&shutdown).await {
            let Some(outcome) = shutdown.run_until_cancelled(self.cycle()).await else { return };
            ticker.outcome(&outcome);
        }
    }

    /// Plans every list's waiting events, then sends what is due.
    pub async fn cycle(&self) -> Result<Cycle, sqlx::Error> {
        let now = self.clock.now();
        let planned = self.plan(now).await?;
        let mut cycle = Cycle { planned, ..Cycle::default() };
        for delivery in db::due(&self.db, now, SEND_BATCH).await? {
            let outcome = self.send(&delivery).await;
            match &outcome {
                Ok(()) => cycle.sent += 1,
                Err(e) => {
                    cycle.failed += 1;
                    tracing::warn!(delivery = delivery.id, channel = %delivery.channel, target = %delivery.target, "Alarm notification failed: {e}");
                }
            }
            let attempts = delivery.attempts + 1;
            let recorded = outcome
                .as_ref()
                .map(|_| ())
                .map_err(|e| (e.as_str(), plan::retry_after(attempts).map(|after| self.clock.now() + after)));
            db::record_attempt(&self.db, delivery.id, self.clock.now(), recorded).await?;
        }
        Ok(cycle)
    }

    async fn plan(&self, now: DateTime<Utc>) -> Result<usize, sqlx::Error> {
        let waiting = db::waiting(&self.db).await?;
        if waiting.is_empty() {
            return Ok(0);
        }
        let theme = self.branding.theme();
        let mut planned = 0;
        for list in db::lists(&self.db).await? {
            let events: Vec<Waiting> = waiting.iter().filter(|w| w.list_id == list.id).cloned().collect();
            if events.is_empty() {
                continue;
            }
            let tz: Tz = list.time_zone.parse().unwrap_or(chrono_tz::UTC);
            let quiet = match (list.quiet_from, list.quiet_until) {
                (Some(from), Some(until)) => QuietHours { from, until }.at(now, tz),
                _ => false,
            };
            let (messages, _held) =
                plan::plan(events, quiet, self.settings.digest_threshold, |e| e.severity == "critical");
            if messages.is_empty() {
                continue;
            }
            let mut told = Vec::new();
            let mut deliveries = Vec::new();
            for message in &messages {
                let events: Vec<&Waiting> = match message {
                    Message::One(e) => vec![e],
                    Message::Digest(es) => es.iter().collect(),
                };
                told.extend(events.iter().map(|e| (e.alarm_id, e.event.clone())));
                deliveries.extend(self.render(&list, &theme, tz, &events));
            }
            let mut tx = self.db.begin().await?;
            db::plan(&mut tx, list.id, &told, &deliveries, now).await?;
            tx.commit().await?;
            planned += deliveries.len();
        }
        Ok(planned)
    }

    /// One delivery per channel of the list for a message about `events`.
    fn render(&self, list: &ListRow, theme: &Theme, tz: Tz, events: &[&Waiting]) -> Vec<NewDelivery> {
        let app = &theme.brand.application_name;
        let items: Vec<MailItem> = events.iter().map(|e| self.item(e, tz)).collect();
        let (kind, subject) = match events {
            [e] if e.event == "raised" => {
                ("raised", format!("[{app}] {}: {} at {}", items[0].severity, e.rule_name, e.subject))
            }
            [e] => ("cleared", format!("[{app}] Cleared: {} at {}", e.rule_name, e.subject)),
            _ => ("digest", format!("[{app}] {} alarm updates", events.len())),
        };
        let alarm_ids: Vec<i64> = events.iter().map(|e| e.alarm_id).collect();
        let mut out = Vec::new();
        if !list.emails.is_empty() {
            let mail = MailText { app, items: &items, footer: &theme.brand.footer_text, list: &list.name };
            let html = MailHtml {
                app,
                items: &items,
                footer: &theme.brand.footer_text,
                list: &list.name,
                primary: theme.brand.primary_color.as_str(),
            };
            out.push(NewDelivery {
                list_id: list.id,
                list_name: list.name.clone(),
                channel: "email",
                target: list.emails.join(", "),
                kind,
                alarm_ids: alarm_ids.clone(),
                subject: subject.clone(),
                body: mail.render().unwrap_or_else(|e| format!("(the message could not be rendered: {e})")),
                html: html.render().ok(),
            });
        }
        if let Some(url) = &list.webhook_url {
            let payload = serde_json::json!({
                "event": format!("alarm.{kind}"),
                "portal": app,
                "list": list.name,
                "events": events.iter().zip(&items).map(|(e, item)| serde_json::json!({
                    "event": e.event,
                    "at": e.at,
                    "alarm": {
                        "id": e.alarm_id,
                        "rule": e.rule_name,
                        "severity": e.severity,
                        "subject": e.subject,
                        "message": e.message,
                        "startedAt": e.started_at,
                        "endedAt": e.ended_at,
                        "triggerValue": e.trigger_value,
                        "clearValue": e.clear_value,
                        "clearedBy": e.cleared_by,
                        "url": item.link,
                    },
                })).collect::<Vec<_>>(),
            });
            out.push(NewDelivery {
                list_id: list.id,
                list_name: list.name.clone(),
                channel: "webhook",
                target: url.clone(),
                kind,
                alarm_ids,
                subject,
                body: payload.to_string(),
                html: None,
            });
        }
        out
    }

    fn item(&self, e: &Waiting, tz: Tz) -> MailItem {
        let severity = Severity::parse(&e.severity).unwrap_or(Severity::Warning).label();
        let link =
            self.public_url.as_ref().and_then(|u| u.join(&format!("/alarms/{}", e.alarm_id)).ok()).map(String::from);
        let ended = e.ended_at.map(|t| {
            let by = match e.cleared_by.as_deref() {
                Some("condition") => "the condition recovered".to_string(),
                Some("rule") => "its rule changed or no longer watches this device".to_string(),
                Some(user) => format!("cleared by {user}"),
                None => String::new(),
            };
            format!("{} ({by})", local_time(t, tz))
        });
        MailItem {
            headline: if e.event == "raised" { "Raised" } else { "Cleared" },
            severity,
            rule: e.rule_name.clone(),
            subject: e.subject.clone(),
            message: e.message.clone(),
            started: local_time(e.started_at, tz),
            ended: if e.event == "cleared" { ended } else { None },
            link,
        }
    }

    async fn send(&self, d: &DeliveryRow) -> Result<(), String> {
        match d.channel.as_str() {
            "email" => self.send_mail(d).await,
            _ => self.send_webhook(d).await,
        }
    }

    async fn send_mail(&self, d: &DeliveryRow) -> Result<(), String> {
        let (Some(mailer), Some(smtp)) = (&self.mailer, &self.settings.smtp) else {
            return Err("e-mail is not configured: set Notifications__SmtpHost and Notifications__SmtpFrom".into());
        };
        let app = self.branding.theme().brand.application_name.clone();
        let from = smtp.from.parse().map_err(|e| format!("the sender address {} is not valid: {e}", smtp.from))?;
        let mut builder = lettre::Message::builder().from(Mailbox::new(Some(app), from)).subject(&d.subject);
        for address in d.target.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            builder = builder.to(address.parse().map_err(|e| format!("{address} is not a valid address: {e}"))?);
        }
        let message = match &d.html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(d.body.clone(), html.clone())),
            None => builder.body(d.body.clone()),
        }
        .map_err(|e| format!("the message could not be built: {e}"))?;
        match tokio::time::timeout(self.settings.timeout, mailer.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("SMTP {}:{}: {e}", smtp.host, smtp.port)),
            Err(_) => {
                Err(format!("SMTP {}:{}: no answer within {} s", smtp.host, smtp.port, self.settings.timeout.as_secs()))
            }
        }
    }

    async fn send_webhook(&self, d: &DeliveryRow) -> Result<(), String> {
        let secret = d.webhook_secret.as_deref().ok_or("the recipient list was deleted")?;
        let response = self
            .http
            .post(&d.target)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("X-Tau-Signature", plan::signature(secret, d.body.as_bytes()))
            .header("X-Tau-Delivery", d.id.to_string())
            .body(d.body.clone())
            .send()
            .await
            .map_err(|e| format!("{}: {}", d.target, crate::error::Chain(&e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        let excerpt: String = text.chars().take(200).collect();
        Err(format!(
            "{}: HTTP {status}{}",
            d.target,
            if excerpt.is_empty() { String::new() } else { format!(": {excerpt}") }
        ))
    }
}

/// One alarm event as a message tells it.
pub struct MailItem {
    headline: &'static str,
    severity: &'static str,
    rule: String,
    subject: String,
    message: String,
    started: String,
    ended: Option<String>,
    link: Option<String>,
}

#[derive(Template)]
#[template(path = "alarms/mail.txt")]
struct MailText<'a> {
    app: &'a str,
    items: &'a [MailItem],
    footer: &'a str,
    list: &'a str,
}

#[derive(Template)]
#[template(path = "alarms/mail.html")]
struct MailHtml<'a> {
    app: &'a str,
    items: &'a [MailItem],
    footer: &'a str,
    list: &'a str,
    primary: &'a str,
}
