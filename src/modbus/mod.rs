//! Acuvim meters over Modbus TCP: register maps with a pure decoder, the poller that reads the
//! meters into the measurement store, and a simulator for tests, benchmarks and the quick start.

mod endpoint;
pub mod poller;
pub mod registers;
pub mod simulator;
mod status;
