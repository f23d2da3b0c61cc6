//! Settings → Rates and the site Cost tab through the real router: the editor's validation, JSON
//! import and export, assignment, bills from a meter's readings written through the store's one
//! write path and rolled up by the real job (the worked example on Ontario's published
//! time-of-use prices and the Homeflex-structured tariff with demand and export, both calculated
//! by hand in src/tariffs/tests.rs), and both CSV exports.

use axum::http::StatusCode;
use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc, Weekday};
use chrono_tz::Tz;
use sqlx::PgPool;
use tau_acuvim_portal::measurements::energy::rollup;
use tau_acuvim_portal::measurements::{self, Quantity, Reading};

use crate::helpers::{ADMIN_PASSWORD, Browser, Reply, TestApp, site_with_devices};

const HOMEFLEX: &str = include_str!("../fixtures/tariffs/homeflex-illustrative.json");
const ONTARIO: &str = include_str!("../../src/tariffs/library/ontario-oeb-rpp-tou.json");

const ESKOM_DIRECT: [(&str, &str); 5] = [
    ("name", "Eskom Direct"),
    ("country", "South Africa"),
    ("currency", "zar"),
    ("vat_percent", "15"),
    ("holidays", "2026-06-16\n2026-08-10"),
];

/// Ontario's HST and the 2025 holidays of the OEFC calendar (the worked example's sources).
const ONTARIO_RPP: [(&str, &str); 5] = [
    ("name", "Ontario (OEB Regulated Price Plan)"),
    ("country", "Canada"),
    ("currency", "CAD"),
    ("vat_percent", "13"),
    (
        "holidays",
        concat!(
            "2025-01-01\n2025-02-17\n2025-04-18\n2025-05-19\n2025-07-01\n",
            "2025-08-04\n2025-09-01\n2025-10-13\n2025-12-25\n2025-12-26"
        ),
    ),
];

async fn admin(app: &TestApp) -> Browser {
    app.seed_admin().await;
    let mut b = app.browser();
    assert_eq!(b.sign_in("admin@example.com", ADMIN_PASSWORD).await.status, StatusCode::SEE_OTHER);
    b
}

/// GETs `page` for its CSRF token and posts `fields` with it to `url`.
pub(crate) async fn submit(b: &mut Browser, page: &str, url: &str, fields: &[(&str, &str)]) -> Reply {
    let csrf = b.get(page).await.csrf();
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    b.post(url, &all).await
}

/// Creates the only municipality of the test; its id.
pub(crate) async fn municipality(b: &mut Browser, fields: &[(&str, &str)]) -> i32 {
    let res = submit(b, "/settings/rates", "/settings/rates/municipalities", fields).await;
    assert_eq!(
        (res.status, res.location()),
        (StatusCode::SEE_OTHER, "/settings/rates?notice=municipality-saved"),
        "{}",
        res.body
    );
    let page = b.get("/settings/rates").await;
    let at = page.body.find(r#"<a href="/settings/rates/municipalities/"#).expect("the municipality is listed");
    let rest = &page.body[at + r#"<a href="/settings/rates/municipalities/"#.len()..];
    rest[..rest.find('"').unwrap()].parse().unwrap()
}

pub(crate) async fn import(b: &mut Browser, municipality: i32, json: &str) -> Reply {
    submit(
        b,
        "/settings/rates",
        "/settings/rates/import",
        &[("municipality_id", &municipality.to_string()), ("json", json)],
    )
    .await
}

/// `submit` with owned field pairs (the editor's grid is built in a loop).
async fn post(b: &mut Browser, url: &str, fields: &[(String, String)]) -> Reply {
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    submit(b, "/settings/rates/tariffs/new", url, &refs).await
}

/// A flat 2.00 per kWh tariff assigned to `site` from 2020 on.
pub(crate) async fn flat_tariff(b: &mut Browser, site: i32) {
    let m = municipality(
        b,
        &[
            ("name", "Flat town"),
            ("country", "South Africa"),
            ("currency", "ZAR"),
            ("vat_percent", "15"),
            ("holidays", ""),
        ],
    )
    .await;
    let flat = r#"{"name": "Flat 2.00", "versions": [{"effective_from": "2020-01-01", "energy": {"kind": "flat", "rate": "2.00"}}]}"#;
    let res = import(b, m, flat).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let tariff = id_after(res.location(), "/settings/rates/tariffs/");
    let res = submit(
        b,
        "/settings/rates",
        "/settings/rates/assignments",
        &[("site_id", &site.to_string()), ("tariff_id", &tariff.to_string()), ("effective_from", "2020-01-01")],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
}

pub(crate) fn id_after(location: &str, prefix: &str) -> i32 {
    location
        .strip_prefix(prefix)
        .and_then(|r| r.split('?').next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("{location}"))
}

#[sqlx::test]
async fn rates_are_for_admins_only(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let page = b.get("/settings/rates").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(r#"href="/settings/rates" aria-current="page">Rates</a>"#),
        "the Settings tab is marked"
    );
    assert!(
        page.body.contains(r#"href="/settings/users" aria-current="false">Settings</a>"#),
        "Rates has its own navigation entry: Settings is not marked as well"
    );
    let csrf = b.get("/settings/users").await.csrf();
    let res = b
        .post(
            "/settings/users",
            &[("csrf", &csrf), ("email", "viewer@example.com"), ("password", "viewer password 123")],
        )
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER);
    let mut viewer = app.browser();
    viewer.sign_in("viewer@example.com", "viewer password 123").await;
    assert_eq!(viewer.get("/settings/rates").await.status, StatusCode::FORBIDDEN);
    assert!(!viewer.get("/").await.body.contains("/settings/rates"), "no Rates entry for a viewer");
    let csrf = viewer.get("/").await.csrf();
    let res =
        viewer.post("/settings/rates/import", &[("csrf", &csrf), ("municipality_id", "1"), ("json", HOMEFLEX)]).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn the_municipality_and_tariff_editors_explain_what_is_wrong(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let res = submit(
        &mut b,
        "/settings/rates",
        "/settings/rates/municipalities",
        &[("name", "City"), ("currency", "RAND"), ("vat_percent", "fifteen")],
    )
    .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.body.contains("enter the three-letter ISO 4217 code")
            || res.body.contains("Enter the three-letter ISO 4217 code"),
        "{}",
        res.body
    );
    assert!(res.body.contains("VAT %: “fifteen” is not a number"), "{}", res.body);
    let m = municipality(&mut b, &ESKOM_DIRECT).await.to_string();

    // A TOU season whose grid uses peak without a peak rate, and whose Saturday has no rows.
    let mut fields: Vec<(String, String)> = vec![
        ("name".into(), "City TOU".into()),
        ("municipality_id".into(), m.clone()),
        ("effective_from".into(), "2026-01-01".into()),
        ("energy_kind".into(), "tou".into()),
        ("holidays_as".into(), "sunday".into()),
        ("season_0_name".into(), "All year".into()),
        ("season_0_from".into(), "01-01".into()),
        ("season_0_to".into(), "12-31".into()),
        ("season_0_off_peak".into(), "1.20".into()),
    ];
    for dt in ["weekday", "saturday", "sunday"] {
        for h in 0..24 {
            let p = if dt == "weekday" && (17..19).contains(&h) { "peak" } else { "off_peak" };
            fields.push((format!("grid_0_{dt}_{h}"), p.into()));
        }
    }
    let res = post(&mut b, "/settings/rates/tariffs/new", &fields).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.body.contains(
            "versions[0].energy.seasons[0].rates.peak</code>: the windows use Peak but the season has no Peak rate."
        ),
        "{}",
        res.body
    );
    fields.push(("season_0_peak".into(), "4.10".into()));
    let res = post(&mut b, "/settings/rates/tariffs/new", &fields).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let id = id_after(res.location(), "/settings/rates/tariffs/");

    // A second version that overlaps the first (open-ended) one.
    let url = format!("/settings/rates/tariffs/{id}");
    let mut second = fields.clone();
    second.retain(|(k, _)| k != "effective_from");
    second.push(("effective_from".into(), "2026-07-01".into()));
    second.push(("version".into(), "1".into()));
    let res = post(&mut b, &url, &second).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.body.contains("versions[1].effective_from</code>: this version (from 2026-07-01) overlaps version 1 (from 2026-01-01, open-ended)"), "{}", res.body);

    // Blocks that do not increase, and a number that is not one.
    let blocks = vec![
        ("name".to_string(), "City blocks".to_string()),
        ("municipality_id".into(), m.clone()),
        ("effective_from".into(), "2026-01-01".into()),
        ("energy_kind".into(), "blocks".into()),
        ("block_0_up_to".into(), "600".into()),
        ("block_0_rate".into(), "2.00".into()),
        ("block_1_up_to".into(), "350".into()),
        ("block_1_rate".into(), "3.00".into()),
        ("block_2_rate".into(), "4.00".into()),
    ];
    let res = post(&mut b, "/settings/rates/tariffs/new", &blocks).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.body.contains("block thresholds must be strictly increasing: 350 kWh is not above 600 kWh"),
        "{}",
        res.body
    );
    let mut bad = blocks;
    bad.push(("fixed_0_rate".into(), "1,50".into()));
    let res = post(&mut b, "/settings/rates/tariffs/new", &bad).await;
    assert!(res.body.contains("Fixed charge 1 rate: “1,50” is not a number"), "{}", res.body);
    let stored: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM portal."Tariffs""#).fetch_one(&app.state.db).await.unwrap();
    assert_eq!(stored, 1, "nothing invalid was stored");

    // The saved tariff's editor shows its grid as entered.
    let page = b.get(&url).await;
    assert!(page.body.contains(r#"name="grid_0_weekday_17" aria-label="Season 1, Weekday, 17:00">"#), "{}", page.body);
    let cell = &page.body[page.body.find(r#"name="grid_0_weekday_17""#).unwrap()..];
    assert!(cell[..cell.find("</select>").unwrap()].contains(r#"<option value="peak" selected>"#));
}

#[sqlx::test]
async fn tariffs_round_trip_through_json_and_import_validates(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let m = municipality(&mut b, &ESKOM_DIRECT).await;
    let res = import(&mut b, m, HOMEFLEX).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let id = id_after(res.location(), "/settings/rates/tariffs/");
    let export = b.get(&format!("/settings/rates/tariffs/{id}/export")).await;
    assert_eq!(export.status, StatusCode::OK);
    assert_eq!(export.headers["content-type"], "application/json");
    let (a, b_): (serde_json::Value, serde_json::Value) =
        (serde_json::from_str(HOMEFLEX).unwrap(), serde_json::from_str(&export.body).unwrap());
    assert_eq!(a, b_, "export gives back what was imported");

    // The same name again, an overlapping window, malformed JSON: refused, each explained.
    let res = import(&mut b, m, HOMEFLEX).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.body.contains("already has a tariff named"), "{}", res.body);
    let overlapping =
        HOMEFLEX.replace("Homeflex structure", "Other").replacen(r#""to": "09:00""#, r#""to": "10:00""#, 1);
    let res = import(&mut b, m, &overlapping).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.body.contains("versions[0].energy.seasons[0].windows[2]</code>: Weekday 09:00–17:00 overlaps window 2 (06:00–10:00) at 09:00."), "{}", res.body);
    let res = import(&mut b, m, "{\"name\": \"x\",").await;
    assert!(res.body.contains("line 1, column"), "{}", res.body);
    let count: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM portal."Tariffs""#).fetch_one(&app.state.db).await.unwrap();
    assert_eq!(count, 1);
}

/// A site in `time_zone` with one meter; (site, device).
async fn site_with_meter(app: &TestApp, time_zone: &str) -> (i32, i32) {
    let (site, devices) = site_with_devices(&app.state.db, "Plant", time_zone, &["meter-1"]).await;
    (site, devices[0])
}

fn time(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
}

/// A meter whose energy in the 15-minute interval starting at `t` is `energy(t)` = (import,
/// export, apparent) Wh, for every interval from `first` to `last` (inclusive): its readings, one
/// at each interval start and one at the end, go through the store's one write path and are
/// rolled up by the real job, so its intervals are exactly these. Returns how many intervals.
pub(crate) async fn meter_energy(
    app: &TestApp,
    device: i32,
    first: &str,
    last: &str,
    energy: impl Fn(DateTime<Utc>) -> (f64, f64, f64),
) -> usize {
    let (first, last) = (time(first), time(last));
    let step = TimeDelta::minutes(15);
    let mut counters = (0.0, 0.0, 0.0);
    let mut readings = Vec::new();
    let mut t = first;
    while t <= last + step {
        let (import, export, apparent) = if t <= last { energy(t) } else { (0.0, 0.0, 0.0) };
        let mut r = Reading::empty(device, t);
        for (name, value) in [
            ("energyImportWh", counters.0),
            ("energyExportWh", counters.1),
            ("apparentVAh", counters.2),
            ("pTotal", import * 4.0),
            ("sTotal", apparent * 4.0),
        ] {
            r.set(Quantity::named(name).unwrap(), Some(value));
        }
        readings.push(r);
        counters = (counters.0 + import, counters.1 + export, counters.2 + apparent);
        t += step;
    }
    measurements::write(&app.state.db, &readings).await.unwrap();
    let report = rollup::run_once(&app.state.db, last + step * 2).await.unwrap();
    assert_eq!(report.readings, readings.len() as u64);
    readings.len() - 1
}

/// The Homeflex-structured example's month (src/tariffs/tests.rs): one meter in Johannesburg,
/// June 2026.
async fn homeflex_june_site(app: &TestApp) -> i32 {
    let (site, device) = site_with_meter(app, "Africa/Johannesburg").await;
    let tz: Tz = "Africa/Johannesburg".parse().unwrap();
    let peak = time("2026-06-10T18:00:00+02:00")..time("2026-06-10T18:30:00+02:00");
    let intervals = meter_energy(app, device, "2026-06-01T00:00:00+02:00", "2026-06-30T23:45:00+02:00", |t| {
        let local = t.with_timezone(&tz);
        let import = if peak.contains(&t) { 10_000.0 } else { 4_000.0 };
        let noon_saturday = local.weekday() == Weekday::Sat && matches!(local.hour(), 12 | 13);
        (import, if noon_saturday { 1_000.0 } else { 0.0 }, import / 0.8)
    })
    .await;
    assert_eq!(intervals, 2880);
    site
}

#[sqlx::test]
async fn an_assigned_tariff_gives_the_hand_calculated_bill_and_csvs(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let m = municipality(&mut b, &ESKOM_DIRECT).await;
    let site = homeflex_june_site(&app).await;
    let cost = b.get(&format!("/sites/{site}/cost?month=2026-06")).await;
    assert!(cost.body.contains("This site has no tariff yet"), "{}", cost.body);

    let res = import(&mut b, m, HOMEFLEX).await;
    let tariff = id_after(res.location(), "/settings/rates/tariffs/");
    let res = submit(
        &mut b,
        "/settings/rates",
        "/settings/rates/assignments",
        &[("site_id", &site.to_string()), ("tariff_id", "")],
    )
    .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.body.contains("Choose a tariff.") && res.body.contains("Enter the first day"), "{}", res.body);
    let res = submit(
        &mut b,
        "/settings/rates",
        "/settings/rates/assignments",
        &[("site_id", &site.to_string()), ("tariff_id", &tariff.to_string()), ("effective_from", "2026-04-01")],
    )
    .await;
    assert_eq!(res.location(), "/settings/rates?notice=tariff-assigned");
    assert!(b.get("/settings/rates").await.body.contains("2026-04-01"));

    let cost = b.get(&format!("/sites/{site}/cost?month=2026-06")).await;
    assert_eq!(cost.status, StatusCode::OK);
    for expected in [
        "High demand · Peak",
        "1692 kWh",
        "10575.00",
        "maximum on 2026-06-10 18:00–18:30",
        "<strong>34402.94</strong>",
        "Data completeness: <strong>100.0 %</strong>",
        "Public holidays: 2026-06-16: billed as Sunday</span>",
        r#"aria-current="page">Cost</a>"#,
    ] {
        assert!(cost.body.contains(expected), "{expected} missing from {}", cost.body);
    }

    let csv = b.get(&format!("/sites/{site}/cost/bill.csv?month=2026-06&read_day=1")).await;
    assert_eq!(csv.headers["content-type"], "text/csv; charset=utf-8");
    assert!(csv.headers["content-disposition"].to_str().unwrap().contains("site-1-2026-06-01-to-2026-06-30-bill.csv"));
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines[0], "kind,code,description,quantity,unit,rate,amount,vat_percent,note,currency");
    assert_eq!(lines[1], "Energy,energy.s1.peak,High demand · Peak,1692,kWh,6.25,10575.00,15,,ZAR");
    assert!(lines.contains(&"Export credit,export,Export credit,32,kWh,0.9,-28.80,15,,ZAR"), "{}", csv.body);
    assert_eq!(lines.last(), Some(&"Total,,,,,,34402.94,,,ZAR"));

    let csv = b.get(&format!("/sites/{site}/cost/intervals.csv?month=2026-06")).await;
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 1 + 2880);
    assert_eq!(lines[1], "2026-06-01 00:00,+02:00,2026-05-31T22:00:00Z,4,0,5,1,false,High demand,off_peak");
    assert!(lines.contains(&"2026-06-10 18:15,+02:00,2026-06-10T16:15:00Z,10,0,12.5,1,false,High demand,peak"));

    // A meter-read day moves the period; bad parameters are refused with a reason.
    let cost = b.get(&format!("/sites/{site}/cost?month=2026-06&read_day=15")).await;
    assert!(cost.body.contains("<strong>2026-06-15</strong> to <strong>2026-07-14</strong>"), "{}", cost.body);
    let bad = b.get(&format!("/sites/{site}/cost?month=June")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // The Overview shows the site's cost figures now that it has a tariff (December has no
    // energy in this test: the figures themselves are checked in tests/api/dashboards.rs).
    let overview = b.get("/").await;
    assert!(overview.body.contains(&format!(r#"data-field="site-{site}-projected-cost">ZAR "#)), "{}", overview.body);
}

/// The worked example (src/tariffs/tests.rs, `ontario_worked_example`, where the bill is
/// calculated by hand and every figure's source is quoted) as an admin does it: Ontario's HST and
/// holidays entered, the published OEB time-of-use tariff imported as JSON and assigned, and the
/// Cost tab for meter-read day 13 (13 October – 12 November 2025, America/Toronto: Thanksgiving,
/// the change to winter hours and prices on 1 November, the 25-hour 2 November).
#[sqlx::test]
async fn the_worked_example_imports_the_published_ontario_tariff_and_bills_it_as_by_hand(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let m = municipality(&mut b, &ONTARIO_RPP).await;
    let res = import(&mut b, m, ONTARIO).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let tariff = id_after(res.location(), "/settings/rates/tariffs/");
    let export = b.get(&format!("/settings/rates/tariffs/{tariff}/export")).await;
    let (a, b_): (serde_json::Value, serde_json::Value) =
        (serde_json::from_str(ONTARIO).unwrap(), serde_json::from_str(&export.body).unwrap());
    assert_eq!(a, b_, "the tariff is stored as published, its sources included");
    // The editor shows the OEB's period names and the seasons' codes, and saving keeps them.
    let page = b.get(&format!("/settings/rates/tariffs/{tariff}")).await;
    for field in [r#"name="period_name_standard" value="Mid-peak""#, r#"name="season_0_code" value="winter""#] {
        assert!(page.body.contains(field), "{field} missing from {}", page.body);
    }

    // 0.5 kWh per 15 minutes, 1 kWh 17:00–19:00 local time.
    let (site, device) = site_with_meter(&app, "America/Toronto").await;
    let toronto: Tz = "America/Toronto".parse().unwrap();
    let intervals = meter_energy(&app, device, "2025-10-13T00:00:00-04:00", "2025-11-12T23:45:00-05:00", |t| {
        let import = if matches!(t.with_timezone(&toronto).hour(), 17 | 18) { 1_000.0 } else { 500.0 };
        (import, 0.0, import)
    })
    .await;
    assert_eq!(intervals, 2980, "30 days of 96 intervals and the 100 of 2 November");
    let res = submit(
        &mut b,
        "/settings/rates",
        "/settings/rates/assignments",
        &[("site_id", &site.to_string()), ("tariff_id", &tariff.to_string()), ("effective_from", "2024-11-01")],
    )
    .await;
    assert_eq!(res.location(), "/settings/rates?notice=tariff-assigned");

    let query = "month=2025-10&read_day=13";
    let csv = b.get(&format!("/sites/{site}/cost/bill.csv?{query}")).await;
    assert_eq!(
        csv.body.lines().collect::<Vec<_>>(),
        [
            "kind,code,description,quantity,unit,rate,amount,vat_percent,note,currency",
            "Energy,energy.summer.peak,Summer · On-peak,168,kWh,0.158,26.54,13,,CAD",
            "Energy,energy.summer.standard,Summer · Mid-peak,224,kWh,0.122,27.33,13,,CAD",
            "Energy,energy.summer.off_peak,Summer · Off-peak,596,kWh,0.076,45.30,13,,CAD",
            "Energy,energy.winter.peak,Winter · On-peak,128,kWh,0.203,25.98,13,,CAD",
            "Energy,energy.winter.standard,Winter · Mid-peak,96,kWh,0.157,15.07,13,,CAD",
            "Energy,energy.winter.off_peak,Winter · Off-peak,402,kWh,0.098,39.40,13,,CAD",
            "Subtotal,,,,,,179.62,,,CAD",
            "VAT,,,,,,23.35,,,CAD",
            "Total,,,,,,202.97,,,CAD",
        ]
    );
    let cost = b.get(&format!("/sites/{site}/cost?{query}")).await;
    for expected in [
        "<strong>2025-10-13</strong> to <strong>2025-11-12</strong>",
        "(31 days, 2980 15-minute intervals in America/Toronto)",
        "Ontario RPP time-of-use (OEB) (rates from 2024-11-01)",
        "Ontario RPP time-of-use (OEB) (rates from 2025-11-01)",
        "<strong>202.97</strong>",
    ] {
        assert!(cost.body.contains(expected), "{expected} missing from {}", cost.body);
    }
    let csv = b.get(&format!("/sites/{site}/cost/intervals.csv?{query}")).await;
    for repeated in ["2025-11-02 01:45,-04:00,2025-11-02T05:45:00Z", "2025-11-02 01:45,-05:00,2025-11-02T06:45:00Z"] {
        assert!(csv.body.contains(&format!("{repeated},0.5,0,0.5,1,false,Winter,off_peak")), "{repeated}");
    }
}

/// A flat-rate version with `extra` editor fields, as the editor posts it.
fn flat_version(name: &str, municipality: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = [
        ("name", name),
        ("municipality_id", municipality),
        ("effective_from", "2026-01-01"),
        ("energy_kind", "flat"),
        ("flat_rate", "2.00"),
    ]
    .iter()
    .chain(extra)
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    fields.sort();
    fields
}

#[sqlx::test]
async fn the_editor_builds_several_demand_charges_and_names_a_bad_one(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let m = municipality(&mut b, &ESKOM_DIRECT).await.to_string();
    let charges = [
        ("demand_0_name", "Network access charge"),
        ("demand_0_rate", "12.50"),
        ("demand_0_unit", "kVA"),
        ("demand_0_window", "30"),
        ("demand_0_method", "block"),
        ("demand_1_name", "Network demand charge"),
        ("demand_1_rate", "8,40"),
        ("demand_1_unit", "kW"),
        ("demand_1_window", "15"),
        ("demand_1_method", "sliding"),
    ];
    let res = post(&mut b, "/settings/rates/tariffs/new", &flat_version("Demand", &m, &charges)).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.body.contains("Demand charge 2 rate: “8,40” is not a number; use a point for decimals"),
        "{}",
        res.body
    );
    // A season ticked on a flat tariff is named too.
    let mut bad = charges.to_vec();
    bad[6] = ("demand_1_rate", "8.40");
    bad.push(("demand_1_season_2", "on"));
    let res = post(&mut b, "/settings/rates/tariffs/new", &flat_version("Demand", &m, &bad)).await;
    assert!(res.body.contains("Season 3 is not in use"), "{}", res.body);
    let stored: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM portal."Tariffs""#).fetch_one(&app.state.db).await.unwrap();
    assert_eq!(stored, 0, "nothing invalid was stored");

    bad.pop();
    let res = post(&mut b, "/settings/rates/tariffs/new", &flat_version("Demand", &m, &bad)).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let id = id_after(res.location(), "/settings/rates/tariffs/");
    let export: serde_json::Value =
        serde_json::from_str(&b.get(&format!("/settings/rates/tariffs/{id}/export")).await.body).unwrap();
    assert_eq!(export["format"], 2);
    assert_eq!(
        export["versions"][0]["demand_charges"],
        serde_json::json!([
            { "name": "Network access charge", "unit": "kVA", "window_minutes": 30, "rate": "12.50" },
            { "name": "Network demand charge", "unit": "kW", "window_minutes": 15, "method": "sliding", "rate": "8.40" },
        ])
    );
    let page = b.get(&format!("/settings/rates/tariffs/{id}")).await;
    assert!(page.body.contains(r#"name="demand_1_name" value="Network demand charge""#), "{}", page.body);
    assert!(page.body.contains(r#"<option value="sliding" selected>"#), "{}", page.body);
}

#[sqlx::test]
async fn the_editor_bills_holidays_by_type_and_names_a_bad_line(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let m = municipality(&mut b, &ESKOM_DIRECT).await.to_string();
    let mut fields: Vec<(String, String)> = [
        ("name", "Holidays"),
        ("municipality_id", &m),
        ("effective_from", "2026-01-01"),
        ("energy_kind", "tou"),
        ("holidays_as", "sunday"),
        ("season_0_name", "All year"),
        ("season_0_from", "01-01"),
        ("season_0_to", "12-31"),
        ("season_0_peak", "5.00"),
        ("season_0_off_peak", "1.00"),
        ("version_holidays", "2026-04-06 holiday Family Day\n2026-04-27 saturdy Freedom Day"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for dt in ["weekday", "saturday", "sunday", "holiday"] {
        for h in 0..24 {
            let p = if dt == "weekday" && (7..10).contains(&h) { "peak" } else { "off_peak" };
            fields.push((format!("grid_0_{dt}_{h}"), p.into()));
        }
    }
    let res = post(&mut b, "/settings/rates/tariffs/new", &fields).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.body.contains("Line 2 (2026-04-27): “saturdy” is not a day type"), "{}", res.body);
    let stored: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM portal."Tariffs""#).fetch_one(&app.state.db).await.unwrap();
    assert_eq!(stored, 0, "nothing invalid was stored");

    fields[10].1 = "2026-04-06 holiday Family Day\n2026-04-27 saturday Freedom Day".into();
    let res = post(&mut b, "/settings/rates/tariffs/new", &fields).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let id = id_after(res.location(), "/settings/rates/tariffs/");
    let export: serde_json::Value =
        serde_json::from_str(&b.get(&format!("/settings/rates/tariffs/{id}/export")).await.body).unwrap();
    assert_eq!(
        export["versions"][0]["holidays"],
        serde_json::json!([
            { "date": "2026-04-06", "billed_as": "holiday", "name": "Family Day" },
            { "date": "2026-04-27", "billed_as": "saturday", "name": "Freedom Day" },
        ])
    );
    let windows = export["versions"][0]["energy"]["seasons"][0]["windows"].as_array().unwrap();
    assert!(
        windows.contains(
            &serde_json::json!({ "day_type": "holiday", "from": "00:00", "to": "24:00", "period": "off_peak" })
        )
    );
    let page = b.get(&format!("/settings/rates/tariffs/{id}")).await;
    assert!(page.body.contains("2026-04-27 saturday Freedom Day</textarea>"), "{}", page.body);
}

#[sqlx::test]
async fn the_editor_builds_per_kwh_and_named_fixed_charges_and_the_bill_shows_them(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let m = municipality(&mut b, &ESKOM_DIRECT).await.to_string();
    let charges = [
        ("kwh_0_name", "Network charge"),
        ("kwh_0_rate", "0.2500"),
        ("kwh_1_name", "Subsidy"),
        ("kwh_1_peak", "-0.01"),
        ("fixed_0_name", "Service charge"),
        ("fixed_0_rate", "10.00"),
        ("fixed_0_per", "day"),
        ("fixed_1_name", "Meter rental"),
        ("fixed_1_rate", "62.00"),
        ("fixed_1_per", "month"),
    ];
    // Rates per TOU period on a flat tariff: refused, naming the charge.
    let res = post(&mut b, "/settings/rates/tariffs/new", &flat_version("Unbundled", &m, &charges)).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.body
            .contains("versions[0].kwh_charges[1].rates</code>: rates per TOU period need a time-of-use energy charge"),
        "{}",
        res.body
    );
    let stored: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM portal."Tariffs""#).fetch_one(&app.state.db).await.unwrap();
    assert_eq!(stored, 0, "nothing invalid was stored");

    let mut good = charges.to_vec();
    good[3] = ("kwh_1_rate", "-0.01");
    let res = post(&mut b, "/settings/rates/tariffs/new", &flat_version("Unbundled", &m, &good)).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let id = id_after(res.location(), "/settings/rates/tariffs/");
    let export: serde_json::Value =
        serde_json::from_str(&b.get(&format!("/settings/rates/tariffs/{id}/export")).await.body).unwrap();
    assert_eq!(
        (&export["versions"][0]["kwh_charges"], &export["versions"][0]["fixed_charges"]),
        (
            &serde_json::json!([
                { "name": "Network charge", "rate": "0.2500" },
                { "name": "Subsidy", "rate": "-0.01" },
            ]),
            &serde_json::json!([
                { "name": "Service charge", "rate": "10.00", "per": "day" },
                { "name": "Meter rental", "rate": "62.00", "per": "month" },
            ])
        )
    );
    let page = b.get(&format!("/settings/rates/tariffs/{id}")).await;
    assert!(page.body.contains(r#"name="kwh_1_rate" value="-0.01""#), "{}", page.body);

    // On a bill: June 2026 of the Homeflex example's meter (11 532 kWh; R 2.00 flat).
    //   Energy          11 532 kWh × 2.00     = 23 064.00
    //   Network charge  11 532 kWh × 0.2500   =  2 883.00
    //   Subsidy         11 532 kWh × −0.01    =   −115.32
    //   Service charge  30 days × 10.00       =    300.00
    //   Meter rental    1 month × 62.00       =     62.00
    //   total (no VAT ticked)                 = 26 193.68
    let site = homeflex_june_site(&app).await;
    let res = submit(
        &mut b,
        "/settings/rates",
        "/settings/rates/assignments",
        &[("site_id", &site.to_string()), ("tariff_id", &id.to_string()), ("effective_from", "2026-01-01")],
    )
    .await;
    assert_eq!(res.location(), "/settings/rates?notice=tariff-assigned");
    let csv = b.get(&format!("/sites/{site}/cost/bill.csv?month=2026-06")).await;
    assert_eq!(
        csv.body.lines().collect::<Vec<_>>(),
        [
            "kind,code,description,quantity,unit,rate,amount,vat_percent,note,currency",
            "Energy,energy,Energy,11532,kWh,2,23064.00,0,,ZAR",
            "Per-kWh charge,kwh1,Network charge,11532,kWh,0.25,2883.00,0,,ZAR",
            "Per-kWh charge,kwh2,Subsidy,11532,kWh,-0.01,-115.32,0,,ZAR",
            "Fixed,fixed1,Service charge,30,days,10,300.00,0,,ZAR",
            "Fixed,fixed2,Meter rental,1,months,62,62.00,0,,ZAR",
            "Subtotal,,,,,,26193.68,,,ZAR",
            "VAT,,,,,,0.00,,,ZAR",
            "Total,,,,,,26193.68,,,ZAR",
        ]
    );
}

#[sqlx::test]
async fn the_editor_sets_a_minimum_charge_and_rounding_and_the_bill_tops_up(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let m = municipality(&mut b, &ESKOM_DIRECT).await.to_string();
    let mut limits = vec![
        ("minimum_per_month", "30000"),
        ("maximum_per_month", "2O000"),
        ("rounding_amounts", "down"),
        ("demand_decimals", "0"),
    ];
    let res = post(&mut b, "/settings/rates/tariffs/new", &flat_version("Minimum", &m, &limits)).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.body.contains("Maximum per month: “2O000” is not a number"), "{}", res.body);
    limits[1].1 = "20000";
    let res = post(&mut b, "/settings/rates/tariffs/new", &flat_version("Minimum", &m, &limits)).await;
    assert!(
        res.body.contains("versions[0].maximum_per_month</code>: is below the minimum (20000 &#60; 30000)."),
        "{}",
        res.body
    );
    let stored: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM portal."Tariffs""#).fetch_one(&app.state.db).await.unwrap();
    assert_eq!(stored, 0, "nothing invalid was stored");

    limits.remove(1);
    let res = post(&mut b, "/settings/rates/tariffs/new", &flat_version("Minimum", &m, &limits)).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let id = id_after(res.location(), "/settings/rates/tariffs/");
    let export: serde_json::Value =
        serde_json::from_str(&b.get(&format!("/settings/rates/tariffs/{id}/export")).await.body).unwrap();
    assert_eq!(
        (&export["versions"][0]["minimum_per_month"], &export["versions"][0]["rounding"]),
        (&serde_json::json!("30000"), &serde_json::json!({ "amounts": "down", "demand_decimals": 0 }))
    );

    // June 2026 of the Homeflex example's meter: 11 532 kWh × 2.00 = 23 064.00 < 30 000.00, so a
    // top-up of 6 936.00 and a total of 30 000.00.
    let site = homeflex_june_site(&app).await;
    let res = submit(
        &mut b,
        "/settings/rates",
        "/settings/rates/assignments",
        &[("site_id", &site.to_string()), ("tariff_id", &id.to_string()), ("effective_from", "2026-01-01")],
    )
    .await;
    assert_eq!(res.location(), "/settings/rates?notice=tariff-assigned");
    let csv = b.get(&format!("/sites/{site}/cost/bill.csv?month=2026-06")).await;
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(
        lines[1..],
        [
            "Energy,energy,Energy,11532,kWh,2,23064.00,0,,ZAR",
            "Adjustment,minimum,Minimum charge top-up,1,,6936,6936.00,0,\"charges 23064.00, minimum 30000.00\",ZAR",
            "Subtotal,,,,,,30000.00,,,ZAR",
            "VAT,,,,,,0.00,,,ZAR",
            "Total,,,,,,30000.00,,,ZAR",
        ]
    );
}

#[sqlx::test]
async fn a_capacity_charge_bills_the_ratchet_over_the_nmd_and_the_excess_from_two_months_of_readings(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let m = municipality(&mut b, &ESKOM_DIRECT).await.to_string();
    let (site, device) = site_with_meter(&app, "Africa/Johannesburg").await;

    // The NMD on the site form: a bad one is named and stores nothing; then 120 kVA.
    let edit = format!("/sites/{site}/edit");
    let site_fields = |nmd: &'static str| {
        [("name", "Plant"), ("time_zone", "Africa/Johannesburg"), ("nmd", nmd), ("nmd_unit", "kVA")]
    };
    let res = submit(&mut b, &edit, &edit, &site_fields("12O")).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.body.contains("Notified maximum demand: “12O” is not a number"), "{}", res.body);
    let stored: Option<rust_decimal::Decimal> =
        sqlx::query_scalar(r#"SELECT "NotifiedMaxDemand" FROM monitoring."Sites" WHERE "Id" = $1"#)
            .bind(site)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(stored, None, "nothing invalid was stored");
    let res = submit(&mut b, &edit, &edit, &site_fields("120")).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert!(
        b.get(&format!("/sites/{site}")).await.body.contains("Notified maximum demand (NMD): <strong>120 kVA</strong>")
    );

    // The editor: a capacity charge on at least the NMD and the 12 months' peak (100 % of the 11
    // before), with excess over the NMD at 30.00 per kVA. A bad ratchet is named.
    let charge = [
        ("demand_0_name", "Network access charge"),
        ("demand_0_code", "nac"),
        ("demand_0_rate", "10.00"),
        ("demand_0_unit", "kVA"),
        ("demand_0_window", "30"),
        ("demand_0_method", "block"),
        ("demand_0_at_least_nmd", "on"),
        ("demand_0_ratchet_percent", "150"),
        ("demand_0_ratchet_periods", "11"),
        ("demand_0_excess_rate", "30.00"),
    ];
    let res = post(&mut b, "/settings/rates/tariffs/new", &flat_version("Capacity", &m, &charge)).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.body.contains("versions[0].demand_charges[0].ratchet.percent</code>: must be more than 0 and at most 100"),
        "{}",
        res.body
    );
    let mut good = charge.to_vec();
    good[7] = ("demand_0_ratchet_percent", "100");
    let res = post(&mut b, "/settings/rates/tariffs/new", &flat_version("Capacity", &m, &good)).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let id = id_after(res.location(), "/settings/rates/tariffs/");
    let export: serde_json::Value =
        serde_json::from_str(&b.get(&format!("/settings/rates/tariffs/{id}/export")).await.body).unwrap();
    assert_eq!(
        export["versions"][0]["demand_charges"],
        serde_json::json!([{
            "name": "Network access charge", "code": "nac", "unit": "kVA", "window_minutes": 30, "rate": "10.00",
            "at_least_nmd": true, "ratchet": { "percent": "100", "periods": 11 }, "excess_nmd_rate": "30.00",
        }])
    );
    let res = submit(
        &mut b,
        "/settings/rates",
        "/settings/rates/assignments",
        &[("site_id", &site.to_string()), ("tariff_id", &id.to_string()), ("effective_from", "2026-01-01")],
    )
    .await;
    assert_eq!(res.location(), "/settings/rates?notice=tariff-assigned");

    // May and June 2026 through the write path: 4 kWh and 5 kVAh every interval (20 kVA), but
    // May 12 10:00–10:30 at 75 kVAh an interval (300 kVA) and June 10 14:00–14:30 at 50 (200 kVA).
    let tz: Tz = "Africa/Johannesburg".parse().unwrap();
    let intervals = meter_energy(&app, device, "2026-05-01T00:00:00+02:00", "2026-06-30T23:45:00+02:00", |t| {
        let local = t.with_timezone(&tz);
        let (day, hour, half) = ((local.month(), local.day()), local.hour(), local.minute() < 30);
        let vah = match (day, hour, half) {
            ((5, 12), 10, true) => 75_000.0,
            ((6, 10), 14, true) => 50_000.0,
            _ => 5_000.0,
        };
        (4_000.0, 0.0, vah)
    })
    .await;
    assert_eq!(intervals, (31 + 30) * 96);

    // June by hand (no VAT ticked):
    //   Energy   2 880 × 4 kWh = 11 520 kWh × 2.00                           = 23 040.00
    //   Capacity max(this month's 200.000, 100 % of May's 300.000, NMD 120)
    //            = 300.000 kVA × 10.00                                       =  3 000.00
    //   Excess   this month's 200.000 − NMD 120 = 80.000 kVA × 30.00          =  2 400.00
    //   total                                                                = 28 440.00
    let csv = b.get(&format!("/sites/{site}/cost/bill.csv?month=2026-06")).await;
    assert_eq!(
        csv.body.lines().collect::<Vec<_>>(),
        [
            "kind,code,description,quantity,unit,rate,amount,vat_percent,note,currency",
            "Energy,energy,Energy,11520,kWh,2,23040.00,0,,ZAR",
            "Demand,nac,Network access charge,300,kVA,10,3000.00,0,\"ratchet: 100 % of 300.000 kVA on 2026-05-12 10:00 \
             > this month's 200.000 kVA, NMD 120 kVA; maximum on 2026-06-10 14:00–14:30 (2026-06-10 12:00 UTC)\",ZAR",
            "Demand,nac.excess,Network access charge: excess over NMD,80,kVA,30,2400.00,0,\
             this month's 200.000 kVA − NMD 120 kVA = 80.000 kVA,ZAR",
            "Subtotal,,,,,,28440.00,,,ZAR",
            "VAT,,,,,,0.00,,,ZAR",
            "Total,,,,,,28440.00,,,ZAR",
        ]
    );
    // May: nothing before it, so this month's 300 kVA; the excess is 180 kVA × 30.00 = 5 400.00.
    let csv = b.get(&format!("/sites/{site}/cost/bill.csv?month=2026-05")).await;
    let lines: Vec<&str> = csv.body.lines().collect();
    assert!(
        lines[2].starts_with(
            "Demand,nac,Network access charge,300,kVA,10,3000.00,0,this month's 300.000 kVA > NMD 120 kVA;"
        ),
        "{}",
        lines[2]
    );
    assert!(lines[2].contains("ratchet: no demand recorded in the 11 periods before"), "{}", lines[2]);
    assert!(
        lines[3].starts_with("Demand,nac.excess,Network access charge: excess over NMD,180,kVA,30,5400.00,"),
        "{}",
        lines[3]
    );
    // The Cost tab states the NMD the bill used.
    let page = b.get(&format!("/sites/{site}/cost?month=2026-06")).await;
    assert!(page.body.contains("Notified maximum demand (NMD): <strong>120 kVA</strong>"), "{}", page.body);
}

/// A ratchet's earlier peaks come from the database (`energy::demand_peaks`), the current
/// period's from the engine: both must find the same interval. October 2026 in London (the
/// 25-hour day's repeated 01:00–02:00 is two blocks, never one) with pseudo-random energy and two
/// spikes, one in each occurrence of the repeated hour, in every unit, interval and method.
#[sqlx::test]
async fn the_databases_demand_peaks_are_the_engines(pool: PgPool) {
    use std::sync::Arc;
    use tau_acuvim_portal::measurements::energy::{self, PeakRange, SiteRange};
    use tau_acuvim_portal::tariffs::engine::{self, Assignment, BillInput, LineKind, Tariff};
    use tau_acuvim_portal::tariffs::local::Period;
    use tau_acuvim_portal::tariffs::model::{Municipality, TariffDoc};

    let app = TestApp::new(pool).await;
    let (site, device) = site_with_meter(&app, "Europe/London").await;
    let spikes = [time("2026-10-25T00:45:00Z"), time("2026-10-25T01:15:00Z")];
    let intervals = meter_energy(&app, device, "2026-10-01T00:00:00+01:00", "2026-10-31T23:45:00Z", |t| {
        let k = (t.timestamp() / 900) as u64;
        let x = k.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let import = if spikes.contains(&t) { 9_000.0 } else { ((x >> 33) % 60_000) as f64 / 10.0 };
        (import, 0.0, import * 1.2 + ((x >> 20) % 997) as f64)
    })
    .await;
    assert_eq!(intervals, 31 * 96 + 4);
    let tz: Tz = "Europe/London".parse().unwrap();
    let period = Period::month(2026, 10, 1).unwrap();
    let (from, to) = period.utc(tz);
    let door = energy::site_intervals(&app.state.db, site, from, to).await.unwrap();
    let municipality = Municipality {
        name: "M".into(),
        country: "UK".into(),
        currency: "GBP".into(),
        vat_percent: 0.into(),
        holidays: vec![],
    };
    for unit in ["kW", "kVA"] {
        for window in [15u32, 30, 60] {
            for method in ["block", "sliding"] {
                let json = format!(
                    r#"{{"name": "D", "versions": [{{"effective_from": "2020-01-01", "energy": {{"kind": "flat", "rate": "0"}},
                        "demand_charges": [{{"unit": "{unit}", "window_minutes": {window}, "method": "{method}", "rate": "1"}}]}}]}}"#
                );
                let doc: TariffDoc = serde_json::from_str(&json).unwrap();
                let tariff = Arc::new(Tariff { id: 1, doc, municipality: municipality.clone() });
                let schedule = [Assignment { from: period.start, tariff }];
                let input = BillInput {
                    tz,
                    period,
                    devices: 1,
                    assignments: &schedule,
                    intervals: &door.intervals,
                    nmd: None,
                    history: &[],
                };
                let bill = engine::bill(&input);
                let line = bill.lines.iter().find(|l| l.kind == LineKind::Demand).unwrap();
                let ask = PeakRange {
                    range: SiteRange { site, from, to },
                    time_zone: tz.name().into(),
                    window_minutes: window,
                    sliding: method == "sliding",
                    apparent: unit == "kVA",
                };
                let peaks = energy::demand_peaks(&app.state.db, &[ask]).await.unwrap();
                let (e, first) = peaks[0].unwrap();
                let hours = rust_decimal::Decimal::from(window) / rust_decimal::Decimal::from(60);
                let demand = (engine::wh(e) / rust_decimal::Decimal::ONE_THOUSAND / hours).round_dp(3);
                assert_eq!(demand, line.quantity, "{unit} {window} {method}: the database's peak is the engine's");
                let utc = format!("({} UTC)", first.format("%Y-%m-%d %H:%M"));
                assert!(line.note.contains(&utc), "{unit} {window} {method}: {} vs {utc}", line.note);
            }
        }
    }
    // The repeated hour alone: two 60-minute blocks (each with one spike), never one of both.
    let (from, to) = (time("2026-10-25T00:00:00Z"), time("2026-10-25T02:00:00Z"));
    let hour = |start: DateTime<Utc>| {
        door.intervals
            .iter()
            .filter(|i| start <= i.start && i.start < start + TimeDelta::hours(1))
            .map(|i| i.import_wh)
            .sum::<f64>()
    };
    let (bst, gmt) = (hour(from), hour(from + TimeDelta::hours(1)));
    let ask = PeakRange {
        range: SiteRange { site, from, to },
        time_zone: tz.name().into(),
        window_minutes: 60,
        sliding: false,
        apparent: false,
    };
    let (e, first) = energy::demand_peaks(&app.state.db, &[ask]).await.unwrap()[0].unwrap();
    let want = if bst >= gmt { (bst, from) } else { (gmt, from + TimeDelta::hours(1)) };
    assert!((e - want.0).abs() < 1e-6 && first == want.1, "{e} at {first}: want {want:?} (not {})", bst + gmt);
}

/// REACTIVE ENERGY THROUGH THE EDITOR AND THE WRITE PATH, by hand. One meter in Johannesburg
/// reports its counters (active and reactive import) at every quarter hour of Monday 1 June 2026
/// through the store's one write path; the real rollup makes the intervals. Every quarter hour:
/// 1,000 Wh and 200 varh, except 10:00–10:15 (800 varh) and 10:15–10:30 (100 varh).
/// Totals: 96 kWh; 94 × 0.2 + 0.8 + 0.1 = 19.7 kvarh. The last reading, at 24:00, opens the
/// interval of 2 June 00:00 (no energy yet): 49 half hours have data.
///
/// The tariff, entered in the editor: flat 2.00 per kWh; reactive charge 5.00 per kvarh above 30 %
/// of kWh per 30-minute interval; demand 10.00 per kW (15-minute block) with a power-factor
/// threshold of 0.99 over the period. June 2026 (30 days), no VAT ticked.
///   Energy    96 kWh × 2.00                                                     = 192.00
///   Reactive  only 10:00–10:30 is over: 0.9 kvarh − 30 % × 2 kWh = 0.3 kvarh × 5.00 =   1.50
///   Demand    4 kW (1 kWh / 0.25 h, first at 00:00); PF = 96 / √(96² + 19.7²) = 96 / 98.00046
///             = 0.979587 → 0.9796 < 0.99: 4 × 0.99 / 0.9796 = 4.042467 → 4.042 kW × 10.00 =  40.42
///   total                                                                             = 233.92
#[sqlx::test]
async fn the_editor_builds_a_reactive_charge_and_the_bill_charges_the_metered_kvarh(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let m = municipality(&mut b, &ESKOM_DIRECT).await.to_string();
    let charges = [
        ("reactive_0_name", "Reactive energy charge"),
        ("reactive_0_code", "kvarh"),
        ("reactive_0_rate", "5.00"),
        ("reactive_0_per", "interval"),
        ("reactive_0_window", "30"),
        ("demand_0_name", "Demand"),
        ("demand_0_rate", "10.00"),
        ("demand_0_unit", "kW"),
        ("demand_0_window", "15"),
        ("demand_0_method", "block"),
        ("demand_0_pf_threshold", "0.99"),
        ("demand_0_pf_measured", "period"),
    ];
    // The free share is missing: refused, naming the field; nothing stored.
    let res = post(&mut b, "/settings/rates/tariffs/new", &flat_version("Reactive", &m, &charges)).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.body.contains("Enter the Reactive charge 1 free share of kWh (%)."), "{}", res.body);
    // A share above 100 % is refused by the model's validation, by its path.
    let mut bad = charges.to_vec();
    bad.push(("reactive_0_free_percent", "130"));
    let res = post(&mut b, "/settings/rates/tariffs/new", &flat_version("Reactive", &m, &bad)).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.body.contains("versions[0].reactive_charges[0].free_percent"), "{}", res.body);
    let stored: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM portal."Tariffs""#).fetch_one(&app.state.db).await.unwrap();
    assert_eq!(stored, 0, "nothing invalid was stored");

    let mut good = charges.to_vec();
    good.push(("reactive_0_free_percent", "30"));
    let res = post(&mut b, "/settings/rates/tariffs/new", &flat_version("Reactive", &m, &good)).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let id = id_after(res.location(), "/settings/rates/tariffs/");
    let export: serde_json::Value =
        serde_json::from_str(&b.get(&format!("/settings/rates/tariffs/{id}/export")).await.body).unwrap();
    assert_eq!(
        export["versions"][0]["reactive_charges"],
        serde_json::json!([{ "name": "Reactive energy charge", "code": "kvarh", "rate": "5.00", "free_percent": "30" }])
    );
    assert_eq!(export["versions"][0]["demand_charges"][0]["power_factor"], serde_json::json!({ "threshold": "0.99" }));
    let page = b.get(&format!("/settings/rates/tariffs/{id}")).await;
    assert!(page.body.contains(r#"name="reactive_0_free_percent" value="30""#), "{}", page.body);
    assert!(page.body.contains(r#"name="demand_0_pf_threshold" value="0.99""#), "{}", page.body);

    let (site, device) = site_with_meter(&app, "Africa/Johannesburg").await;
    let first = time("2026-06-01T00:00:00+02:00");
    let (mut wh, mut varh) = (0.0, 0.0);
    let mut readings = Vec::new();
    for k in 0..=96 {
        let mut r = Reading::empty(device, first + TimeDelta::minutes(15 * k));
        r.set(Quantity::named("energyImportWh").unwrap(), Some(wh));
        r.set(Quantity::named("reactiveImportVarh").unwrap(), Some(varh));
        readings.push(r);
        wh += 1000.0;
        varh += match k {
            40 => 800.0,
            41 => 100.0,
            _ => 200.0,
        };
    }
    measurements::write(&app.state.db, &readings).await.unwrap();
    rollup::run_once(&app.state.db, first + TimeDelta::days(2)).await.unwrap();
    let res = submit(
        &mut b,
        "/settings/rates",
        "/settings/rates/assignments",
        &[("site_id", &site.to_string()), ("tariff_id", &id.to_string()), ("effective_from", "2026-01-01")],
    )
    .await;
    assert_eq!(res.location(), "/settings/rates?notice=tariff-assigned");
    let csv = b.get(&format!("/sites/{site}/cost/bill.csv?month=2026-06")).await;
    assert_eq!(
        csv.body.lines().collect::<Vec<_>>(),
        [
            "kind,code,description,quantity,unit,rate,amount,vat_percent,note,currency",
            "Energy,energy,Energy,96,kWh,2,192.00,0,,ZAR",
            "Demand,demand1,Demand,4.042,kW,10,40.42,0,maximum on 2026-06-01 00:00–00:15 (2026-05-31 22:00 UTC); \
             power factor 0.9796 over the period below 0.99: 4 kW × 0.99 / 0.9796 = 4.042 kW,ZAR",
            "Reactive energy,kvarh,Reactive energy charge,0.3,kvarh,5,1.50,0,\"0.3 kvarh above 30 % of 96 kWh, per \
             30-minute interval (1 of 49 intervals over; 19.7 kvarh in all)\",ZAR",
            "Subtotal,,,,,,233.92,,,ZAR",
            "VAT,,,,,,0.00,,,ZAR",
            "Total,,,,,,233.92,,,ZAR",
        ]
    );
}

/// CAPACITY BANDS, by hand: flat energy 2.00 per kWh; a 0-rate "Monthly utilised capacity"
/// demand charge (kW, 15-minute block) chooses the band of a per-day administration charge:
/// 1.00 up to 3 kW, 2.00 above 3 kW, 3.00 above 10 kW. June 2026 (30 days), one day of 1 kWh
/// per 15 minutes (4 kW), no VAT ticked.
///   Energy          96 kWh × 2.00                         = 192.00
///   Administration  4 kW is above 3, up to 10: 30 × 2.00  =  60.00
///   Capacity        4 kW × 0.00                           =   0.00
///   total                                                 = 252.00
#[sqlx::test]
async fn the_editor_builds_capacity_bands_and_the_bill_takes_the_band_rate(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let m = municipality(&mut b, &ESKOM_DIRECT).await.to_string();
    let charges = [
        ("demand_0_name", "Monthly utilised capacity"),
        ("demand_0_code", "muc"),
        ("demand_0_rate", "0"),
        ("demand_0_unit", "kW"),
        ("demand_0_window", "15"),
        ("demand_0_method", "block"),
        ("fixed_0_name", "Administration charge"),
        ("fixed_0_rate", "1.00"),
        ("fixed_0_per", "day"),
        ("fixed_0_bands", "3 2.00\n10 3.00"),
    ];
    // A band's demand charge code that is not one of the version's: refused by its path.
    let mut bad = charges.to_vec();
    bad.push(("fixed_0_bands_of", "demand7"));
    let res = post(&mut b, "/settings/rates/tariffs/new", &flat_version("Banded", &m, &bad)).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.body.contains("versions[0].fixed_charges[0].bands.demand"), "{}", res.body);
    assert!(res.body.contains("is not a demand charge of this version (muc)."), "{}", res.body);
    let stored: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM portal."Tariffs""#).fetch_one(&app.state.db).await.unwrap();
    assert_eq!(stored, 0, "nothing invalid was stored");

    let mut good = charges.to_vec();
    good.push(("fixed_0_bands_of", "muc"));
    let res = post(&mut b, "/settings/rates/tariffs/new", &flat_version("Banded", &m, &good)).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let id = id_after(res.location(), "/settings/rates/tariffs/");
    let export: serde_json::Value =
        serde_json::from_str(&b.get(&format!("/settings/rates/tariffs/{id}/export")).await.body).unwrap();
    assert_eq!(
        export["versions"][0]["fixed_charges"][0]["bands"],
        serde_json::json!({ "demand": "muc", "above": [{ "above": "3", "rate": "2.00" }, { "above": "10", "rate": "3.00" }] })
    );
    let page = b.get(&format!("/settings/rates/tariffs/{id}")).await;
    assert!(page.body.contains(r#"name="fixed_0_bands_of" value="muc""#), "{}", page.body);
    assert!(page.body.contains("3 2.00\n10 3.00</textarea>"), "{}", page.body);

    let (site, device) = site_with_meter(&app, "Africa/Johannesburg").await;
    let first = time("2026-06-01T00:00:00+02:00");
    let readings: Vec<Reading> = (0..=96)
        .map(|k| {
            let mut r = Reading::empty(device, first + TimeDelta::minutes(15 * k));
            r.set(Quantity::named("energyImportWh").unwrap(), Some(1000.0 * k as f64));
            r
        })
        .collect();
    measurements::write(&app.state.db, &readings).await.unwrap();
    rollup::run_once(&app.state.db, first + TimeDelta::days(2)).await.unwrap();
    let res = submit(
        &mut b,
        "/settings/rates",
        "/settings/rates/assignments",
        &[("site_id", &site.to_string()), ("tariff_id", &id.to_string()), ("effective_from", "2026-01-01")],
    )
    .await;
    assert_eq!(res.location(), "/settings/rates?notice=tariff-assigned");
    let csv = b.get(&format!("/sites/{site}/cost/bill.csv?month=2026-06")).await;
    assert_eq!(
        csv.body.lines().collect::<Vec<_>>(),
        [
            "kind,code,description,quantity,unit,rate,amount,vat_percent,note,currency",
            "Energy,energy,Energy,96,kWh,2,192.00,0,,ZAR",
            "Fixed,fixed1,Administration charge,30,days,2,60.00,0,\"Monthly utilised capacity 4.000 kW: band above \
             3.000 kW, up to 10.000 kW\",ZAR",
            "Demand,muc,Monthly utilised capacity,4,kW,0,0.00,0,maximum on 2026-06-01 00:00–00:15 (2026-05-31 22:00 UTC),ZAR",
            "Subtotal,,,,,,252.00,,,ZAR",
            "VAT,,,,,,0.00,,,ZAR",
            "Total,,,,,,252.00,,,ZAR",
        ]
    );
}

/// The US library entry (SDG&E AL-TOU) into a new municipality: United States, USD, no sales tax;
/// the editor shows SDG&E's period names and the version's holidays; a Los Angeles site billed
/// for November 2024 on the load of src/tariffs/tests.rs (`sdge_november_2024`: 25 kWh per 15
/// minutes, 150 kWh 08:00–18:00 on weekdays but Thanksgiving, spikes of 200 kWh on 12 November
/// 10:00 and 175 kWh on 21 November 17:00) comes to the hand calculation there, 75,491.21 USD.
#[sqlx::test]
async fn the_sdge_library_entry_bills_the_hand_calculated_november(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let rates = b.get("/settings/rates").await;
    for expected in [
        "<td>San Diego Gas &#38; Electric Company (SDG&#38;E)</td>",
        "from 2024-10-01",
        r#"<option value="us-sdge-al-tou-2024-10-01""#,
    ] {
        assert!(rates.body.contains(expected), "{expected} missing from {}", rates.body);
    }
    let fields = [("entry", "us-sdge-al-tou-2024-10-01"), ("municipality_id", "new")];
    let res = submit(&mut b, "/settings/rates", "/settings/rates/library", &fields).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let tariff = id_after(res.location(), "/settings/rates/tariffs/");
    let editor = b.get(res.location()).await;
    for field in [r#"name="period_name_standard" value="Off-Peak""#, "2024-11-11 sunday Veterans Day"] {
        assert!(editor.body.contains(field), "{field} missing from the editor");
    }
    let rates = b.get("/settings/rates").await;
    assert!(rates.body.contains("San Diego (SDG&#38;E service territory)</a></td><td>United States</td><td>USD</td>"));

    let (site, device) = site_with_meter(&app, "America/Los_Angeles").await;
    let la: Tz = "America/Los_Angeles".parse().unwrap();
    let intervals = meter_energy(&app, device, "2024-11-01T00:00:00-07:00", "2024-11-30T23:45:00-08:00", |t| {
        let at = t.with_timezone(&la);
        let (day, h, m) = (at.date_naive(), at.hour(), at.minute());
        let nov = |d: u32| chrono::NaiveDate::from_ymd_opt(2024, 11, d).unwrap();
        let open = at.weekday().num_days_from_monday() < 5 && day != nov(28);
        let kwh = if day == nov(12) && (h, m) == (10, 0) {
            200.0
        } else if day == nov(21) && (h, m) == (17, 0) {
            175.0
        } else if open && (8..18).contains(&h) {
            150.0
        } else {
            25.0
        };
        (kwh * 1_000.0, 0.0, kwh * 1_000.0)
    })
    .await;
    assert_eq!(intervals, 30 * 96 + 4, "DST ends on 3 November");
    let res = submit(
        &mut b,
        "/settings/rates",
        "/settings/rates/assignments",
        &[("site_id", &site.to_string()), ("tariff_id", &tariff.to_string()), ("effective_from", "2024-10-01")],
    )
    .await;
    assert_eq!(res.location(), "/settings/rates?notice=tariff-assigned");
    let cost = b.get(&format!("/sites/{site}/cost?month=2024-11")).await;
    for expected in [
        "2024-11-11 Veterans Day: billed as Sunday",
        "2024-11-28 Thanksgiving Day: billed as Sunday",
        "Maximum On-Peak Demand, Winter (UDC)",
        "<strong>75491.21</strong>",
    ] {
        assert!(cost.body.contains(expected), "{expected} missing from {}", cost.body);
    }
    let csv = b.get(&format!("/sites/{site}/cost/bill.csv?month=2024-11")).await;
    assert!(csv.body.ends_with("Total,,,,,,75491.21,,,USD\n"), "{}", csv.body);
}

/// Start from a published tariff: Settings → Rates lists the library; choosing the Ontario entry
/// into a new municipality imports it (with the OEB's HST and 2025 holidays), lands in the
/// editor, and the site, whose meter-read day is 13 on its form, bills the worked example's
/// period (src/tariffs/tests.rs, by hand: 202.97 CAD) without asking for the read day, split at
/// the version change and shown as two parts.
#[sqlx::test]
async fn a_published_tariff_from_the_library_lands_in_the_editor_and_bills_by_the_sites_read_day(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let rates = b.get("/settings/rates").await;
    for expected in [
        "Start from a published tariff",
        "<td>Ontario RPP time-of-use (OEB)</td><td>Ontario Energy Board (Regulated Price Plan)</td>",
        "2024-11-01 to 2025-10-31; 2025-11-01 to 2026-04-30",
        r#"<option value="ontario-oeb-rpp-tou""#,
    ] {
        assert!(rates.body.contains(expected), "{expected} missing from {}", rates.body);
    }
    let pick = |m: &str| [("entry", "ontario-oeb-rpp-tou".to_string()), ("municipality_id", m.to_string())];
    let fields = pick("new");
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = submit(&mut b, "/settings/rates", "/settings/rates/library", &refs).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert!(res.location().ends_with("?notice=tariff-imported"), "{}", res.location());
    let tariff = id_after(res.location(), "/settings/rates/tariffs/");
    let editor = b.get(res.location()).await;
    for field in [r#"value="Ontario RPP time-of-use (OEB)""#, r#"name="period_name_standard" value="Mid-peak""#] {
        assert!(editor.body.contains(field), "{field} missing from the editor");
    }
    let rates = b.get("/settings/rates").await;
    assert!(
        rates.body.contains("Ontario (OEB Regulated Price Plan)</a></td><td>Canada</td><td>CAD</td>\n        <td>13 %</td><td>10</td><td>1</td>"),
        "the new municipality with its HST and holidays: {}",
        rates.body
    );
    // Again into a new one: the municipality exists; into a ZAR one: the wrong currency.
    let res = submit(&mut b, "/settings/rates", "/settings/rates/library", &refs).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.body.contains("already exists: choose it from the list"), "{}", res.body);
    let zar = municipality(&mut b, &ESKOM_DIRECT).await;
    let fields = pick(&zar.to_string());
    let refs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let res = submit(&mut b, "/settings/rates", "/settings/rates/library", &refs).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.body.contains("Eskom Direct bills in ZAR, the tariff in CAD"), "{}", res.body);
    let tariffs: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM portal."Tariffs""#).fetch_one(&app.state.db).await.unwrap();
    assert_eq!(tariffs, 1, "the refused imports stored nothing");

    // The site's meter-read day on its form: a bad one is named and nothing changes.
    let (site, device) = site_with_meter(&app, "America/Toronto").await;
    let edit = format!("/sites/{site}/edit");
    let site_fields =
        |day: &'static str| [("name", "Plant"), ("time_zone", "America/Toronto"), ("meter_read_day", day)];
    let res = submit(&mut b, &edit, &edit, &site_fields("29")).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.body.contains("Meter-read day: “29” is not a day from 1 to 28"), "{}", res.body);
    let stored: i16 = sqlx::query_scalar(r#"SELECT "MeterReadDay" FROM monitoring."Sites" WHERE "Id" = $1"#)
        .bind(site)
        .fetch_one(&app.state.db)
        .await
        .unwrap();
    assert_eq!(stored, 1);
    let res = submit(&mut b, &edit, &edit, &site_fields("13")).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert!(b.get(&edit).await.body.contains(r#"name="meter_read_day""#));

    let toronto: Tz = "America/Toronto".parse().unwrap();
    meter_energy(&app, device, "2025-10-13T00:00:00-04:00", "2025-11-12T23:45:00-05:00", |t| {
        let import = if matches!(t.with_timezone(&toronto).hour(), 17 | 18) { 1_000.0 } else { 500.0 };
        (import, 0.0, import)
    })
    .await;
    let res = submit(
        &mut b,
        "/settings/rates",
        "/settings/rates/assignments",
        &[("site_id", &site.to_string()), ("tariff_id", &tariff.to_string()), ("effective_from", "2024-11-01")],
    )
    .await;
    assert_eq!(res.location(), "/settings/rates?notice=tariff-assigned");

    // No read_day asked: the site's 13th.
    let cost = b.get(&format!("/sites/{site}/cost?month=2025-10")).await;
    for expected in [
        "<strong>2025-10-13</strong> to <strong>2025-11-12</strong>",
        "billed in 2 parts",
        "Part 1: 2025-10-13 to 2025-10-31 (19 days): Ontario RPP time-of-use (OEB) (rates from 2024-11-01)",
        "Part 2: 2025-11-01 to 2025-11-12 (12 days): Ontario RPP time-of-use (OEB) (rates from 2025-11-01)",
        "2025-10-13: billed as Sunday",
        // By hand: 26.54 + 27.33 + 45.30 and 25.98 + 15.07 + 39.40.
        r#"Part 1 before VAT</th><td class="num">99.17</td>"#,
        r#"Part 2 before VAT</th><td class="num">80.45</td>"#,
        "<strong>202.97</strong>",
    ] {
        assert!(cost.body.contains(expected), "{expected} missing from {}", cost.body);
    }
    let csv = b.get(&format!("/sites/{site}/cost/bill.csv?month=2025-10")).await;
    assert!(csv.body.ends_with("Total,,,,,,202.97,,,CAD\n"), "{}", csv.body);
    // The query still overrides for a one-off look: the calendar month.
    let cost = b.get(&format!("/sites/{site}/cost?month=2025-10&read_day=1")).await;
    assert!(cost.body.contains("<strong>2025-10-01</strong> to <strong>2025-10-31</strong>"), "{}", cost.body);
}

/// A site billed from the 15th: the Overview labels its "this month" figures with the billing
/// period's days, and the site page says which days this month's bill covers; a site on the
/// calendar month keeps the month's name.
#[sqlx::test]
async fn the_overview_and_the_site_page_name_the_billing_period_of_a_read_day(pool: PgPool) {
    use tau_acuvim_portal::tariffs::local::Period;
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let (site, _) = site_with_meter(&app, "UTC").await;
    flat_tariff(&mut b, site).await;
    let today = app.clock.now().date_naive();
    let month = today.format("%B %Y").to_string();
    assert!(b.get("/").await.body.contains(&format!("<dt>{month} to date</dt>")));

    let edit = format!("/sites/{site}/edit");
    let res = submit(&mut b, &edit, &edit, &[("name", "Plant"), ("time_zone", "UTC"), ("meter_read_day", "15")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let p = Period::containing(today, 15).unwrap();
    assert_eq!(p.start.format("%d").to_string(), "15");
    let label = format!("Bill {} – {}", p.start.format("%-d %b"), p.last_day().format("%-d %b %Y"));
    let overview = b.get("/").await;
    for expected in [format!("<dt>{label} to date</dt>"), format!("<dt>{label} projected</dt>")] {
        assert!(overview.body.contains(&expected), "{expected} missing from {}", overview.body);
    }
    let page = b.get(&format!("/sites/{site}")).await;
    let covers =
        format!("this month's bill covers {} – {}", p.start.format("%-d %b %Y"), p.last_day().format("%-d %b %Y"));
    assert!(page.body.contains(&covers), "{covers} missing from {}", page.body);
    let cost = b.get(&format!("/sites/{site}/cost")).await;
    assert!(cost.body.contains(&format!("<strong>{}</strong> to <strong>{}</strong>", p.start, p.last_day())));
}
