//! Acuvim register maps as data, and the pure decoder from register words to a reading in SI
//! units. No I/O here: the poller reads the blocks a [`Profile`] names and hands the words in.
//!
//! The map and its traps are in `acuvim-registers.md` (docs): the manual's hex addresses are the
//! PDU addresses; floats are IEEE-754 f32 with the high word first; energy counters are u32
//! counts that wrap after 999,999,999; and in secondary mode (0x101D = 0, the factory default)
//! the floats are secondary-side values that must be scaled by the PT and CT ratios.

use serde::{Deserialize, Serialize};

use crate::measurements::{Reading, counter_index, real_index};

/// Which register map a device uses (`monitoring."Devices"."Model"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    AcuvimII,
    /// Acuvim L / CL / KL. Behind an AXM-WEB2 these answer the Acuvim II real-time and settings
    /// addresses (field reports); their own energy block is at 0x0156.
    AcuvimL,
}

impl Model {
    /// The database's model name; "generic" Modbus meters get the Acuvim II map.
    pub fn from_db(name: &str) -> Model {
        match name {
            "acuvim-l" => Model::AcuvimL,
            _ => Model::AcuvimII,
        }
    }

    pub fn profile(self) -> &'static Profile {
        match self {
            Model::AcuvimII => &ACUVIM_II,
            Model::AcuvimL => &ACUVIM_L,
        }
    }
}

/// What a block holds, and so how it is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    /// Instantaneous floats (0x4000 on the Acuvim II).
    RealTime,
    /// Cumulative u32 energy counters: (register offset in the block, index in `Reading::counters`).
    Energy(&'static [(usize, usize)]),
    /// Decoded by [`MeterSettings::decode`], not by [`decode_block`].
    Settings,
    /// Decoded by [`decode_sunspec`] / [`decode_v3`], not by [`decode_block`].
    Identity,
}

/// A contiguous range of holding registers read with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Stable name, stored in `"UnsupportedBlocks"` and shown to users.
    pub name: &'static str,
    pub start: u16,
    pub count: u16,
    pub kind: BlockKind,
}

/// The register map of one model.
#[derive(Debug)]
pub struct Profile {
    /// Read on every poll.
    pub blocks: &'static [Block],
    /// The settings block (wiring, PT/CT, modes), read at connect and hourly.
    pub settings: Block,
}

/// 0x1003 (voltage wiring) .. 0x101D (basic parameter mode).
const SETTINGS: Block =
    Block { name: "settings", start: 0x1003, count: 0x101D - 0x1003 + 1, kind: BlockKind::Settings };

static ACUVIM_II: Profile = Profile {
    blocks: &[
        Block { name: "real-time", start: 0x4000, count: 72, kind: BlockKind::RealTime },
        Block { name: "energy", start: 0x4048, count: 18, kind: BlockKind::Energy(&ENERGY_MAP_II) },
    ],
    settings: SETTINGS,
};

static ACUVIM_L: Profile = Profile {
    blocks: &[
        Block { name: "real-time", start: 0x4000, count: 72, kind: BlockKind::RealTime },
        Block { name: "energy", start: 0x0156, count: 10, kind: BlockKind::Energy(&ENERGY_MAP_L) },
    ],
    settings: SETTINGS,
};

/// Why registers could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the {block} block returned {got} registers, expected {expected}")]
    Length { block: &'static str, got: usize, expected: usize },
    #[error("the meter reports {0} = 0, so its values cannot be scaled")]
    ZeroRatio(&'static str),
}

/// Voltage wiring (0x1003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Wiring {
    #[serde(rename = "3LN")]
    ThreeLn,
    #[serde(rename = "1LN")]
    OneLn,
    #[serde(rename = "2LL")]
    TwoLl,
    #[serde(rename = "3LL")]
    ThreeLl,
    #[serde(rename = "1LL")]
    OneLl,
}

impl Wiring {
    fn from_register(raw: u16) -> Option<Wiring> {
        Some(match raw {
            0 => Wiring::ThreeLn,
            1 => Wiring::OneLn,
            2 => Wiring::TwoLl,
            3 => Wiring::ThreeLl,
            4 => Wiring::OneLl,
            _ => return None,
        })
    }

    /// Without a neutral the line-to-neutral voltages and per-phase powers mean nothing.
    pub fn has_neutral(self) -> bool {
        matches!(self, Wiring::ThreeLn | Wiring::OneLn)
    }
}

/// The meter's own settings, as read from the settings block: everything needed to turn its
/// registers into primary-side SI values. Stored on the device as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeterSettings {
    /// `None` when the meter reports a wiring code the map does not know (treated as 3LN).
    pub wiring: Option<Wiring>,
    pub pt1: u32,
    pub pt2: u16,
    pub ct1: u16,
    pub ct2: u16,
    /// 0x101D: true when the real-time floats are already primary-side values.
    pub primary_values: bool,
    /// 0x1019: true when the energy counters are secondary-side counts of 0.001 kWh.
    pub secondary_energy: bool,
    /// 0x1015: 0 = IEC, 1 = IEEE sign convention for var and PF.
    pub var_convention: u16,
}

impl MeterSettings {
    /// For a meter that refuses its settings registers: values taken as they come.
    pub const UNSCALED: MeterSettings = MeterSettings {
        wiring: None,
        pt1: 1,
        pt2: 1,
        ct1: 1,
        ct2: 1,
        primary_values: true,
        secondary_energy: false,
        var_convention: 0,
    };

    /// Decodes the settings block (0x1003 ..= 0x101D).
    pub fn decode(words: &[u16]) -> Result<MeterSettings, DecodeError> {
        expect_len(&SETTINGS, words)?;
        let at = |address: u16| words[usize::from(address - SETTINGS.start)];
        let settings = MeterSettings {
            wiring: Wiring::from_register(at(0x1003)),
            pt1: u32_at(words, usize::from(0x1005 - SETTINGS.start)),
            pt2: at(0x1007),
            ct1: at(0x1008),
            // 333 mV and mA current inputs report other codes; the manual rates them as 1 A.
            ct2: match at(0x1009) {
                5 => 5,
                0 => 0,
                _ => 1,
            },
            var_convention: at(0x1015),
            secondary_energy: at(0x1019) == 1,
            primary_values: at(0x101D) == 1,
        };
        if settings.pt2 == 0 {
            return Err(DecodeError::ZeroRatio("PT2"));
        }
        if settings.ct2 == 0 {
            return Err(DecodeError::ZeroRatio("CT2"));
        }
        Ok(settings)
    }

    pub fn pt_ratio(&self) -> f64 {
        f64::from(self.pt1) / f64::from(self.pt2)
    }

    pub fn ct_ratio(&self) -> f64 {
        f64::from(self.ct1) / f64::from(self.ct2)
    }

    /// Factors that turn the real-time floats into primary values.
    fn value_scale(&self) -> Scale {
        if self.primary_values {
            Scale { voltage: 1.0, current: 1.0 }
        } else {
            Scale { voltage: self.pt_ratio(), current: self.ct_ratio() }
        }
    }

    /// Wh per counter count.
    fn energy_wh_per_count(&self) -> f64 {
        if self.secondary_energy {
            // Counts of 0.001 kWh on the secondary side: 1 Wh, scaled up to the primary side.
            self.pt_ratio() * self.ct_ratio()
        } else {
            100.0
        }
    }

    fn has_neutral(&self) -> bool {
        self.wiring.is_none_or(Wiring::has_neutral)
    }
}

struct Scale {
    voltage: f64,
    current: f64,
}

/// How a real-time value scales from secondary to primary, and what range is believable.
#[derive(Clone, Copy)]
enum Quantity {
    Frequency,
    Voltage,
    Current,
    Power,
    PowerFactor,
}

impl Quantity {
    fn factor(self, scale: &Scale) -> f64 {
        match self {
            Quantity::Voltage => scale.voltage,
            Quantity::Current => scale.current,
            Quantity::Power => scale.voltage * scale.current,
            Quantity::Frequency | Quantity::PowerFactor => 1.0,
        }
    }

    /// Values outside these bounds are meter glitches or wrong registers, never measurements.
    fn plausible(self, v: f64) -> bool {
        match self {
            Quantity::Frequency => (40.0..=70.0).contains(&v),
            Quantity::Voltage => (0.0..=1.0e6).contains(&v),
            Quantity::Current => (0.0..=1.0e6).contains(&v),
            Quantity::Power => v.abs() <= 1.0e10,
            Quantity::PowerFactor => (-1.0..=1.0).contains(&v),
        }
    }
}

/// The Acuvim II real-time block: (register offset from 0x4000, index in `Reading::real`, quantity,
/// per-phase value that needs a neutral). Averages, unbalance and load type are not stored.
const REAL_TIME_MAP: [(u16, usize, Quantity, bool); 30] = [
    (0x00, real_index("frequency"), Quantity::Frequency, false),
    (0x02, real_index("v1"), Quantity::Voltage, true),
    (0x04, real_index("v2"), Quantity::Voltage, true),
    (0x06, real_index("v3"), Quantity::Voltage, true),
    (0x0A, real_index("v12"), Quantity::Voltage, false),
    (0x0C, real_index("v23"), Quantity::Voltage, false),
    (0x0E, real_index("v31"), Quantity::Voltage, false),
    (0x12, real_index("i1"), Quantity::Current, false),
    (0x14, real_index("i2"), Quantity::Current, false),
    (0x16, real_index("i3"), Quantity::Current, false),
    (0x1A, real_index("iN"), Quantity::Current, false),
    (0x1C, real_index("p1"), Quantity::Power, true),
    (0x1E, real_index("p2"), Quantity::Power, true),
    (0x20, real_index("p3"), Quantity::Power, true),
    (0x22, real_index("pTotal"), Quantity::Power, false),
    (0x24, real_index("q1"), Quantity::Power, true),
    (0x26, real_index("q2"), Quantity::Power, true),
    (0x28, real_index("q3"), Quantity::Power, true),
    (0x2A, real_index("qTotal"), Quantity::Power, false),
    (0x2C, real_index("s1"), Quantity::Power, true),
    (0x2E, real_index("s2"), Quantity::Power, true),
    (0x30, real_index("s3"), Quantity::Power, true),
    (0x32, real_index("sTotal"), Quantity::Power, false),
    (0x34, real_index("pf1"), Quantity::PowerFactor, true),
    (0x36, real_index("pf2"), Quantity::PowerFactor, true),
    (0x38, real_index("pf3"), Quantity::PowerFactor, true),
    (0x3A, real_index("pfTotal"), Quantity::PowerFactor, false),
    (0x42, real_index("demandW"), Quantity::Power, false),
    (0x44, real_index("demandVar"), Quantity::Power, false),
    (0x46, real_index("demandVA"), Quantity::Power, false),
];

/// Energy counters: (register offset in the block, index in `Reading::counters`). The same order on
/// both maps: import, export, reactive import, reactive export; kVAh sits after the totals and
/// nets on the Acuvim II (offset 16) and right after on the Acuvim L (offset 8).
const ENERGY_MAP_II: [(usize, usize); 5] = [
    (0, counter_index("energyImportWh")),
    (2, counter_index("energyExportWh")),
    (4, counter_index("reactiveImportVarh")),
    (6, counter_index("reactiveExportVarh")),
    (16, counter_index("apparentVAh")),
];
const ENERGY_MAP_L: [(usize, usize); 5] = [
    (0, counter_index("energyImportWh")),
    (2, counter_index("energyExportWh")),
    (4, counter_index("reactiveImportVarh")),
    (6, counter_index("reactiveExportVarh")),
    (8, counter_index("apparentVAh")),
];

/// The last count before the counters wrap to 0.
pub const COUNTER_MAX: u32 = 999_999_999;

/// Adds one block's values to `reading`, in primary-side SI units. NaN, infinities and
/// implausible values become NULL, as do per-phase values that need a neutral the wiring lacks.
pub fn decode_block(
    block: &Block,
    words: &[u16],
    settings: &MeterSettings,
    reading: &mut Reading,
) -> Result<(), DecodeError> {
    expect_len(block, words)?;
    match block.kind {
        BlockKind::RealTime => {
            let scale = settings.value_scale();
            let neutral = settings.has_neutral();
            for (offset, index, quantity, needs_neutral) in REAL_TIME_MAP {
                let raw = f32_at(words, usize::from(offset));
                let value = f64::from(raw) * quantity.factor(&scale);
                let keep = value.is_finite() && quantity.plausible(value) && (neutral || !needs_neutral);
                reading.real[index] = keep.then_some(value as f32);
            }
        }
        BlockKind::Energy(map) => {
            let wh_per_count = settings.energy_wh_per_count();
            for &(offset, index) in map {
                let count = u32_at(words, offset);
                reading.counters[index] = (count <= COUNTER_MAX).then(|| f64::from(count) * wh_per_count);
            }
        }
        BlockKind::Settings | BlockKind::Identity => {}
    }
    Ok(())
}

fn expect_len(block: &Block, words: &[u16]) -> Result<(), DecodeError> {
    if words.len() == usize::from(block.count) {
        Ok(())
    } else {
        Err(DecodeError::Length { block: block.name, got: words.len(), expected: usize::from(block.count) })
    }
}

fn u32_at(words: &[u16], offset: usize) -> u32 {
    (u32::from(words[offset]) << 16) | u32::from(words[offset + 1])
}

fn f32_at(words: &[u16], offset: usize) -> f32 {
    f32::from_bits(u32_at(words, offset))
}

// ---------------------------------------------------------------- identity

/// What the meter says about itself, from the identity probe at connect.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeterIdentity {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firmware: Option<String>,
    /// "sunspec" (AXM-WEB/WEB2 module) or "v3" (V3 firmware registers).
    pub source: String,
}

/// The SunSpec marker "SunS" and common model (model 1): present only with an AXM-WEB module.
pub const SUNSPEC: Block = Block { name: "sunspec", start: 0xC350, count: 68, kind: BlockKind::Identity };
/// V3 firmware model name (2 registers) and serial number (6 registers).
pub const V3_MODEL: Block = Block { name: "v3-model", start: 0xF000, count: 2, kind: BlockKind::Identity };
pub const V3_SERIAL: Block = Block { name: "v3-serial", start: 0xF040, count: 6, kind: BlockKind::Identity };

/// Decodes the SunSpec block; `None` without the "SunS" marker and common model 1.
pub fn decode_sunspec(words: &[u16]) -> Option<MeterIdentity> {
    if words.len() != usize::from(SUNSPEC.count) || ascii(&words[0..2]) != "SunS" || words[2] != 1 {
        return None;
    }
    // Common model after the 2-word marker, id and length: Mn 16, Md 16, Opt 8, Vr 8, SN 16.
    let field = |from: usize, len: usize| Some(ascii(&words[from..from + len])).filter(|s| !s.is_empty());
    Some(MeterIdentity {
        manufacturer: field(4, 16),
        model: field(20, 16),
        firmware: field(44, 8),
        serial: field(52, 16),
        source: "sunspec".into(),
    })
}

/// Decodes the V3 firmware's model and serial registers.
pub fn decode_v3(model: &[u16], serial: &[u16]) -> Option<MeterIdentity> {
    let model = Some(ascii(model)).filter(|s| !s.is_empty());
    let serial = Some(ascii(serial)).filter(|s| !s.is_empty());
    (model.is_some() || serial.is_some()).then(|| MeterIdentity {
        manufacturer: Some("Accuenergy".into()),
        model,
        serial,
        firmware: None,
        source: "v3".into(),
    })
}

/// Two ASCII characters per register, high byte first; NUL padding and spaces trimmed,
/// anything unprintable dropped (it would end up on a web page).
fn ascii(words: &[u16]) -> String {
    let bytes = words.iter().flat_map(|w| w.to_be_bytes());
    let text: String = bytes.filter(|b| b.is_ascii_graphic() || *b == b' ').map(char::from).collect();
    text.trim().to_string()
}

#[cfg(test)]
mod tests;
