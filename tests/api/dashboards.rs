//! The portal's own dashboards through the real router: the device chart's buckets (min, avg and
//! max computed by the database, hand-checked), DST days in day buckets, ranges and their errors,
//! and the streamed CSV export.

use axum::http::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

use crate::helpers::{Browser, TestApp};
use crate::sites::{admin, create_device, id_in, post_site};

async fn site_in(b: &mut Browser, name: &str, zone: &str) -> i32 {
    let res = post_site(b, "/sites/new", &[("name", name), ("time_zone", zone)]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    id_in(res.location(), "/sites/")
}

async fn json(b: &mut Browser, url: &str) -> Value {
    let res = b.get(url).await;
    assert_eq!(res.status, StatusCode::OK, "{url}: {}", res.body);
    serde_json::from_str(&res.body).unwrap()
}

fn numbers(v: &Value) -> Vec<Option<f64>> {
    v.as_array().unwrap().iter().map(Value::as_f64).collect()
}

#[sqlx::test]
async fn the_chart_buckets_hold_min_avg_and_max_of_the_readings(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let site = site_in(&mut b, "Plant", "UTC").await;
    let device = create_device(&mut b, site, "MTR-1", &[]).await;
    // Two hours ago: one reading a minute for ten minutes, P = 1..10 kW; V1 230 + minute.
    sqlx::query(
        r#"INSERT INTO monitoring."PowerMeasurements" ("DeviceId", "Time", "PTotal", "V1", "V2", "V3")
           SELECT $1, date_bin('5 minutes', now() - interval '2 hours', '2000-01-01') + make_interval(mins => m),
                  1000 * (m + 1), 230 + m, 231, 232
           FROM generate_series(0, 9) AS m"#,
    )
    .bind(device)
    .execute(&app.state.db)
    .await
    .unwrap();
    let body = json(&mut b, &format!("/devices/{device}/series?q=p&range=24h")).await;
    assert_eq!(body["unit"], "kW");
    assert_eq!(body["bucketSeconds"], 300);
    assert_eq!(body["samples"], serde_json::json!([5, 5]), "two 5-minute buckets of five readings");
    let lines = body["lines"].as_array().unwrap();
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["min", "avg", "max"]);
    assert_eq!(numbers(&lines[0]["values"]), [Some(1.0), Some(6.0)]);
    assert_eq!(numbers(&lines[1]["values"]), [Some(3.0), Some(8.0)]);
    assert_eq!(numbers(&lines[2]["values"]), [Some(5.0), Some(10.0)]);
    assert_eq!(body["times"][1].as_i64().unwrap() - body["times"][0].as_i64().unwrap(), 300);

    // Voltage: a line per phase (their averages).
    let body = json(&mut b, &format!("/devices/{device}/series?q=v&range=7d")).await;
    assert_eq!(body["bucketSeconds"], 1800);
    let labels: Vec<&str> = body["lines"].as_array().unwrap().iter().map(|l| l["label"].as_str().unwrap()).collect();
    assert_eq!(labels, ["V1", "V2", "V3"]);
    let v1 = numbers(&body["lines"][0]["values"]);
    let v3 = numbers(&body["lines"][2]["values"]);
    let total: i64 = body["samples"].as_array().unwrap().iter().map(|s| s.as_i64().unwrap()).sum();
    assert_eq!(total, 10);
    assert!(v3.iter().all(|v| *v == Some(232.0)), "{v3:?}");
    assert!(v1.iter().all(|v| v.is_some_and(|v| (230.0..=239.0).contains(&v))), "{v1:?}");

    // The page: its SVG draws the same buckets, the picker marks the range, the links carry it.
    let page = b.get(&format!("/devices/{device}?q=v&range=7d")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Voltage, line to neutral (V), last 7 days, per 30 minutes"), "{}", page.body);
    assert!(
        page.body.contains(&format!(r#"data-series="/devices/{device}/series?q=v&#38;range=7d""#)),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"class="line-2""#), "three phase lines");
    assert!(page.body.contains(&format!(r#"href="/devices/{device}/readings.csv?q=v&#38;range=7d""#)));
    // A refused range says why and shows 24 hours.
    let bad = b.get(&format!("/devices/{device}?from=2026-02-30")).await;
    assert_eq!(bad.status, StatusCode::OK);
    assert!(bad.body.contains("Enter the first day as a date (YYYY-MM-DD). Showing the last 24 hours instead."));
    let res = b.get(&format!("/devices/{device}/series?from=2026-05-02&to=2026-05-01")).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert!(res.body.contains("The last day is before the first day."), "{}", res.body);
    // Zoomed: finer buckets for the chosen span.
    let end = body["to"].as_i64().unwrap() * 1000;
    let zoom = json(&mut b, &format!("/devices/{device}/series?q=p&start={}&end={end}", end - 3 * 3_600_000)).await;
    assert_eq!(zoom["bucketSeconds"], 60);
    assert_eq!(zoom["samples"].as_array().unwrap().len(), 10, "one bucket per reading");
    // Anonymous users get nothing.
    let mut anonymous = app.browser();
    assert_eq!(anonymous.get(&format!("/devices/{device}/series")).await.status, StatusCode::SEE_OTHER);
    assert_eq!(anonymous.get(&format!("/devices/{device}/readings.csv")).await.status, StatusCode::SEE_OTHER);
    assert_eq!(b.get("/devices/999999/series").await.status, StatusCode::NOT_FOUND);
}

/// Day buckets are the site's local days: London's spring change day holds 23 hours of
/// quarter-hourly readings (92), its autumn change day 25 (100).
#[sqlx::test]
async fn day_buckets_follow_the_sites_dst_days(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let site = site_in(&mut b, "London", "Europe/London").await;
    let device = create_device(&mut b, site, "MTR-1", &[]).await;
    // Quarter-hourly readings through the write path (which marks them for the hourly rollup).
    let ptotal = tau_acuvim_portal::measurements::REAL_QUANTITIES.iter().position(|q| q.1 == "PTotal").unwrap();
    let utc = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    let mut batch = Vec::new();
    for (from, to, w) in [
        ("2026-03-28T00:00:00Z", "2026-03-30T22:59:00Z", 1000.0),
        ("2026-10-23T23:00:00Z", "2026-10-26T23:59:00Z", 2000.0),
    ] {
        let mut t = utc(from);
        while t <= utc(to) {
            let mut r = tau_acuvim_portal::measurements::Reading::empty(device, t);
            r.real[ptotal] = Some(w);
            batch.push(r);
            t += chrono::TimeDelta::minutes(15);
        }
    }
    tau_acuvim_portal::measurements::write(&app.state.db, &batch).await.unwrap();
    let body = json(&mut b, &format!("/devices/{device}/series?from=2026-03-01&to=2026-11-30")).await;
    assert_eq!(body["bucket"], "day");
    let days: Vec<(String, i64)> = body["times"]
        .as_array()
        .unwrap()
        .iter()
        .zip(body["samples"].as_array().unwrap())
        .map(|(t, s)| {
            let t = chrono::DateTime::from_timestamp(t.as_i64().unwrap(), 0).unwrap();
            (t.to_rfc3339(), s.as_i64().unwrap())
        })
        .collect();
    let expected = [
        ("2026-03-28T00:00:00+00:00", 96),
        ("2026-03-29T00:00:00+00:00", 92), // 23 hours: clocks go forward at 01:00
        ("2026-03-29T23:00:00+00:00", 96), // BST: the day starts at 23:00 UTC the day before
        ("2026-10-23T23:00:00+00:00", 96),
        ("2026-10-24T23:00:00+00:00", 100), // 25 hours: clocks go back at 02:00
        ("2026-10-26T00:00:00+00:00", 96),
    ];
    let expected: Vec<(String, i64)> = expected.iter().map(|(t, n)| (t.to_string(), *n)).collect();
    assert_eq!(days, expected, "from the readings (nothing rolled up yet)");
    // The same from the hourly rollup, once the job has run.
    tau_acuvim_portal::measurements::hourly::refresh(&app.state.db, chrono::Utc::now()).await.unwrap();
    let rolled = json(&mut b, &format!("/devices/{device}/series?from=2026-03-01&to=2026-11-30")).await;
    assert_eq!(rolled["samples"], body["samples"]);
    assert_eq!(rolled["times"], body["times"]);
    assert_eq!(rolled["lines"], body["lines"]);
}

/// Hour and day buckets come from the hourly rollup before a device's stale mark and from the
/// readings after it: a late reading changes the chart at once, and again after the job ran.
#[sqlx::test]
async fn long_charts_read_the_hourly_rollup_and_late_readings_show_at_once(pool: PgPool) {
    use tau_acuvim_portal::measurements::hourly;
    let app = TestApp::new(pool.clone()).await;
    let mut b = admin(&app).await;
    let site = site_in(&mut b, "Plant", "UTC").await;
    let device = create_device(&mut b, site, "MTR-1", &[]).await;
    let write = |rows: Vec<(i64, f32)>| {
        let pool = pool.clone();
        async move {
            let ptotal = tau_acuvim_portal::measurements::REAL_QUANTITIES.iter().position(|q| q.1 == "PTotal").unwrap();
            let base = chrono::DateTime::parse_from_rfc3339("2026-11-10T00:00:00Z").unwrap().to_utc();
            let batch: Vec<_> = rows
                .into_iter()
                .map(|(minute, w)| {
                    let mut r = tau_acuvim_portal::measurements::Reading::empty(
                        device,
                        base + chrono::TimeDelta::minutes(minute),
                    );
                    r.real[ptotal] = Some(w);
                    r
                })
                .collect();
            tau_acuvim_portal::measurements::write(&pool, &batch).await.unwrap();
        }
    };
    // Three hours a minute apart: 1 kW, 2 kW, 3 kW.
    write((0..180).map(|m| (m, 1000.0 * (1 + m / 60) as f32)).collect()).await;
    let url = format!("/devices/{device}/series?from=2026-11-01&to=2026-11-20");
    let hours = |body: &Value| -> Vec<(i64, Option<f64>, Option<f64>)> {
        let n = body["samples"].as_array().unwrap().iter().map(|s| s.as_i64().unwrap());
        let avg = numbers(&body["lines"][1]["values"]);
        let max = numbers(&body["lines"][2]["values"]);
        n.zip(avg).zip(max).map(|((n, a), x)| (n, a, x)).collect()
    };
    let three = [(60, Some(1.0), Some(1.0)), (60, Some(2.0), Some(2.0)), (60, Some(3.0), Some(3.0))];
    assert_eq!(hours(&json(&mut b, &url).await), three, "from the readings");
    // At 02:30 the third hour is still in progress: it stays marked, read from the readings.
    let mark = || async {
        let from: chrono::DateTime<chrono::Utc> =
            sqlx::query_scalar(r#"SELECT "From" FROM monitoring."HourlyStale""#).fetch_one(&pool).await.unwrap();
        from.to_rfc3339()
    };
    let half_past_two = chrono::DateTime::parse_from_rfc3339("2026-11-10T02:30:00Z").unwrap().to_utc();
    assert_eq!(hourly::refresh(&pool, half_past_two).await.unwrap(), 2, "the two hours that ended");
    assert_eq!(mark().await, "2026-11-10T02:00:00+00:00");
    assert_eq!(hourly::refresh(&pool, half_past_two).await.unwrap(), 0, "nothing more until the hour ends");
    assert_eq!(hours(&json(&mut b, &url).await), three, "two hours rolled up, the third from the readings");
    assert_eq!(hourly::refresh(&pool, chrono::Utc::now()).await.unwrap(), 1);
    let body = json(&mut b, &url).await;
    assert_eq!(body["bucketSeconds"], 3600, "20 days are drawn in hours");
    assert_eq!(hours(&body), three);
    // A late reading in the second hour: served from the readings before the job runs again.
    write(vec![(90, 62_000.0), (90, 0.0)]).await;
    let body = json(&mut b, &url).await;
    assert_eq!(hours(&body)[1], (60, Some(2.0), Some(2.0)), "same time: the stored reading stays");
    write(vec![(90 * 60, 5_000.0)]).await; // 90 hours on: a fresh hour
    write(vec![(75, 5_000.0)]).await;
    let late = json(&mut b, &url).await;
    assert_eq!(hours(&late)[0], (60, Some(1.0), Some(1.0)), "hours before the late reading come from the rollup");
    assert_eq!(hours(&late)[1].2, Some(2.0), "minute 75 was already stored: skipped");
    write(vec![(150, 5_000.0)]).await;
    let body = json(&mut b, &url).await;
    assert_eq!(hours(&body)[2].2, Some(3.0), "minute 150 was stored too");
    write(vec![(59, 9_000.0)]).await; // already stored
    write(vec![(-30, 7_000.0)]).await; // before the first reading: a new hour, 23:00 the day before
    let body = json(&mut b, &url).await;
    assert_eq!(hours(&body)[0], (1, Some(7.0), Some(7.0)), "the late hour is there before the job runs");
    assert_eq!(hours(&body)[1], (60, Some(1.0), Some(1.0)));
    hourly::refresh(&pool, chrono::Utc::now()).await.unwrap();
    let again = json(&mut b, &url).await;
    assert_eq!(hours(&again), hours(&body), "and the same after it ran");
    let stale: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM monitoring."HourlyStale""#).fetch_one(&pool).await.unwrap();
    assert_eq!(stale, 0);
}

#[sqlx::test]
async fn the_csv_export_streams_every_reading_of_the_range_in_order(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let site = site_in(&mut b, "Plant", "Africa/Johannesburg").await;
    let device = create_device(&mut b, site, "MTR/1", &[]).await;
    // 12 001 readings a minute apart (more than two export pages), on 2026-06-01 local time.
    sqlx::query(
        r#"INSERT INTO monitoring."PowerMeasurements" ("DeviceId", "Time", "PTotal", "V1", "EnergyImportWh")
           SELECT $1, timestamptz '2026-05-31T22:00:00Z' + make_interval(mins => m), m, 230.44, 1000000.5 + m
           FROM generate_series(0, 12000) AS m"#,
    )
    .bind(device)
    .execute(&app.state.db)
    .await
    .unwrap();
    let res = b.get(&format!("/devices/{device}/readings.csv?from=2026-06-01&to=2026-06-09")).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(res.headers["content-disposition"], "attachment; filename=\"MTR_1-2026-06-01-2026-06-09.csv\"");
    assert!(res.headers.get("content-length").is_none(), "streamed, not built in memory first");
    let lines: Vec<&str> = res.body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("time_utc,time_local,Frequency (Hz),V1 (V)"), "{}", lines[0]);
    assert!(lines[0].ends_with("ApparentVAh (VAh)"));
    assert_eq!(lines.len(), 1 + 12_001);
    assert!(lines[1].starts_with("2026-05-31T22:00:00.000Z,2026-06-01 00:00:00+02:00,,230.44,"), "{}", lines[1]);
    let v1_and_energy: Vec<&str> = lines[12_001].split(',').collect();
    assert!(v1_and_energy.contains(&"12000") && v1_and_energy.contains(&"1012000.5"), "{}", lines[12_001]);
    let times: Vec<&str> = lines[1..].iter().map(|l| l.split(',').next().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "ordered, no repeats across pages");
    // A range without readings is a header alone; a bad range is refused with its reason.
    let empty = b.get(&format!("/devices/{device}/readings.csv?from=2026-07-01&to=2026-07-01")).await;
    assert_eq!(empty.body.split("\r\n").filter(|l| !l.is_empty()).count(), 1);
    let bad = b.get(&format!("/devices/{device}/readings.csv?from=soon")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

/// A zone where it is about noon now (fixed offset, no DST), so "today" has a morning of data
/// whenever the test runs.
pub(crate) fn noon_zone(now: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::Timelike;
    let offset = 12 - i64::from(now.hour());
    match offset {
        0 => "Etc/UTC".into(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    }
}

/// Moves the test clock to five minutes into a 15-minute interval and returns that time, so
/// readings placed seconds to a minute before "now" land in the open interval whatever the wall
/// clock says (at a boundary + 10 s they would close an interval and count as data).
pub(crate) fn mid_interval(app: &TestApp) -> chrono::DateTime<chrono::Utc> {
    let into = app.clock.now().timestamp().rem_euclid(900) as u64;
    app.clock.advance(std::time::Duration::from_secs((300 + 900 - into) % 900));
    app.clock.now()
}

pub(crate) fn floor_15(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(t.timestamp() - t.timestamp().rem_euclid(900), 0).unwrap()
}

/// The Overview's figures against hand-computed values: a meter that imported exactly 1 kWh in
/// every 15 minutes of this month (its counter read at every boundary), a flat 2.00 per kWh
/// without VAT, a second meter offline for three hours and a third failing.
#[sqlx::test]
async fn the_overview_shows_live_power_todays_and_this_months_energy_and_cost_and_who_is_down(pool: PgPool) {
    use chrono::{Datelike, TimeDelta, TimeZone};
    use tau_acuvim_portal::measurements::energy::rollup;
    use tau_acuvim_portal::measurements::{self, COUNTER_QUANTITIES, REAL_QUANTITIES, Reading};
    let app = TestApp::new(pool.clone()).await;
    let now = mid_interval(&app);
    let mut b = admin(&app).await;
    let zone = noon_zone(now);
    let tz: chrono_tz::Tz = zone.parse().unwrap();
    let (site, devices) = crate::helpers::site_with_devices(&pool, "Plant", &zone, &["main", "pump", "hvac"]).await;
    let (main, pump, hvac) = (devices[0], devices[1], devices[2]);
    let local = now.with_timezone(&tz);
    let midnight = tz.from_local_datetime(&local.date_naive().and_hms_opt(0, 0, 0).unwrap()).unwrap().to_utc();
    let month_start = tz
        .from_local_datetime(&local.date_naive().with_day0(0).unwrap().and_hms_opt(0, 0, 0).unwrap())
        .unwrap()
        .to_utc();
    let last = floor_15(now - TimeDelta::minutes(1));
    let n_month = (last - month_start).num_minutes() / 15;
    let n_today = (last - midnight).num_minutes() / 15;
    let import = COUNTER_QUANTITIES.iter().position(|q| q.1 == "EnergyImportWh").unwrap();
    let ptotal = REAL_QUANTITIES.iter().position(|q| q.1 == "PTotal").unwrap();
    let mut batch: Vec<Reading> = (0..=n_month)
        .map(|k| {
            let mut r = Reading::empty(main, month_start + TimeDelta::minutes(15 * k));
            r.counters[import] = Some(1000.0 * k as f64);
            r.real[ptotal] = Some(4000.0);
            r
        })
        .collect();
    let mut latest = Reading::empty(main, now - TimeDelta::seconds(10));
    latest.real[ptotal] = Some(12_000.0);
    batch.push(latest);
    let mut old = Reading::empty(pump, now - TimeDelta::hours(3));
    old.real[ptotal] = Some(50_000.0);
    batch.push(old);
    let mut failing = Reading::empty(hvac, now - TimeDelta::seconds(20));
    failing.real[ptotal] = Some(3_000.0);
    batch.push(failing);
    measurements::write(&pool, &batch).await.unwrap();
    sqlx::query(
        r#"UPDATE monitoring."Devices" SET "ConsecutiveFailures" = 2, "LastError" = 'Connection refused (10.0.0.7:502)',
               "LastErrorAt" = now() WHERE "Id" = $1"#,
    )
    .bind(hvac)
    .execute(&pool)
    .await
    .unwrap();
    rollup::run_once(&pool, now).await.unwrap();

    crate::tariffs::flat_tariff(&mut b, site).await;

    let page = b.get("/").await;
    assert_eq!(page.status, StatusCode::OK);
    let field = |key: &str| {
        let needle = format!(r#"data-field="{key}">"#);
        let at = page.body.find(&needle).unwrap_or_else(|| panic!("no {key} in {}", page.body));
        let rest = &page.body[at + needle.len()..];
        rest[..rest.find('<').unwrap()].to_string()
    };
    let kwh = |n: i64| format!("{} kWh", tau_acuvim_portal::sites::readings::grouped(n as f64, 1));
    let money = |n: i64| format!("ZAR {}.00", tau_acuvim_portal::sites::readings::grouped(n as f64, 0));
    assert_eq!(
        field(&format!("site-{site}-kw")),
        "12.00 kW",
        "the online meters' newest power; the pump's 50 kW is 3 h old"
    );
    assert_eq!(field(&format!("site-{site}-today-kwh")), kwh(n_today));
    assert_eq!(field(&format!("site-{site}-month-kwh")), kwh(n_month));
    assert_eq!(field(&format!("site-{site}-today-cost")), money(2 * n_today));
    assert_eq!(field(&format!("site-{site}-month-cost")), money(2 * n_month));
    assert!(field(&format!("site-{site}-projected-cost")).starts_with("ZAR "));
    // Of three meters, the main one reported every interval so far and the pump one (3 h ago);
    // the failing meter's interval is still open.
    let elapsed = (now - month_start).num_seconds() / 900;
    let completeness = field(&format!("site-{site}-completeness"));
    let candidates: Vec<String> = [elapsed, elapsed + 1]
        .iter()
        .map(|e| format!("{:.1} %", ((n_month + 1) as f64 * 100.0 / (3 * e) as f64).min(100.0)))
        .collect();
    assert!(candidates.contains(&completeness), "{completeness} not in {candidates:?}");
    assert_eq!(field(&format!("site-{site}-devices")), "1 online · 1 offline · 1 in error");
    assert!(
        page.body.contains(&format!(
            r#"<li data-field="device-{pump}" class="down"><a href="/devices/{pump}">pump: Offline, no reading since"#
        )),
        "{}",
        page.body
    );
    assert!(
        page.body.contains(&format!(r#"<a href="/devices/{hvac}">hvac: Error, Connection refused (10.0.0.7:502)</a>"#))
    );
    assert!(
        page.body.contains(&format!(r#"<li data-field="device-{main}" class="down" hidden>"#)),
        "a healthy meter is listed hidden"
    );
    assert!(page.body.contains(r#"data-live="/api/live/overview""#));
    assert!(!page.body.contains("portfolio-kw"), "one site: no portfolio total");

    // The pump comes back with 8 kW: the live answer has the new total and hides it.
    let mut back = Reading::empty(pump, app.clock.now());
    back.real[ptotal] = Some(8_000.0);
    measurements::write(&pool, &[back]).await.unwrap();
    let live = json(&mut b, "/api/live/overview").await;
    assert_eq!(live["fields"][format!("site-{site}-kw")], "20.00 kW");
    assert_eq!(live["fields"][format!("device-{pump}")]["hidden"], true);
    assert_eq!(live["fields"][format!("site-{site}-devices")], "2 online · 1 in error");
    let energy = json(&mut b, "/api/live/overview/energy").await;
    assert_eq!(energy["fields"][format!("site-{site}-today-kwh")], kwh(n_today));

    // A second site adds a portfolio total.
    crate::helpers::site_with_devices(&pool, "Store", "UTC", &["store-main"]).await;
    let page = b.get("/").await;
    assert!(page.body.contains(r#"data-field="portfolio-kw">20.00 kW<"#), "{}", page.body);
    assert!(page.body.contains(&format!(r#"data-field="portfolio-month-kwh">{}<"#, kwh(n_month))));

    // Signed out, the live answers are a 401 the page script stops on.
    let mut anonymous = app.browser();
    assert_eq!(anonymous.get("/api/live/overview").await.status, StatusCode::UNAUTHORIZED);
}

/// Live figures poll in the background: they are served while the session lives, but only the
/// user's own requests keep it alive.
#[sqlx::test]
async fn background_updates_do_not_extend_the_idle_timeout(pool: PgPool) {
    use std::time::Duration;
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let mut poller = app.browser();
    poller.cookies = b.cookies.clone();
    poller.headers.push(("x-tau-background".into(), "1".into()));
    for _ in 0..5 {
        app.clock.advance(Duration::from_secs(5 * 60));
        assert_eq!(poller.get("/api/live/overview").await.status, StatusCode::OK);
    }
    // 25 minutes without user activity: a user request now still finds the session...
    assert_eq!(b.get("/").await.status, StatusCode::OK);
    // ...and slides it; then 31 minutes of background polling alone end it.
    for _ in 0..5 {
        app.clock.advance(Duration::from_secs(5 * 60));
        assert_eq!(poller.get("/api/live/overview").await.status, StatusCode::OK);
    }
    app.clock.advance(Duration::from_secs(6 * 60));
    assert_eq!(poller.get("/api/live/overview").await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(b.get("/").await.location(), "/login?next=%2F");
}

/// A wall display link: created by an admin and shown once, opens the site's live page without a
/// session, is audited, and stops working the moment it is revoked.
#[sqlx::test]
async fn a_wall_display_link_works_without_signing_in_until_revoked(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let mut b = admin(&app).await;
    let site = site_in(&mut b, "Plant", "UTC").await;
    let device = create_device(&mut b, site, "MTR-1", &[]).await;
    sqlx::query(
        r#"INSERT INTO monitoring."PowerMeasurements" ("DeviceId", "Time", "PTotal") VALUES ($1, now(), 4321)"#,
    )
    .bind(device)
    .execute(&pool)
    .await
    .unwrap();
    let url = format!("/sites/{site}/wall-displays");
    let empty = post_site(&mut b, &url, &[("name", " ")]).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(empty.body.contains("Name the screen in 1 to 100 characters"));
    let created = post_site(&mut b, &url, &[("name", "Control room, left")]).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    assert_eq!(created.headers["cache-control"], "no-store");
    let at = created.body.find(r#"id="wall-link">"#).expect("the link is shown") + r#"id="wall-link">"#.len();
    let link = created.body[at..created.body[at..].find('<').unwrap() + at].to_string();
    let path = &link[link.find("/wall/").unwrap()..];
    assert!(path.len() > "/wall/wall_".len() + 40, "a long random token: {path}");
    let listed = b.get(&url).await;
    assert!(listed.body.contains("Control room, left") && listed.body.contains("Active"));
    assert!(!listed.body.contains(path), "shown once: the list does not repeat the link");

    let mut screen = app.browser();
    let page = screen.get(path).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(&format!(r#"data-field="site-{site}-kw">4.32 kW<"#)), "{}", page.body);
    assert!(
        !page.body.contains("Sign out") && !page.body.contains(r#"href="/settings"#),
        "read-only: no portal navigation"
    );
    let live: Value = serde_json::from_str(&screen.get(&format!("{path}/live")).await.body).unwrap();
    assert_eq!(live["fields"][format!("site-{site}-kw")], "4.32 kW");
    assert_eq!(screen.get("/wall/wall_not-a-token").await.status, StatusCode::NOT_FOUND);
    assert_eq!(screen.get("/").await.status, StatusCode::SEE_OTHER, "the link signs nobody in");

    let actions: Vec<String> = sqlx::query_scalar(
        r#"SELECT "Action" FROM identity."AuditLog" WHERE "Action" LIKE 'wall-display.%' ORDER BY "Id""#,
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(actions, ["wall-display.created"]);
    let at = listed.body.find("/wall-displays/").unwrap() + "/wall-displays/".len();
    let id = &listed.body[at..at + 36];
    let csrf = listed.csrf();
    let revoked = b.post(&format!("{url}/{id}/revoke"), &[("csrf", &csrf)]).await;
    assert_eq!(revoked.location(), format!("{url}?notice=wall-display-revoked"));
    assert_eq!(screen.get(path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(screen.get(&format!("{path}/live")).await.status, StatusCode::UNAUTHORIZED);
    assert!(b.get(&url).await.body.contains("Revoked"));
    let actions: i64 =
        sqlx::query_scalar(r#"SELECT count(*) FROM identity."AuditLog" WHERE "Action" = 'wall-display.revoked'"#)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(actions, 1);
}
