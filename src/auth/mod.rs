//! Identity: passwords, sessions, login throttling, the users UI, the audit log, and the
//! forwardAuth gate for Grafana.

pub mod audit;
pub mod db;
pub mod device;
pub mod forward;
pub mod keyring;
pub mod password;
pub mod routes;
pub mod seed;
pub mod sessions;
pub mod throttle;
pub mod tokens;
pub mod users;
