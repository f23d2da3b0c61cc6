//! The provisioned Grafana dashboards: fixed uids, our data source, and panel SQL that runs.
//! Every panel's query (and every variable's) is expanded the way Grafana's PostgreSQL data
//! source expands its macros and run against a database with data in it: it must succeed and
//! return rows.

use std::path::Path;

use serde_json::Value;
use sqlx::{AssertSqlSafe, PgPool};

fn dashboards() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Grafana's macros for PostgreSQL, for a fixed range, and the dashboard variables: `$site` as
/// Grafana expands a multi-value variable (quoted, comma-separated), `$device` as a number.
fn expand(sql: &str, sites: &[i32], device_id: i32) -> String {
    let (from, to) = ("'2026-11-01T00:00:00Z'", "'2026-11-02T00:00:00Z'");
    let sites = sites.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(",");
    let mut out = sql
        .replace("${device}", &device_id.to_string())
        .replace("$device", &device_id.to_string())
        .replace("${site}", &sites)
        .replace("$site", &sites);
    while let Some(at) = out.find("$__timeGroupAlias(") {
        let end = at + out[at..].find(')').unwrap();
        let args = &out[at + "$__timeGroupAlias(".len()..end];
        let (column, interval) = args.split_once(',').unwrap();
        let seconds = match interval.trim().trim_matches('\'') {
            "1m" => 60,
            "5m" => 300,
            other => panic!("interval {other} not expanded by this test"),
        };
        let expanded = format!("floor(extract(epoch from {column})/{seconds})*{seconds} AS \"time\"");
        out.replace_range(at..=end, &expanded);
    }
    while let Some(at) = out.find("$__timeFilter(") {
        let end = at + out[at..].find(')').unwrap();
        let column = out[at + "$__timeFilter(".len()..end].to_string();
        out.replace_range(at..=end, &format!("{column} BETWEEN {from} AND {to}"));
    }
    assert!(!out.contains('$'), "unexpanded macro or variable in {out}");
    out
}

#[test]
fn dashboards_have_fixed_unique_uids_and_use_the_provisioned_data_source() {
    let all = dashboards();
    assert!(all.len() >= 2, "power overview and device detail");
    let mut uids: Vec<&str> = all.iter().map(|(_, d)| d["uid"].as_str().expect("a fixed uid")).collect();
    uids.sort();
    uids.dedup();
    assert_eq!(uids.len(), all.len(), "uids are unique");
    for (file, d) in &all {
        for panel in d["panels"].as_array().unwrap() {
            assert_eq!(panel["datasource"]["uid"], "timescaledb", "{file}: panel {}", panel["title"]);
            for t in panel["targets"].as_array().unwrap() {
                assert_eq!(t["datasource"]["uid"], "timescaledb", "{file}: {}", panel["title"]);
            }
        }
    }
    let provisioning = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/provisioning/datasources/timescaledb.yml"),
    )
    .unwrap();
    assert!(provisioning.contains("uid: timescaledb"));
}

#[sqlx::test]
async fn every_panel_query_runs_and_returns_rows(pool: PgPool) {
    sqlx::raw_sql(
        r#"INSERT INTO monitoring."Sites" ("Name", "TimeZone") VALUES ('Plant', 'Europe/London');
           INSERT INTO monitoring."Devices" ("SiteId", "ExternalId", "Name", "Model", "Source")
               VALUES (1, 'main', 'Main incomer', 'generic', 'push'), (1, 'hvac', 'HVAC', 'generic', 'push');
           INSERT INTO monitoring."PowerMeasurements" ("DeviceId", "Time", "V1", "V2", "V3", "V12", "I1", "I2", "I3", "IN",
                   "PTotal", "QTotal", "STotal", "PFTotal", "Frequency", "EnergyImportWh")
           SELECT d, t, 230, 231, 229, 400, 10, 11, 9, 1, 5000 * d, 1000, 5100 * d, 0.98, 50.0,
                  5000 * d * extract(epoch FROM t - '2026-11-01') / 3600
           FROM generate_series(1, 2) AS d,
                generate_series(timestamptz '2026-11-01T00:00:00Z', '2026-11-01T23:59:00Z', interval '1 minute') AS t;"#,
    )
    .execute(&pool)
    .await
    .unwrap();

    let mut queries = 0;
    for (file, d) in dashboards() {
        for variable in d["templating"]["list"].as_array().unwrap() {
            let sql = expand(variable["query"].as_str().unwrap(), &[1], 1);
            let rows = sqlx::query(AssertSqlSafe(sql.clone()))
                .fetch_all(&pool)
                .await
                .unwrap_or_else(|e| panic!("{file}: variable {}: {e}\n{sql}", variable["name"]));
            assert!(!rows.is_empty(), "{file}: variable {} returns nothing", variable["name"]);
            queries += 1;
        }
        for panel in d["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().unwrap() {
                let sql = expand(t["rawSql"].as_str().unwrap(), &[1], 1);
                let rows = sqlx::query(AssertSqlSafe(sql.clone()))
                    .fetch_all(&pool)
                    .await
                    .unwrap_or_else(|e| panic!("{file}: panel {}: {e}\n{sql}", panel["title"]));
                assert!(!rows.is_empty(), "{file}: panel {} returns no rows", panel["title"]);
                queries += 1;
            }
        }
    }
    assert!(queries >= 8, "{queries}");
}

/// Two sites each with a device called "Main incomer" (a real customer's layout: one incomer per
/// building). Grouping by name once gave one bar of 5 337 592 kWh: the larger counter's maximum
/// minus the smaller one's minimum. Every panel must keep the devices apart, label them with
/// their site, and honour the site filter.
#[sqlx::test]
async fn panels_keep_same_named_devices_on_two_sites_apart(pool: PgPool) {
    // Device 1 draws 5 kW from a counter at 1 000 kWh, device 2 10 kW from one at 5 340 000 kWh;
    // a minute's readings from 00:00 to 23:59, so 23 h 59 min of energy in the range.
    sqlx::raw_sql(
        r#"INSERT INTO monitoring."Sites" ("Name", "TimeZone") VALUES ('North plant', 'UTC'), ('South plant', 'UTC');
           INSERT INTO monitoring."Devices" ("SiteId", "ExternalId", "Name", "Model", "Source")
               VALUES (1, 'north-main', 'Main incomer', 'generic', 'push'), (2, 'south-main', 'Main incomer', 'generic', 'push');
           INSERT INTO monitoring."PowerMeasurements" ("DeviceId", "Time", "PTotal", "QTotal", "STotal", "PFTotal", "Frequency",
                   "V1", "V2", "V3", "V12", "I1", "I2", "I3", "IN", "EnergyImportWh")
           SELECT d, t, 5000 * d, 0, 5000 * d, 1, 50, 230, 230, 230, 400, 1, 1, 1, 0,
                  (CASE d WHEN 1 THEN 1000000 ELSE 5340000000 END) + 5000 * d * extract(epoch FROM t - '2026-11-01') / 3600
           FROM generate_series(1, 2) AS d,
                generate_series(timestamptz '2026-11-01T00:00:00Z', '2026-11-01T23:59:00Z', interval '1 minute') AS t;"#,
    )
    .execute(&pool)
    .await
    .unwrap();
    let north = "North plant / Main incomer (north-main)";
    let south = "South plant / Main incomer (south-main)";
    let hours = 23.0 + 59.0 / 60.0;
    let panel = |file: &str, title: &str| -> String {
        let (_, d) = dashboards().into_iter().find(|(f, _)| f == file).unwrap();
        let p =
            d["panels"].as_array().unwrap().iter().find(|p| p["title"].as_str().unwrap().starts_with(title)).cloned();
        p.unwrap_or_else(|| panic!("{file}: no panel {title}"))["targets"][0]["rawSql"].as_str().unwrap().to_string()
    };
    let run = |sql: String| {
        let pool = pool.clone();
        async move {
            sqlx::query(AssertSqlSafe(sql.clone())).fetch_all(&pool).await.unwrap_or_else(|e| panic!("{e}\n{sql}"))
        }
    };
    use sqlx::Row;

    // Energy: one bar per device, each its own counter's increase.
    let energy = panel("power-overview.json", "Energy imported");
    let rows = run(expand(&energy, &[1, 2], 0)).await;
    let bars: Vec<(String, f64)> = rows.iter().map(|r| (r.get("metric"), r.get::<f64, _>("value"))).collect();
    assert_eq!(bars.len(), 2, "{bars:?}");
    assert_eq!(bars[0].0, north);
    assert_eq!(bars[1].0, south);
    assert!((bars[0].1 - 5.0 * hours).abs() < 1e-6, "{bars:?}");
    assert!((bars[1].1 - 10.0 * hours).abs() < 1e-6, "{bars:?}");
    let rows = run(expand(&energy, &[2], 0)).await;
    assert_eq!(rows.len(), 1, "the site filter keeps one site");
    assert_eq!(rows[0].get::<String, _>("metric"), south);

    // Power: one series per device (a 5-minute bucket holds one value per device, not a mix).
    let power = panel("power-overview.json", "Active power");
    let rows = run(expand(&power, &[1, 2], 0)).await;
    let mut series: Vec<(String, f64)> = rows.iter().map(|r| (r.get("metric"), r.get::<f64, _>("value"))).collect();
    assert_eq!(rows.len(), 2 * 288, "288 buckets per device");
    series.sort_by(|a, b| a.0.cmp(&b.0));
    series.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    assert_eq!(series, vec![(north.to_string(), 5.0), (south.to_string(), 10.0)]);
    assert_eq!(run(expand(&power, &[1], 0)).await.len(), 288);

    // Latest reading: one row per device, with its site.
    let latest = panel("power-overview.json", "Latest reading");
    let rows = run(expand(&latest, &[1, 2], 0)).await;
    let sites: Vec<(String, String, f64)> =
        rows.iter().map(|r| (r.get("site"), r.get("external id"), r.get::<f64, _>("kW"))).collect();
    assert_eq!(
        sites,
        vec![("North plant".into(), "north-main".into(), 5.0), ("South plant".into(), "south-main".into(), 10.0)]
    );
    assert_eq!(run(expand(&latest, &[1], 0)).await.len(), 1);

    // The device picker names both devices apart and follows the site filter; the device panels
    // read the chosen device alone.
    let (_, detail) = dashboards().into_iter().find(|(f, _)| f == "device-detail.json").unwrap();
    let vars = detail["templating"]["list"].as_array().unwrap();
    assert_eq!(vars[0]["name"], "site", "the site variable comes first: the device list depends on it");
    let picker = vars.iter().find(|v| v["name"] == "device").unwrap()["query"].as_str().unwrap().to_string();
    let rows = run(expand(&picker, &[1, 2], 0)).await;
    let names: Vec<(String, i32)> = rows.iter().map(|r| (r.get("__text"), r.get("__value"))).collect();
    assert_eq!(names, vec![(north.to_string(), 1), (south.to_string(), 2)]);
    assert_eq!(run(expand(&picker, &[2], 0)).await.len(), 1);
    let device_power = panel("device-detail.json", "Power");
    let rows = run(expand(&device_power, &[1, 2], 2)).await;
    assert_eq!(rows.len(), 1440);
    assert!(rows.iter().all(|r| r.get::<f64, _>("P (kW)") == 10.0), "device 2's power alone");
}

/// The Dashboards page frames each provisioned dashboard in kiosk mode under the embed prefix,
/// filtered to the chosen site; anonymous users are sent to sign in, unknown uids are a 404.
#[sqlx::test]
async fn the_dashboards_page_embeds_each_dashboard_under_the_prefix(pool: PgPool) {
    use crate::helpers::TestApp;
    use axum::http::StatusCode;
    let app = TestApp::new(pool).await;
    let mut anonymous = app.browser();
    assert!(anonymous.get("/dashboards").await.location().starts_with("/login?next="));
    let mut b = crate::sites::admin(&app).await;
    let site = crate::sites::create_site(&mut b, "North plant").await;
    let page = b.get("/dashboards").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"src="/grafana/d/tau-power-overview?orgId=1&#38;kiosk""#), "{}", page.body);
    assert!(page.body.contains(r#"href="/dashboards/tau-device-detail""#));
    assert!(page.body.contains(">North plant</option>"));
    let filtered = b.get(&format!("/dashboards/tau-device-detail?site={site}")).await;
    assert!(
        filtered.body.contains(&format!(r#"src="/grafana/d/tau-device-detail?orgId=1&#38;kiosk&#38;var-site={site}""#)),
        "{}",
        filtered.body
    );
    assert!(filtered.body.contains(&format!(r#"<option value="{site}" selected>"#)));
    assert_eq!(b.get("/dashboards/nope").await.status, StatusCode::NOT_FOUND);
}
