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
    sqlx::query(
        r#"INSERT INTO monitoring."PowerMeasurements" ("DeviceId", "Time", "PTotal")
           SELECT $1, t, 1000 FROM generate_series(timestamptz '2026-03-28T00:00:00Z', '2026-03-30T22:59:00Z', interval '15 minutes') AS t
           UNION ALL
           SELECT $1, t, 2000 FROM generate_series(timestamptz '2026-10-23T23:00:00Z', '2026-10-26T23:59:00Z', interval '15 minutes') AS t"#,
    )
    .bind(device)
    .execute(&app.state.db)
    .await
    .unwrap();
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
    assert_eq!(days, expected);
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
