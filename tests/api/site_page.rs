//! The site page's dashboard through the real router, against hand-computed values: daily bars
//! of a month with London's 23-hour and 25-hour days, monthly bars of the year, the month's
//! energy and charge per TOU period from the tariff engine, today against yesterday, live power
//! and the devices compared on one chart.

use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::Value;
use sqlx::PgPool;
use tau_acuvim_portal::measurements::energy::rollup;
use tau_acuvim_portal::measurements::{self, COUNTER_QUANTITIES, REAL_QUANTITIES, Reading};

use crate::dashboards::{floor_15, mid_interval, noon_zone};
use crate::helpers::{Browser, TestApp};
use crate::sites::admin;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

/// Counter readings of `device` every 15 minutes from `from` to `to` (both included), the
/// counter rising by `wh` each interval from `start_wh`; active power `w` in each.
fn counters(device: i32, from: DateTime<Utc>, to: DateTime<Utc>, start_wh: f64, wh: f64, w: f32) -> Vec<Reading> {
    let import = COUNTER_QUANTITIES.iter().position(|q| q.1 == "EnergyImportWh").unwrap();
    let ptotal = REAL_QUANTITIES.iter().position(|q| q.1 == "PTotal").unwrap();
    let mut out = Vec::new();
    let mut t = from;
    let mut k = 0.0;
    while t <= to {
        let mut r = Reading::empty(device, t);
        r.counters[import] = Some(start_wh + wh * k);
        r.real[ptotal] = Some(w);
        out.push(r);
        t += TimeDelta::minutes(15);
        k += 1.0;
    }
    out
}

pub(crate) fn power(device: i32, at: DateTime<Utc>, w: f32) -> Reading {
    let ptotal = REAL_QUANTITIES.iter().position(|q| q.1 == "PTotal").unwrap();
    let mut r = Reading::empty(device, at);
    r.real[ptotal] = Some(w);
    r
}

/// The rows of the table after `heading` (its first `<table>`): (row heading, cells).
fn table_after(body: &str, heading: &str) -> Vec<(String, Vec<String>)> {
    let at = body.find(heading).unwrap_or_else(|| panic!("no {heading:?} in {body}"));
    let rest = &body[at..];
    let table = &rest[rest.find("<tbody>").unwrap()..rest.find("</tbody>").unwrap()];
    let strip = |s: &str| {
        let mut out = String::new();
        let mut tag = false;
        for c in s.chars() {
            match c {
                '<' => tag = true,
                '>' => tag = false,
                c if !tag => out.push(c),
                _ => {}
            }
        }
        out.trim().to_string()
    };
    table
        .split("<tr")
        .skip(1)
        .map(|row| {
            let head = &row[row.find("<th").unwrap()..row.find("</th>").unwrap()];
            let cells = row.split("<td>").skip(1).map(|c| strip(&c[..c.find("</td>").unwrap()])).collect();
            (strip(&format!("<{head}")), cells)
        })
        .collect()
}

/// The inline charts of a page (`data-chart` attributes), in page order.
fn charts(body: &str) -> Vec<Value> {
    body.split(r#"data-chart=""#)
        .skip(1)
        .map(|rest| {
            let raw = &rest[..rest.find('"').unwrap()];
            let json = raw.replace("&#34;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">");
            serde_json::from_str(&json.replace("&#38;", "&")).unwrap_or_else(|e| panic!("{e}: {json}"))
        })
        .collect()
}

async fn tou_tariff(b: &mut Browser, site: i32) {
    let m = crate::tariffs::municipality(
        b,
        &[("name", "TOU town"), ("country", "UK"), ("currency", "GBP"), ("vat_percent", "20"), ("holidays", "")],
    )
    .await;
    // Every day: off-peak to 08:00, peak 08:00–12:00, standard 12:00–18:00, off-peak after.
    let windows: Vec<String> = ["weekday", "saturday", "sunday"]
        .iter()
        .flat_map(|dt| {
            [
                ("00:00", "08:00", "off_peak"),
                ("08:00", "12:00", "peak"),
                ("12:00", "18:00", "standard"),
                ("18:00", "24:00", "off_peak"),
            ]
            .map(|(f, t, p)| format!(r#"{{"day_type": "{dt}", "from": "{f}", "to": "{t}", "period": "{p}"}}"#))
        })
        .collect();
    let json = format!(
        r#"{{"name": "Three rates", "versions": [{{"effective_from": "2026-01-01", "energy": {{"kind": "tou", "holidays_as": "sunday",
            "seasons": [{{"name": "All year", "from": "01-01", "to": "12-31",
                          "rates": {{"peak": "3.00", "standard": "2.00", "off_peak": "1.00"}}, "windows": [{}]}}]}}}}]}}"#,
        windows.join(", ")
    );
    let res = crate::tariffs::import(b, m, &json).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let tariff = crate::tariffs::id_after(res.location(), "/settings/rates/tariffs/");
    let res = crate::tariffs::submit(
        b,
        "/settings/rates",
        "/settings/rates/assignments",
        &[("site_id", &site.to_string()), ("tariff_id", &tariff.to_string()), ("effective_from", "2026-01-01")],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
}

/// A London site: one meter imported 1 kWh every 15 minutes over 28–30 March 2026 (the 29th
/// has 23 hours), another over 24–26 October 2026 (the 25th has 25 hours).
#[sqlx::test]
async fn daily_and_monthly_bars_count_dst_days_and_the_month_splits_by_tou_period(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let mut b = admin(&app).await;
    let (site, devices) =
        crate::helpers::site_with_devices(&pool, "London", "Europe/London", &["march", "october"]).await;
    // Local 28 March 00:00 (GMT) to 31 March 00:00 (BST); local 24 October 00:00 (BST) to 27 October 00:00 (GMT).
    let mut batch = counters(devices[0], utc("2026-03-28T00:00:00Z"), utc("2026-03-30T23:00:00Z"), 0.0, 1000.0, 4000.0);
    batch.extend(counters(devices[1], utc("2026-10-23T23:00:00Z"), utc("2026-10-27T00:00:00Z"), 5e6, 1000.0, 4000.0));
    measurements::write(&pool, &batch).await.unwrap();
    rollup::run_once(&pool, app.clock.now()).await.unwrap();
    tou_tariff(&mut b, site).await;

    let page = b.get(&format!("/sites/{site}?month=2026-10")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let days = table_after(&page.body, "Energy per day, October 2026 (kWh)");
    assert_eq!(days.len(), 31);
    let kwh: Vec<(&str, &str)> = days[23..26].iter().map(|(d, c)| (d.as_str(), c[0].as_str())).collect();
    assert_eq!(kwh, [("Sat 24 Oct", "96.0 kWh"), ("Sun 25 Oct", "100.0 kWh"), ("Mon 26 Oct", "96.0 kWh")]);
    assert_eq!(days[0].1[0], "0.0 kWh", "a day without data is zero");
    assert!(page.body.contains(r#"Energy per day, October 2026 (kWh): <span data-figure="total">292.0 kWh</span>"#));
    let months = table_after(&page.body, "Energy per month, 2026 (kWh)");
    let months: Vec<(&str, &str)> = months.iter().map(|(m, c)| (m.as_str(), c[0].as_str())).collect();
    assert_eq!(months[2], ("March", "284.0 kWh"), "96 + 92 + 96");
    assert_eq!(months[9], ("October", "292.0 kWh"), "96 + 100 + 96");
    assert_eq!(months[0], ("January", "0.0 kWh"));
    assert!(page.body.contains(&format!(r#"<a href="/sites/{site}?month=2026-03#energy">March</a>"#)));

    // The month by TOU period: per day 4 h peak (16 kWh) and 6 h standard (24 kWh); the rest is
    // off-peak, 56 kWh, or 60 on the 25-hour day (its repeated hour is at 01:00).
    let tou = table_after(&page.body, "Energy by time-of-use period, October 2026");
    let tou: Vec<(&str, Vec<&str>)> =
        tou.iter().map(|(p, c)| (p.as_str(), c.iter().map(String::as_str).collect())).collect();
    assert_eq!(
        tou,
        [
            ("Peak", vec!["48.0 kWh", "16.4 %", "GBP 144.00"]),
            ("Standard", vec!["72.0 kWh", "24.7 %", "GBP 144.00"]),
            ("Off-peak", vec!["172.0 kWh", "58.9 %", "GBP 172.00"]),
        ]
    );
    assert!(page.body.contains("<td>292.0 kWh</td><td></td><td>GBP 460.00</td>"), "the total row");

    // The bar charts' data: a bar per day of October (the 25th's 100 kWh), per month of 2026.
    let drawn = charts(&page.body);
    let bars: Vec<&Value> = drawn.iter().filter(|c| c["style"] == "bars").collect();
    assert_eq!(bars.len(), 2);
    assert_eq!(bars[0]["times"].as_array().unwrap().len(), 31);
    assert_eq!(bars[0]["times"][24], utc("2026-10-24T23:00:00Z").timestamp(), "25 October starts at 23:00 UTC (BST)");
    assert_eq!(bars[0]["times"][25].as_i64().unwrap() - bars[0]["times"][24].as_i64().unwrap(), 25 * 3600);
    assert_eq!(bars[0]["lines"][0]["values"][24], 100.0);
    assert_eq!(bars[1]["lines"][0]["values"][2], 284.0);

    // March: the 23-hour day, and March's TOU split (the skipped hour is off-peak).
    let page = b.get(&format!("/sites/{site}?month=2026-03")).await;
    let days = table_after(&page.body, "Energy per day, March 2026 (kWh)");
    let kwh: Vec<(&str, &str)> = days[27..30].iter().map(|(d, c)| (d.as_str(), c[0].as_str())).collect();
    assert_eq!(kwh, [("Sat 28 Mar", "96.0 kWh"), ("Sun 29 Mar", "92.0 kWh"), ("Mon 30 Mar", "96.0 kWh")]);
    let tou = table_after(&page.body, "Energy by time-of-use period, March 2026");
    assert_eq!(tou[2].1[0], "164.0 kWh", "56 + 52 + 56");

    // A month not begun yet: refused with the reason, this month shown.
    let page = b.get(&format!("/sites/{site}?month=2099-01")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("That month has not begun yet: showing this month."), "{}", page.body);
    let page = b.get(&format!("/sites/{site}?month=soon")).await;
    assert!(page.body.contains("Enter the month as YYYY-MM: showing this month."));
    // Without a tariff: no TOU split, and the page says why.
    let (bare, _) = crate::helpers::site_with_devices(&pool, "Bare", "UTC", &["bare"]).await;
    let page = b.get(&format!("/sites/{bare}")).await;
    assert!(page.body.contains("No tariff is assigned to this site for this month"), "{}", page.body);
}

/// Today against yesterday in a zone where it is about noon: 1 kWh per 15 minutes yesterday,
/// 2 kWh today; two meters online now; both compared on one chart.
#[sqlx::test]
async fn today_is_compared_with_yesterday_and_the_devices_on_one_chart(pool: PgPool) {
    use chrono::TimeZone;
    let app = TestApp::new(pool.clone()).await;
    let now = mid_interval(&app);
    let mut b = admin(&app).await;
    let zone = noon_zone(now);
    let tz: chrono_tz::Tz = zone.parse().unwrap();
    let (site, devices) = crate::helpers::site_with_devices(&pool, "Plant", &zone, &["incomer", "pump"]).await;
    let local = now.with_timezone(&tz);
    let midnight = tz.from_local_datetime(&local.date_naive().and_hms_opt(0, 0, 0).unwrap()).unwrap().to_utc();
    let yesterday = midnight - TimeDelta::days(1);
    let last = floor_15(now - TimeDelta::minutes(1));
    let n_today = (last - midnight).num_minutes() / 15;
    let mut batch = counters(devices[0], yesterday, midnight - TimeDelta::minutes(15), 0.0, 1000.0, 4000.0);
    batch.extend(counters(devices[0], midnight, last, 96_000.0, 2000.0, 8000.0));
    batch.push(power(devices[0], now - TimeDelta::seconds(10), 12_000.0));
    // The pump: 3 kW every 5 minutes for the last two hours.
    batch.extend((0..24).map(|k| power(devices[1], now - TimeDelta::seconds(20 + 300 * k), 3_000.0)));
    measurements::write(&pool, &batch).await.unwrap();
    rollup::run_once(&pool, now).await.unwrap();

    let page = b.get(&format!("/sites/{site}")).await;
    assert_eq!(page.status, StatusCode::OK);
    let field = |key: &str| {
        let at = page.body.find(key).unwrap_or_else(|| panic!("no {key} in {}", page.body));
        let rest = &page.body[at + key.len() + 1..];
        rest[..rest.find('<').unwrap()].to_string()
    };
    let kwh = |n: f64| format!("{} kWh", tau_acuvim_portal::sites::readings::grouped(n, 1));
    assert_eq!(field(&format!(r#"data-field="site-{site}-kw""#)), "15.00 kW", "12 kW + 3 kW online");
    assert_eq!(field(r#"data-figure="today-kwh""#), kwh(2.0 * n_today as f64));
    assert_eq!(field(r#"data-figure="yesterday-kwh""#), kwh(96.0));
    // Yesterday's intervals that began before today's time of day.
    let same_time = field(r#"data-figure="yesterday-same-time-kwh""#);
    let elapsed = (app.clock.now() - midnight).num_seconds();
    let candidates = [kwh(((elapsed - 5 + 899) / 900) as f64), kwh(((elapsed + 899) / 900) as f64)];
    assert!(candidates.contains(&same_time), "{same_time} not in {candidates:?}");
    assert!(page.body.contains(r#"data-live="/api/live/overview""#), "the live figure updates");

    let drawn = charts(&page.body);
    let today = &drawn[0];
    assert_eq!(today["lines"][0]["label"], "Today");
    assert_eq!(today["times"].as_array().unwrap().len(), 96);
    assert_eq!(today["times"][0], midnight.timestamp());
    assert_eq!(
        (today["lines"][0]["values"][0].as_f64(), today["lines"][1]["values"][0].as_f64()),
        (Some(8.0), Some(4.0))
    );
    assert_eq!(today["lines"][0]["values"][n_today as usize + 2], Value::Null, "the future has no power yet");
    assert_eq!(today["lines"][1]["values"][95].as_f64(), Some(4.0), "yesterday's whole day");

    let compare = drawn.iter().find(|c| c["label"].as_str().unwrap().starts_with("Active power per device")).unwrap();
    let labels: Vec<&str> = compare["lines"].as_array().unwrap().iter().map(|l| l["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["incomer", "pump"]);
    let pump: Vec<f64> = compare["lines"][1]["values"].as_array().unwrap().iter().filter_map(Value::as_f64).collect();
    assert_eq!(pump.len(), 24, "a 5-minute bucket per reading");
    assert!(pump.iter().all(|v| *v == 3.0), "{pump:?}");
    assert_eq!(compare["bucketSeconds"], 300);
    assert!(page.body.contains(r#"<polyline class="line-1""#), "the fallback SVG draws both devices");
    let week = b.get(&format!("/sites/{site}?compare=7d")).await;
    let compare =
        charts(&week.body).into_iter().find(|c| c["label"].as_str().unwrap().starts_with("Active power")).unwrap();
    assert_eq!(compare["bucketSeconds"], 3600, "7 days from the hourly rollup");
    assert!(week.body.contains(r#"aria-current="page">7 days</a>"#));
}

/// Seven meters, meter k drawing k kW: the comparison draws the six that used the most energy
/// this month (in the site's order) and says the seventh is not drawn; the 7-day view reads the
/// hourly rollup in hour buckets, the 24-hour view the readings in 5 minutes, with the same
/// figures.
#[sqlx::test]
async fn the_comparison_draws_the_six_biggest_meters_and_names_the_rest(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let now = mid_interval(&app);
    let mut b = admin(&app).await;
    // About noon local: the last two hours are this month's, whatever the date.
    let zone = noon_zone(now);
    let names = ["m1", "m2", "m3", "m4", "m5", "m6", "m7"];
    let (site, devices) = crate::helpers::site_with_devices(&pool, "Many", &zone, &names).await;
    let (from, last) = (floor_15(now - TimeDelta::hours(2)), floor_15(now - TimeDelta::minutes(1)));
    let mut batch = Vec::new();
    for (k, d) in devices.iter().enumerate() {
        let kw = (k + 1) as f64;
        batch.extend(counters(*d, from, last, 0.0, 250.0 * kw, 1000.0 * kw as f32));
    }
    measurements::write(&pool, &batch).await.unwrap();
    rollup::run_once(&pool, now).await.unwrap();
    measurements::hourly::refresh(&pool, now).await.unwrap();

    for (range, bucket) in [("7d", 3600), ("24h", 300)] {
        let page = b.get(&format!("/sites/{site}?compare={range}")).await;
        assert_eq!(page.status, StatusCode::OK);
        let compare =
            charts(&page.body).into_iter().find(|c| c["label"].as_str().unwrap().starts_with("Active power")).unwrap();
        assert_eq!(compare["bucketSeconds"], bucket, "{range}");
        let labels: Vec<&str> =
            compare["lines"].as_array().unwrap().iter().map(|l| l["label"].as_str().unwrap()).collect();
        assert_eq!(labels, names[1..], "{range}: the smallest meter is left out");
        for (k, line) in compare["lines"].as_array().unwrap().iter().enumerate() {
            let values: Vec<f64> = line["values"].as_array().unwrap().iter().filter_map(Value::as_f64).collect();
            assert!(!values.is_empty(), "{range}: {} has buckets", labels[k]);
            assert!(values.iter().all(|v| *v == (k + 2) as f64), "{range} {}: {values:?}", labels[k]);
        }
        assert!(
            page.body.contains(
                r#"data-figure="compare-hidden">1 more device is not drawn: the chart shows the 6 that used the most energy this month.</p>"#
            ),
            "{}",
            page.body
        );
    }
}
