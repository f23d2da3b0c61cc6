//! Faults the simulator can inject per meter, and their command-line spelling
//! (`--fault 2=no-reply`, `--fault 1=exception:0x4048`, `--fault 3=delay:1500ms`,
//! `--fault 1=idle-close:2s`).

use std::str::FromStr;
use std::time::Duration;

use tokio_modbus::ExceptionCode;

/// A fault of one meter. `CounterWrap` and `MeterReset` change the meter's counters once, when
/// set; the others last until cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Read every request and never answer.
    NoReply,
    /// Answer every request after this long (values as of the request's arrival).
    Delay(Duration),
    /// Answer reads of the served block starting at `block_start` (or, for an address that
    /// starts no served block, reads starting exactly there) with this exception.
    Exception { block_start: u16, code: ExceptionCode },
    /// Close the TCP connection (with a reset) on the next request, without answering.
    ResetConnection,
    /// Close a connection that has carried no request for this long (an orderly close), as
    /// RS-485 gateways and AXM-WEB modules do with idle clients. Behind one port (unit ids),
    /// the shortest idle time among the port's meters applies.
    IdleClose(Duration),
    /// Move every counter to ~10 s of energy before 999,999,999 counts; they count on through
    /// the wrap.
    CounterWrap,
    /// Every counter restarts from 0 now and counts on.
    MeterReset,
}

/// `METER=FAULT` from the command line, `METER` counted from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultSpec {
    pub meter: usize,
    pub fault: Fault,
}

pub const FAULT_HELP: &str = "no-reply, delay:<N>ms|<N>s, exception:<block address>[:<code>], reset-connection, \
                              idle-close:<N>ms|<N>s, counter-wrap, meter-reset";

impl FromStr for FaultSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultSpec, String> {
        let (meter, fault) = s.split_once('=').ok_or("expected METER=FAULT, e.g. 2=no-reply")?;
        let meter = match meter.trim().parse::<usize>() {
            Ok(n) if n >= 1 => n,
            _ => return Err(format!("meter {meter:?} is not a meter number (1, 2, …)")),
        };
        Ok(FaultSpec { meter, fault: fault.trim().parse()? })
    }
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Fault, String> {
        let (name, argument) = s.split_once(':').map_or((s, None), |(n, a)| (n, Some(a)));
        let fault = match (name, argument) {
            ("no-reply", None) => Fault::NoReply,
            ("reset-connection", None) => Fault::ResetConnection,
            ("counter-wrap", None) => Fault::CounterWrap,
            ("meter-reset", None) => Fault::MeterReset,
            ("delay", Some(d)) => Fault::Delay(parse_duration("delay", d)?),
            ("idle-close", Some(d)) => match parse_duration("idle-close", d)? {
                Duration::ZERO => return Err("idle-close needs a time above 0, e.g. idle-close:2s".into()),
                d => Fault::IdleClose(d),
            },
            ("exception", Some(a)) => {
                let (block, code) = a.split_once(':').map_or((a, None), |(b, c)| (b, Some(c)));
                let block_start = parse_number(block)
                    .ok_or_else(|| format!("exception block {block:?} is not a register address"))?;
                let code = match code {
                    None => ExceptionCode::IllegalDataAddress,
                    Some(c) => match parse_number(c) {
                        Some(n @ 1..=0xFF) => ExceptionCode::new(n as u8),
                        _ => return Err(format!("exception code {c:?} is not 1..255")),
                    },
                };
                Fault::Exception { block_start, code }
            }
            _ => return Err(format!("unknown fault {s:?}; expected one of: {FAULT_HELP}")),
        };
        Ok(fault)
    }
}

/// A u16 in decimal or `0x` hexadecimal.
fn parse_number(s: &str) -> Option<u16> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn parse_duration(fault: &str, s: &str) -> Result<Duration, String> {
    let bad = || format!("{fault} {s:?} is not a duration like 1500ms or 2s");
    if let Some(ms) = s.strip_suffix("ms") {
        ms.parse::<u64>().map(Duration::from_millis).map_err(|_| bad())
    } else if let Some(secs) = s.strip_suffix('s') {
        secs.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0 && *x < 1e6)
            .map(Duration::from_secs_f64)
            .ok_or_else(bad)
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_fault() {
        let spec = |s: &str| s.parse::<FaultSpec>();
        assert_eq!(spec("2=no-reply"), Ok(FaultSpec { meter: 2, fault: Fault::NoReply }));
        assert_eq!(spec("3=delay:1500ms").map(|s| s.fault), Ok(Fault::Delay(Duration::from_millis(1500))));
        assert_eq!(spec("3=delay:2s").map(|s| s.fault), Ok(Fault::Delay(Duration::from_secs(2))));
        assert_eq!(
            spec("1=exception:0x4048").map(|s| s.fault),
            Ok(Fault::Exception { block_start: 0x4048, code: ExceptionCode::IllegalDataAddress })
        );
        assert_eq!(
            spec("1=exception:16384:4").map(|s| s.fault),
            Ok(Fault::Exception { block_start: 0x4000, code: ExceptionCode::ServerDeviceFailure })
        );
        assert_eq!(spec("1=reset-connection").map(|s| s.fault), Ok(Fault::ResetConnection));
        assert_eq!(spec("2=idle-close:2s").map(|s| s.fault), Ok(Fault::IdleClose(Duration::from_secs(2))));
        assert_eq!(spec("2=idle-close:500ms").map(|s| s.fault), Ok(Fault::IdleClose(Duration::from_millis(500))));
        assert_eq!(spec("1=counter-wrap").map(|s| s.fault), Ok(Fault::CounterWrap));
        assert_eq!(spec("1=meter-reset").map(|s| s.fault), Ok(Fault::MeterReset));
    }

    #[test]
    fn rejects_bad_specs_with_a_reason() {
        for (input, needle) in [
            ("no-reply", "METER=FAULT"),
            ("0=no-reply", "meter"),
            ("x=no-reply", "meter"),
            ("1=explode", "unknown fault"),
            ("1=delay:fast", "delay"),
            ("1=delay:10", "delay"),
            ("1=idle-close", "unknown fault"),
            ("1=idle-close:soon", "idle-close"),
            ("1=idle-close:0s", "above 0"),
            ("1=exception:0xZZ", "exception block"),
            ("1=exception:0x4000:0", "exception code"),
            ("1=no-reply:5", "unknown fault"),
        ] {
            let err = input.parse::<FaultSpec>().unwrap_err();
            assert!(err.contains(needle), "{input}: {err}");
        }
    }
}
