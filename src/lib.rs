pub mod app;
pub mod auth;
pub mod config;
pub mod db;
pub mod health;
pub mod telemetry;
