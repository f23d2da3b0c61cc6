//! Modbus TCP for Acuvim meters: register maps (pure decoding), the poller, and a simulator
//! of Acuvim II meters for tests, benchmarks and the local quick start.

pub mod simulator;
