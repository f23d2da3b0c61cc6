//! Tariffs and bills: municipalities and their tariffs (Settings → Rates), a site's tariff
//! history, and the cost engine that turns a site's 15-minute energy into an itemised bill in
//! the site's local time (the site page's Cost tab, the Overview's month to date).

pub mod engine;
pub mod local;
pub mod model;

#[cfg(test)]
mod tests;
