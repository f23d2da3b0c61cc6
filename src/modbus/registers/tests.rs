use chrono::Utc;

use super::*;
use crate::measurements::{counter_index, real_index};

fn words_of(v: f32) -> [u16; 2] {
    let bits = v.to_bits();
    [(bits >> 16) as u16, bits as u16]
}

/// A settings block: wiring, PT1 (u32), PT2, CT1, CT2, energy mode, parameter mode.
fn settings_words(wiring: u16, pt1: u32, pt2: u16, ct1: u16, ct2: u16, primary: bool) -> Vec<u16> {
    let mut w = vec![0u16; usize::from(SETTINGS.count)];
    let at = |a: u16| usize::from(a - 0x1003);
    w[at(0x1003)] = wiring;
    w[at(0x1005)] = (pt1 >> 16) as u16;
    w[at(0x1006)] = pt1 as u16;
    w[at(0x1007)] = pt2;
    w[at(0x1008)] = ct1;
    w[at(0x1009)] = ct2;
    w[at(0x101D)] = u16::from(primary);
    w
}

fn primary() -> MeterSettings {
    MeterSettings::decode(&settings_words(0, 400, 400, 5, 5, true)).unwrap()
}

/// A real-time block with every float set to `fill`, then the given (offset, value) pairs.
fn real_time(fill: f32, values: &[(u16, f32)]) -> Vec<u16> {
    let mut w: Vec<u16> = std::iter::repeat_n(words_of(fill), 36).flatten().collect();
    for &(offset, v) in values {
        let [hi, lo] = words_of(v);
        w[usize::from(offset)] = hi;
        w[usize::from(offset) + 1] = lo;
    }
    w
}

fn decode(block: &Block, words: &[u16], settings: &MeterSettings) -> Reading {
    let mut reading = Reading::empty(1, Utc::now());
    decode_block(block, words, settings, &mut reading).unwrap();
    reading
}

fn real(r: &Reading, name: &str) -> Option<f32> {
    r.real[real_index(name)]
}

const REAL_TIME: Block = ACUVIM_II.blocks[0];
const ENERGY: Block = ACUVIM_II.blocks[1];

#[test]
fn the_documented_float_230_5_volts_decodes_from_its_two_words() {
    // The manual's example: 230.5 V is 0x4366 0x8000 (high word first).
    let mut words = real_time(0.0, &[]);
    words[2] = 0x4366;
    words[3] = 0x8000;
    let r = decode(&REAL_TIME, &words, &primary());
    assert_eq!(real(&r, "v1"), Some(230.5));
}

#[test]
fn every_stored_real_time_value_comes_from_its_documented_register() {
    // Each quantity gets a distinct value so a shifted offset shows up as a wrong number.
    let cases: [(u16, &str, f32); 12] = [
        (0x4000, "frequency", 50.02),
        (0x4006, "v3", 229.0),
        (0x400A, "v12", 398.5),
        (0x4012, "i1", 12.5),
        (0x401A, "iN", 0.75),
        (0x401C, "p1", 39.23),
        (0x4022, "pTotal", 8_600.0),
        (0x402A, "qTotal", -1_200.0),
        (0x4032, "sTotal", 8_700.0),
        (0x403A, "pfTotal", 0.971),
        (0x4042, "demandW", 8_100.0),
        (0x4046, "demandVA", 8_300.0),
    ];
    let values: Vec<(u16, f32)> = cases.iter().map(|&(a, _, v)| (a - 0x4000, v)).collect();
    let r = decode(&REAL_TIME, &real_time(0.0, &values), &primary());
    for (address, name, value) in cases {
        assert_eq!(real(&r, name), Some(value), "{name} at {address:#06X}");
    }
}

#[test]
fn secondary_values_are_scaled_by_the_pt_and_ct_ratios() {
    // 11 kV / 110 V voltage transformer, 200 A / 5 A current transformers, secondary mode.
    let settings = MeterSettings::decode(&settings_words(3, 11_000, 110, 200, 5, false)).unwrap();
    assert_eq!((settings.pt_ratio(), settings.ct_ratio()), (100.0, 40.0));
    let r = decode(
        &REAL_TIME,
        &real_time(0.0, &[(0x0A, 110.0), (0x12, 4.0), (0x22, 700.0), (0x3A, 0.92), (0x00, 50.0)]),
        &settings,
    );
    assert_eq!(real(&r, "v12"), Some(11_000.0));
    assert_eq!(real(&r, "i1"), Some(160.0));
    assert_eq!(real(&r, "pTotal"), Some(2_800_000.0));
    // Neither frequency nor power factor scale.
    assert_eq!(real(&r, "pfTotal"), Some(0.92));
    assert_eq!(real(&r, "frequency"), Some(50.0));
}

#[test]
fn primary_mode_values_are_taken_as_they_are() {
    let settings = MeterSettings::decode(&settings_words(0, 11_000, 110, 200, 5, true)).unwrap();
    let r = decode(&REAL_TIME, &real_time(0.0, &[(0x12, 160.0)]), &settings);
    assert_eq!(real(&r, "i1"), Some(160.0));
}

#[test]
fn three_wire_wiring_stores_no_line_to_neutral_or_per_phase_power() {
    let settings = MeterSettings::decode(&settings_words(3, 400, 400, 5, 5, true)).unwrap();
    let r = decode(&REAL_TIME, &real_time(0.5, &[]), &settings);
    for name in ["v1", "v2", "v3", "p1", "p2", "p3", "q1", "q3", "s2", "pf1", "pf3"] {
        assert_eq!(real(&r, name), None, "{name}");
    }
    for name in ["v12", "i1", "pTotal", "pfTotal"] {
        assert_eq!(real(&r, name), Some(0.5), "{name}");
    }
}

#[test]
fn nan_infinite_and_absurd_values_become_null() {
    let r = decode(
        &REAL_TIME,
        &real_time(1.0, &[(0x00, f32::NAN), (0x02, f32::INFINITY), (0x12, -3.0), (0x3A, 1.7), (0x22, 3.0e11)]),
        &primary(),
    );
    for name in ["frequency", "v1", "i1", "pfTotal", "pTotal"] {
        assert_eq!(real(&r, name), None, "{name}");
    }
    assert_eq!(real(&r, "v2"), Some(1.0));
}

fn energy_words(counts: [u32; 9]) -> Vec<u16> {
    counts.iter().flat_map(|c| [(c >> 16) as u16, *c as u16]).collect()
}

#[test]
fn energy_counters_are_u32_counts_of_a_tenth_of_a_kilowatt_hour() {
    // import, export, kvarh import, kvarh export, kWh total, kWh net, kvarh total, net, kVAh
    let words = energy_words([123_456_789, 42, 7, 8, 0, 0, 0, 0, COUNTER_MAX]);
    let r = decode(&ENERGY, &words, &primary());
    assert_eq!(r.counters[counter_index("energyImportWh")], Some(12_345_678_900.0));
    assert_eq!(r.counters[counter_index("energyExportWh")], Some(4_200.0));
    assert_eq!(r.counters[counter_index("reactiveImportVarh")], Some(700.0));
    assert_eq!(r.counters[counter_index("reactiveExportVarh")], Some(800.0));
    assert_eq!(r.counters[counter_index("apparentVAh")], Some(99_999_999_900.0));
}

#[test]
fn a_count_beyond_the_wrap_point_is_not_a_reading() {
    let words = energy_words([1_000_000_000, 0, 0, 0, 0, 0, 0, 0, u32::MAX]);
    let r = decode(&ENERGY, &words, &primary());
    assert_eq!(r.counters[counter_index("energyImportWh")], None);
    assert_eq!(r.counters[counter_index("apparentVAh")], None);
}

#[test]
fn secondary_energy_mode_counts_watt_hours_on_the_secondary_side() {
    let mut words = settings_words(0, 11_000, 110, 200, 5, false);
    words[usize::from(0x1019u16 - 0x1003)] = 1;
    let settings = MeterSettings::decode(&words).unwrap();
    let r = decode(&ENERGY, &energy_words([5, 0, 0, 0, 0, 0, 0, 0, 0]), &settings);
    assert_eq!(r.counters[counter_index("energyImportWh")], Some(5.0 * 100.0 * 40.0));
}

#[test]
fn settings_with_a_zero_secondary_rating_are_refused() {
    assert_eq!(MeterSettings::decode(&settings_words(0, 400, 0, 5, 5, true)), Err(DecodeError::ZeroRatio("PT2")));
    assert_eq!(MeterSettings::decode(&settings_words(0, 400, 400, 5, 0, true)), Err(DecodeError::ZeroRatio("CT2")));
}

#[test]
fn a_short_reply_is_an_error_not_a_shifted_reading() {
    let mut reading = Reading::empty(1, Utc::now());
    let err = decode_block(&REAL_TIME, &[0; 70], &primary(), &mut reading).unwrap_err();
    assert_eq!(err, DecodeError::Length { block: "real-time", got: 70, expected: 72 });
    assert_eq!(reading, Reading::empty(1, reading.time));
}

fn ascii_words(s: &str, len: usize) -> Vec<u16> {
    let mut bytes = s.as_bytes().to_vec();
    bytes.resize(len * 2, 0);
    bytes.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect()
}

#[test]
fn the_sunspec_common_model_gives_manufacturer_model_and_serial() {
    let mut words = ascii_words("SunS", 2);
    words.extend([1, 66]);
    words.extend(ascii_words("Accuenergy", 16));
    words.extend(ascii_words("AcuvimII", 16));
    words.extend(ascii_words("", 8));
    words.extend(ascii_words("3.62", 8));
    words.extend(ascii_words("AC1234567", 16));
    let id = decode_sunspec(&words).unwrap();
    assert_eq!(id.manufacturer.as_deref(), Some("Accuenergy"));
    assert_eq!(id.model.as_deref(), Some("AcuvimII"));
    assert_eq!(id.firmware.as_deref(), Some("3.62"));
    assert_eq!(id.serial.as_deref(), Some("AC1234567"));
    words[0] = 0;
    assert_eq!(decode_sunspec(&words), None);
}

#[test]
fn v3_identity_drops_unprintable_bytes() {
    let id = decode_v3(&ascii_words("AV2", 2), &[0x4142, 0x0031, 0x3233, 0x1b00, 0, 0]).unwrap();
    assert_eq!(id.model.as_deref(), Some("AV2"));
    assert_eq!(id.serial.as_deref(), Some("AB123"));
    assert_eq!(decode_v3(&[0, 0], &[0; 6]), None);
}
