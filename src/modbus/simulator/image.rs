//! The Acuvim II register image the simulator serves: which blocks exist, and how a reading,
//! the energy counters and the settings are laid out in registers (docs: acuvim-registers.md).
//! Pure functions; the server only picks the block and copies the requested slice.

use chrono::{DateTime, Datelike, Timelike, Utc};
use tokio_modbus::ExceptionCode;

use super::model::{Reading, unbalance};
use super::{ParameterMode, Wiring};

pub const SETTINGS: u16 = 0x1000;
pub const REAL_TIME: u16 = 0x4000;
pub const ENERGY: u16 = 0x4048;
pub const MODEL: u16 = 0xF000;
pub const SERIAL: u16 = 0xF040;

const SETTINGS_LEN: usize = 0x46; // 0x1000..=0x1045: up to the meter clock
const REAL_TIME_LEN: usize = 72;
const ENERGY_LEN: usize = 18;
/// Energy counters count 0.1 kWh and roll over after 999,999,999.
pub const WH_PER_COUNT: f64 = 100.0;
pub const COUNTER_MODULUS: f64 = 1_000_000_000.0;
/// The V3 model register: its real content is not documented, so a recognisable placeholder.
pub const MODEL_ASCII: &[u8; 4] = b"AC2S";
/// Modbus allows at most 125 registers in one read.
const MAX_QUANTITY: u16 = 125;

/// Load type register: 76 = 'L' (inductive). The simulated loads always draw vars.
const LOAD_INDUCTIVE: f32 = 76.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Block {
    Settings,
    RealTime,
    Energy,
    Model,
    Serial,
}

const BLOCKS: [(u16, usize, Block); 5] = [
    (SETTINGS, SETTINGS_LEN, Block::Settings),
    (REAL_TIME, REAL_TIME_LEN, Block::RealTime),
    (ENERGY, ENERGY_LEN, Block::Energy),
    (MODEL, 2, Block::Model),
    (SERIAL, 6, Block::Serial),
];

/// The served block holding all of `[address, address + quantity)` and the offset of `address`
/// in it. Anything else (SunSpec at 0xC350 included) is exception 0x02, as the meter answers.
pub fn locate(address: u16, quantity: u16) -> Result<(Block, usize), ExceptionCode> {
    if quantity == 0 || quantity > MAX_QUANTITY {
        return Err(ExceptionCode::IllegalDataValue);
    }
    let (first, end) = (usize::from(address), usize::from(address) + usize::from(quantity));
    BLOCKS
        .iter()
        .find(|(start, len, _)| usize::from(*start) <= first && end <= usize::from(*start) + len)
        .map(|(start, _, block)| (*block, first - usize::from(*start)))
        .ok_or(ExceptionCode::IllegalDataAddress)
}

/// The start of the served block that `address` falls in, if any.
pub fn block_start(address: u16) -> Option<u16> {
    BLOCKS
        .iter()
        .find(|(start, len, _)| *start <= address && usize::from(address) < usize::from(*start) + len)
        .map(|(start, _, _)| *start)
}

/// How the meter divides primary quantities for display in secondary mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scaling {
    pub voltage: f64,
    pub current: f64,
    pub power: f64,
}

impl Scaling {
    pub fn new(mode: ParameterMode, pt1: u32, pt2: u16, ct1: u16, ct2: u16) -> Scaling {
        match mode {
            ParameterMode::Primary => Scaling { voltage: 1.0, current: 1.0, power: 1.0 },
            ParameterMode::Secondary => {
                let voltage = f64::from(pt1) / f64::from(pt2);
                let current = f64::from(ct1) / f64::from(ct2);
                Scaling { voltage, current, power: voltage * current }
            }
        }
    }
}

/// The 0x4000 block (36 floats). In 3-wire wiring the L-N voltages and the per-phase P, Q, S
/// and PF read 0 and there is no neutral current, as on the meter.
pub fn real_time(r: &Reading, wiring: Wiring, scale: Scaling) -> [u16; REAL_TIME_LEN] {
    let phase = |x: f64| if wiring == Wiring::ThreeLl { 0.0 } else { x };
    let (v, i, p) = (|x: f64| x / scale.voltage, |x: f64| x / scale.current, |x: f64| x / scale.power);
    let mean = |xs: &[f64; 3]| xs.iter().sum::<f64>() / 3.0;
    let v_unbalance = if wiring == Wiring::ThreeLl { unbalance(&r.v_ll) } else { r.v_unbalance };
    let floats: [f64; REAL_TIME_LEN / 2] = [
        r.frequency,
        phase(v(r.v_ln[0])),
        phase(v(r.v_ln[1])),
        phase(v(r.v_ln[2])),
        phase(v(mean(&r.v_ln))),
        v(r.v_ll[0]),
        v(r.v_ll[1]),
        v(r.v_ll[2]),
        v(mean(&r.v_ll)),
        i(r.current[0]),
        i(r.current[1]),
        i(r.current[2]),
        i(mean(&r.current)),
        phase(i(r.current_neutral)),
        phase(p(r.p[0])),
        phase(p(r.p[1])),
        phase(p(r.p[2])),
        p(r.p_total),
        phase(p(r.q[0])),
        phase(p(r.q[1])),
        phase(p(r.q[2])),
        p(r.q_total),
        phase(p(r.s[0])),
        phase(p(r.s[1])),
        phase(p(r.s[2])),
        p(r.s_total),
        phase(r.pf[0]),
        phase(r.pf[1]),
        phase(r.pf[2]),
        r.pf_total,
        v_unbalance,
        r.i_unbalance,
        f64::from(LOAD_INDUCTIVE),
        p(r.demand[0]),
        p(r.demand[1]),
        p(r.demand[2]),
    ];
    let mut regs = [0u16; REAL_TIME_LEN];
    for (k, x) in floats.into_iter().enumerate() {
        [regs[2 * k], regs[2 * k + 1]] = float_words(x as f32);
    }
    regs
}

/// IEEE-754 f32, high word first.
pub fn float_words(x: f32) -> [u16; 2] {
    let bits = x.to_bits();
    [(bits >> 16) as u16, bits as u16]
}

fn dword(x: u32) -> [u16; 2] {
    [(x >> 16) as u16, x as u16]
}

/// The register value of a counter holding `wh` (Wh, varh or VAh): whole 0.1 kWh counts,
/// modulo 1,000,000,000.
pub fn counts(wh: f64) -> u32 {
    (wh / WH_PER_COUNT).floor().rem_euclid(COUNTER_MODULUS) as u32
}

/// The 0x4048 block from the import counters `[Wh, varh, VAh]`. The simulated loads never
/// export, so the export counters stay 0, totals equal imports and nets equal imports.
pub fn energy([wh, varh, vah]: [f64; 3]) -> [u16; ENERGY_LEN] {
    let (p, q, s) = (counts(wh), counts(varh), counts(vah));
    // Counts stay below 10^9 < 2^31, so the i32 "net" registers hold them unchanged.
    let words = [p, 0, q, 0, p, p, q, q, s];
    let mut regs = [0u16; ENERGY_LEN];
    for (k, x) in words.into_iter().enumerate() {
        [regs[2 * k], regs[2 * k + 1]] = dword(x);
    }
    regs
}

/// What the settings block shows for one meter.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub unit_id: u8,
    pub wiring: Wiring,
    pub pt1: u32,
    pub pt2: u16,
    pub ct1: u16,
    pub ct2: u16,
    pub mode: ParameterMode,
}

/// 0x1000..=0x1045. Registers the simulator has no meaning for read 0.
pub fn settings(s: &Settings, run_time_hours: f64, now: DateTime<Utc>) -> [u16; SETTINGS_LEN] {
    let mut regs = [0u16; SETTINGS_LEN];
    let at = |address: u16| usize::from(address - SETTINGS);
    regs[at(0x1001)] = u16::from(s.unit_id);
    regs[at(0x1003)] = s.wiring.code();
    regs[at(0x1004)] = 0; // 3CT
    [regs[at(0x1005)], regs[at(0x1006)]] = dword(s.pt1);
    regs[at(0x1007)] = s.pt2;
    regs[at(0x1008)] = s.ct1;
    regs[at(0x1009)] = s.ct2;
    regs[at(0x1015)] = 0; // IEC sign convention
    regs[at(0x1019)] = 0; // energy shown as primary, 0.1 kWh counts
    regs[at(0x101D)] = s.mode.code();
    [regs[at(0x1034)], regs[at(0x1035)]] = dword((run_time_hours.max(0.0) * 100.0) as u32);
    let clock = [now.year() as u32, now.month(), now.day(), now.hour(), now.minute(), now.second()];
    for (k, x) in clock.into_iter().enumerate() {
        regs[at(0x1040) + k] = x as u16;
    }
    regs
}

/// ASCII, two characters per register, first character in the high byte.
pub fn ascii<const N: usize>(text: &[u8]) -> [u16; N] {
    let mut regs = [0u16; N];
    for (k, reg) in regs.iter_mut().enumerate() {
        let byte = |i: usize| u16::from(text.get(i).copied().unwrap_or(0));
        *reg = byte(2 * k) << 8 | byte(2 * k + 1);
    }
    regs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_float_example_round_trips() {
        assert_eq!(float_words(230.5), [0x4366, 0x8000]);
    }

    #[test]
    fn reads_inside_a_block_are_served_and_others_are_illegal_addresses() {
        assert_eq!(locate(0x4000, 72), Ok((Block::RealTime, 0)));
        assert_eq!(locate(0x4022, 2), Ok((Block::RealTime, 0x22)));
        assert_eq!(locate(0x4048, 18), Ok((Block::Energy, 0)));
        assert_eq!(locate(0x1003, 27), Ok((Block::Settings, 3)));
        assert_eq!(locate(0xF040, 6), Ok((Block::Serial, 0)));
        assert_eq!(locate(0x4000, 73), Err(ExceptionCode::IllegalDataAddress), "spills into the energy block");
        assert_eq!(locate(0x4047, 2), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(locate(0xC350, 2), Err(ExceptionCode::IllegalDataAddress), "SunSpec needs the AXM-WEB module");
        assert_eq!(locate(0x4000, 0), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(locate(0x1000, 126), Err(ExceptionCode::IllegalDataValue));
    }

    #[test]
    fn block_start_finds_the_enclosing_block() {
        assert_eq!(block_start(0x4048), Some(ENERGY));
        assert_eq!(block_start(0x4050), Some(ENERGY));
        assert_eq!(block_start(0x4047), Some(REAL_TIME));
        assert_eq!(block_start(0xC350), None);
    }

    #[test]
    fn counters_quantise_down_and_wrap_after_999_999_999() {
        assert_eq!(counts(199.9), 1);
        assert_eq!(counts(99_999_999_999.0), 999_999_999);
        assert_eq!(counts(100_000_000_000.0), 0);
        assert_eq!(counts(100_000_000_250.0), 2);
        assert_eq!(counts(-50.0), 999_999_999, "below zero wraps from the top");
    }

    #[test]
    fn energy_block_is_u32_high_word_first() {
        let regs = energy([12_345_678_900.0, 200.0, 0.0]);
        assert_eq!([regs[0], regs[1]], [0x075B, 0xCD15]); // 123,456,789 counts
        assert_eq!([regs[2], regs[3]], [0, 0], "no export");
        assert_eq!([regs[4], regs[5]], [0, 2]);
        assert_eq!([regs[10], regs[11]], [0x075B, 0xCD15], "net = import");
    }

    #[test]
    fn secondary_mode_divides_by_the_ratios_and_3ll_blanks_the_phase_values() {
        let r = Reading {
            v_ln: [6350.0; 3],
            v_ll: [11_000.0; 3],
            current: [160.0; 3],
            p: [1000.0; 3],
            p_total: 3000.0,
            pf: [0.9; 3],
            pf_total: 0.9,
            ..Reading::default()
        };
        let scale = Scaling::new(ParameterMode::Secondary, 11_000, 110, 200, 5);
        let regs = real_time(&r, Wiring::ThreeLl, scale);
        let float = |reg: usize| f32::from_bits(u32::from(regs[reg]) << 16 | u32::from(regs[reg + 1]));
        assert_eq!(float(0x02), 0.0, "V1 in 3LL");
        assert_eq!(float(0x0A), 110.0, "V12 = 11000 / (11000/110)");
        assert_eq!(float(0x12), 4.0, "I1 = 160 / (200/5)");
        assert_eq!(float(0x1C), 0.0, "P1 in 3LL");
        assert_eq!(float(0x22), 0.75, "P total = 3000 / (100 × 40)");
        assert_eq!(float(0x3A), 0.9, "PF total");
        assert_eq!(float(0x40), 76.0, "inductive load");
    }

    #[test]
    fn settings_hold_the_ratios_mode_and_clock() {
        let s = Settings {
            unit_id: 7,
            wiring: Wiring::ThreeLl,
            pt1: 110_000,
            pt2: 110,
            ct1: 200,
            ct2: 5,
            mode: ParameterMode::Secondary,
        };
        let now = DateTime::parse_from_rfc3339("2026-03-04T05:06:07Z").unwrap().with_timezone(&Utc);
        let regs = settings(&s, 12.5, now);
        assert_eq!(regs[0x01], 7);
        assert_eq!(regs[0x03], 3);
        assert_eq!([regs[0x05], regs[0x06]], [0x0001, 0xADB0]); // 110,000
        assert_eq!([regs[0x07], regs[0x08], regs[0x09]], [110, 200, 5]);
        assert_eq!(regs[0x1D], 0);
        assert_eq!(regs[0x35], 1250);
        assert_eq!(regs[0x40..0x46], [2026, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn ascii_packs_two_characters_per_register() {
        assert_eq!(ascii::<2>(b"AC2S"), [0x4143, 0x3253]);
        assert_eq!(ascii::<3>(b"ABC"), [0x4142, 0x4300, 0]);
    }
}
