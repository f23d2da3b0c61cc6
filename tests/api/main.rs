//! All integration tests in one binary (linking one binary per file is slow). They run against
//! the private PostgreSQL cluster that `scripts/test.sh` starts (`DATABASE_URL`), and, for the
//! TimescaleDB leg, the real TimescaleDB it starts (`TAU_TEST_TIMESCALE_URL`).

// Tests unwrap (a failed unwrap is a failed test) and read the peers' locations from the
// variables scripts/test.sh exports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod alarms;
mod audit;
mod auth;
mod backup;
mod branding;
mod browser;
mod compose;
mod dashboards;
mod docs;
mod energy;
mod fleet;
mod grafana;
mod grafana_reader;
mod health;
mod helm;
mod helpers;
mod hierarchy;
mod image;
mod ingest;
mod licence;
mod measurements;
mod metrics;
mod migrations;
mod modbus_peer;
mod mqtt;
mod notifications;
mod poller;
mod quickstart;
mod seed;
mod simulator;
mod site_page;
mod sites;
mod startup;
mod tariffs;
mod timescale;
mod traefik;
