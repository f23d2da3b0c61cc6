//! The tariff library: published tariffs shipped with the binary, offered in Settings → Rates
//! as "Start from a published tariff". Each entry is two files in `src/tariffs/library/`:
//! `{key}.json`, an ordinary tariff document (importable as it is; its `source` names the
//! published document, its versions the effective dates), and `{key}.municipality.json`, the
//! utility's name and the municipality its tariffs need (country, currency, VAT %, public
//! holidays), used when the admin imports the entry into a new municipality.

use serde::Deserialize;

use super::model::{self, Municipality, Problem, TariffDoc};

/// `(key, tariff document, municipality block)` of every entry, in the order the list shows.
const ENTRIES: &[(&str, &str, &str)] = &[
    (
        "ontario-oeb-rpp-tou",
        include_str!("library/ontario-oeb-rpp-tou.json"),
        include_str!("library/ontario-oeb-rpp-tou.municipality.json"),
    ),
    (
        "de-malchow-ns-rlm-2025",
        include_str!("library/de-malchow-ns-rlm-2025.json"),
        include_str!("library/de-malchow-ns-rlm-2025.municipality.json"),
    ),
    (
        "za-eskom-megaflex-2025",
        include_str!("library/za-eskom-megaflex-2025.json"),
        include_str!("library/za-eskom-megaflex-2025.municipality.json"),
    ),
    (
        "us-sdge-al-tou-2024-10-01",
        include_str!("library/us-sdge-al-tou-2024-10-01.json"),
        include_str!("library/us-sdge-al-tou-2024-10-01.municipality.json"),
    ),
];

/// `{key}.municipality.json`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Publisher {
    utility: String,
    municipality: Municipality,
}

/// A library entry, read and validated.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: &'static str,
    pub utility: String,
    pub municipality: Municipality,
    pub tariff: TariffDoc,
}

impl Entry {
    /// "2024-11-01 to 2025-10-31; 2025-11-01 to 2026-04-30": the versions' effective dates.
    pub fn effective(&self) -> String {
        self.tariff
            .versions
            .iter()
            .map(|v| match v.effective_to {
                Some(to) => format!("{} to {to}", v.effective_from),
                None => format!("from {}", v.effective_from),
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// One entry's files read and validated like an import; the problems otherwise, each naming
/// the file and the field.
fn read(key: &'static str, tariff: &str, publisher: &str) -> Result<Entry, Vec<Problem>> {
    let problem = |file: String, e: serde_json::Error| Problem {
        field: format!("{file}, line {}, column {}", e.line(), e.column()),
        message: e.to_string(),
    };
    let doc: TariffDoc = serde_json::from_str(tariff).map_err(|e| vec![problem(format!("{key}.json"), e)])?;
    let p: Publisher =
        serde_json::from_str(publisher).map_err(|e| vec![problem(format!("{key}.municipality.json"), e)])?;
    let mut problems: Vec<Problem> = model::validate(&doc)
        .into_iter()
        .map(|p| Problem { field: format!("{key}.json: {}", p.field), message: p.message })
        .collect();
    problems.extend(
        model::validate_municipality(&p.municipality).into_iter().map(|p| Problem {
            field: format!("{key}.municipality.json: municipality.{}", p.field),
            message: p.message,
        }),
    );
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut municipality = p.municipality;
    // The engine looks holidays up by binary search.
    municipality.holidays.sort_unstable();
    Ok(Entry { key, utility: p.utility, municipality, tariff: doc })
}

/// Every entry that reads and validates (a test holds that all do: a broken one is left out
/// of the list rather than taking Settings → Rates down).
pub fn entries() -> Vec<Entry> {
    ENTRIES
        .iter()
        .filter_map(|(key, tariff, publisher)| match read(key, tariff, publisher) {
            Ok(e) => Some(e),
            Err(problems) => {
                tracing::error!(key, ?problems, "a tariff library entry does not validate");
                None
            }
        })
        .collect()
}

pub fn entry(key: &str) -> Option<Entry> {
    entries().into_iter().find(|e| e.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_library_entry_validates_and_round_trips() {
        let mut keys = Vec::new();
        for (key, tariff, publisher) in ENTRIES {
            let e = read(key, tariff, publisher).unwrap_or_else(|p| panic!("{key}: {p:?}"));
            assert!(!e.tariff.source.trim().is_empty(), "{key} names its published source");
            assert!(!e.utility.trim().is_empty(), "{key} names its utility");
            // Import → export → import: the same tariff.
            let exported = serde_json::to_string_pretty(&e.tariff).unwrap();
            let again = super::super::rates::parse_import(&exported).unwrap_or_else(|p| panic!("{key}: {p:?}"));
            assert_eq!(again, e.tariff, "{key}");
            assert!(!keys.contains(key), "{key} is listed twice");
            keys.push(*key);
        }
        assert_eq!(entries().len(), ENTRIES.len());
    }

    #[test]
    fn a_broken_entry_names_its_file_and_field() {
        let (key, tariff, publisher) = ENTRIES[0];
        let err = read(key, &tariff.replace("\"vat_on\"", "\"vat_onn\""), publisher).unwrap_err();
        assert!(err[0].field.starts_with("ontario-oeb-rpp-tou.json, line "), "{err:?}");
        let err = read(key, tariff, &publisher.replace("\"CAD\"", "\"cad\"")).unwrap_err();
        assert_eq!(err[0].field, "ontario-oeb-rpp-tou.municipality.json: municipality.currency");
    }
}
