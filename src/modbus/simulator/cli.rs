//! `tau-portal simulate`: the simulator as a process. Prints one line per meter on stdout
//! (`meter <n> <address> unit <id> serial <serial>`), then serves until the shutdown token.

use std::io::Write;
use std::net::IpAddr;

use tokio_util::sync::CancellationToken;

use super::{FAULT_HELP, FaultSpec};
use super::{Layout, ParameterMode, SimConfig, Simulator, Wiring};
use crate::clock::Clock;

/// Serve simulated Acuvim II meters over Modbus TCP (needs no database or portal configuration).
#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// Number of meters.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..))]
    pub meters: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub listen: IpAddr,
    /// First port: meter n listens on port + n - 1 (with --unit-ids, all on this port; 0 = any free port).
    #[arg(long, default_value_t = 5020)]
    pub port: u16,
    /// All meters behind one port with unit ids first-unit-id, first-unit-id + 1, … (like an RS-485 gateway).
    #[arg(long)]
    pub unit_ids: bool,
    /// Unit id (Modbus address) of the first meter.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=247))]
    pub first_unit_id: u8,
    /// Basic parameter mode (0x101D): whether the real-time values are primary or secondary side
    /// (secondary is the meter's factory default).
    #[arg(long, value_enum, default_value_t = ParameterMode::Secondary)]
    pub mode: ParameterMode,
    /// PT primary in V (also the nominal line-to-line voltage).
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..))]
    pub pt1: u32,
    /// PT secondary in V.
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u16).range(1..))]
    pub pt2: u16,
    /// CT primary in A.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(1..))]
    pub ct1: u16,
    /// CT secondary in A.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..))]
    pub ct2: u16,
    /// Voltage wiring (0x1003).
    #[arg(long, value_enum, default_value_t = Wiring::ThreeLn)]
    pub wiring: Wiring,
    /// Nominal mains frequency in Hz.
    #[arg(long, default_value = "50", value_parser = ["50", "60"])]
    pub frequency: String,
    /// Nominal daily peak of the largest meter in kW (primary side).
    #[arg(long, default_value_t = 100.0, value_parser = positive_number)]
    pub peak_kw: f64,
    /// Seed of the per-meter load shapes, counters and serial numbers.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// METER=FAULT applied at start, METER counted from 1 (repeatable).
    #[arg(long = "fault", value_name = "METER=FAULT", help = format!("METER=FAULT applied at start, METER counted from 1 (repeatable). FAULT: {FAULT_HELP}"))]
    pub faults: Vec<FaultSpec>,
}

fn positive_number(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

impl SimulateArgs {
    /// The simulator configuration, or a message naming the flag that makes it impossible.
    pub fn config(&self) -> Result<SimConfig, String> {
        let config = SimConfig {
            meters: usize::from(self.meters),
            listen: self.listen,
            port: self.port,
            layout: if self.unit_ids { Layout::UnitIds } else { Layout::PortPerMeter },
            first_unit_id: self.first_unit_id,
            mode: self.mode,
            pt1: self.pt1,
            pt2: self.pt2,
            ct1: self.ct1,
            ct2: self.ct2,
            wiring: self.wiring,
            frequency_hz: if self.frequency == "60" { 60.0 } else { 50.0 },
            peak_w: self.peak_kw * 1000.0,
            seed: self.seed,
        };
        config.validate().map_err(|e| format!("invalid value for '--{}': {}", e.field, e.reason))?;
        if let Some(spec) = self.faults.iter().find(|f| f.meter > config.meters) {
            return Err(format!(
                "invalid value for '--fault': meter {} does not exist (--meters is {})",
                spec.meter, config.meters
            ));
        }
        Ok(config)
    }
}

/// Starts the simulator, applies the faults, prints the meters, and serves until `shutdown`.
pub async fn run(args: &SimulateArgs, config: SimConfig, shutdown: CancellationToken) -> std::io::Result<()> {
    let simulator = Simulator::start(config, Clock::default()).await?;
    for spec in &args.faults {
        simulator.set_fault(spec.meter - 1, Some(spec.fault));
    }
    let mut out = std::io::stdout().lock();
    for (k, (addr, unit)) in simulator.endpoints().into_iter().enumerate() {
        writeln!(out, "meter {} {addr} unit {unit} serial {}", k + 1, simulator.serial(k).unwrap_or(""))?;
    }
    out.flush()?;
    drop(out);
    shutdown.cancelled().await;
    simulator.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn parse(args: &[&str]) -> Result<SimulateArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("simulate").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn defaults_describe_three_secondary_meters_on_5020() {
        let config = parse(&[]).unwrap().config().unwrap();
        assert_eq!((config.meters, config.port, config.layout), (3, 5020, Layout::PortPerMeter));
        assert_eq!(
            (config.mode, config.wiring, config.frequency_hz),
            (ParameterMode::Secondary, Wiring::ThreeLn, 50.0)
        );
    }

    #[test]
    fn flags_map_onto_the_config() {
        let args = parse(&[
            "--meters",
            "5",
            "--unit-ids",
            "--first-unit-id",
            "10",
            "--mode",
            "primary",
            "--pt1",
            "11000",
            "--pt2",
            "110",
            "--ct1",
            "400",
            "--ct2",
            "1",
            "--wiring",
            "3ll",
            "--frequency",
            "60",
            "--peak-kw",
            "2.5",
            "--fault",
            "2=no-reply",
            "--fault",
            "5=delay:20ms",
        ])
        .unwrap();
        let config = args.config().unwrap();
        assert_eq!((config.layout, config.first_unit_id), (Layout::UnitIds, 10));
        assert_eq!((config.pt1, config.pt2, config.ct1, config.ct2), (11000, 110, 400, 1));
        assert_eq!((config.wiring, config.frequency_hz, config.peak_w), (Wiring::ThreeLl, 60.0, 2500.0));
        assert_eq!(args.faults.len(), 2);
    }

    #[test]
    fn bad_flags_are_named() {
        for (args, flag) in [
            (&["--meters", "0"][..], "--meters"),
            (&["--wiring", "2ll"], "--wiring"),
            (&["--frequency", "55"], "--frequency"),
            (&["--fault", "1=explode"], "--fault"),
            (&["--ct2", "0"], "--ct2"),
            (&["--peak-kw=-1"], "--peak-kw"),
            (&["--peak-kw", "0"], "--peak-kw"),
            (&["--first-unit-id", "248"], "--first-unit-id"),
        ] {
            let err = parse(args).err().unwrap_or_else(|| panic!("{args:?} parsed")).to_string();
            assert!(err.contains(flag), "{args:?}: {err}");
        }
        let late = |args: &[&str]| parse(args).unwrap().config().unwrap_err();
        assert!(late(&["--fault", "4=no-reply"]).contains("--fault"));
        assert!(late(&["--unit-ids", "--first-unit-id", "246", "--meters", "3"]).contains("--meters"));
        assert!(late(&["--port", "65534", "--meters", "3"]).contains("--port"));
    }
}
