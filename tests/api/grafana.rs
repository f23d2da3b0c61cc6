//! The provisioned Grafana dashboards: fixed uids, our data source, and panel SQL that runs.
//! Every panel's query (and every variable's) is expanded the way Grafana's PostgreSQL data
//! source expands its macros and run against a database with data in it: it must succeed and
//! return rows.

use std::path::Path;

use serde_json::Value;
use sqlx::{AssertSqlSafe, PgPool};

/// The dashboards of `folder` (grafana/dashboards: a customer's; grafana/dashboards-admin: the
/// fleet's).
fn dashboards_in(folder: &str) -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
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

fn dashboards() -> Vec<(String, Value)> {
    dashboards_in("grafana/dashboards")
}

/// Grafana's macros for PostgreSQL, for a fixed range, and the dashboard variables.
fn expand(sql: &str, variables: &[(&str, String)]) -> String {
    let (from, to) = ("'2026-11-01T00:00:00Z'", "'2026-11-02T00:00:00Z'");
    let mut out = sql.to_string();
    for (name, value) in variables {
        out = out.replace(&format!("${{{name}}}"), value).replace(&format!("${name}"), value);
    }
    while let Some(at) = out.find("$__timeGroupAlias(") {
        let end = at + out[at..].find(')').unwrap();
        let args = &out[at + "$__timeGroupAlias(".len()..end];
        let (column, interval) = args.split_once(',').unwrap();
        let seconds = match interval.trim().trim_matches('\'') {
            "1m" => 60,
            "5m" => 300,
            "1h" => 3600,
            "1d" => 86_400,
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

/// The customer dashboards' variables: `$site` as Grafana expands a multi-value variable
/// (quoted, comma-separated), `$device` as a number.
fn vars(sites: &[i32], device: i32) -> Vec<(&'static str, String)> {
    let sites = sites.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(",");
    vec![("site", sites), ("device", device.to_string())]
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

    let queries = run_every_query(&pool, dashboards(), &vars(&[1], 1)).await;
    assert!(queries >= 8, "{queries}");
}

/// Runs every variable's and panel's query of `dashboards` (expanded); each must return rows.
async fn run_every_query(pool: &PgPool, dashboards: Vec<(String, Value)>, variables: &[(&str, String)]) -> usize {
    let mut queries = 0;
    for (file, d) in dashboards {
        for variable in d["templating"]["list"].as_array().unwrap() {
            let sql = expand(variable["query"].as_str().unwrap(), variables);
            let rows = sqlx::query(AssertSqlSafe(sql.clone()))
                .fetch_all(pool)
                .await
                .unwrap_or_else(|e| panic!("{file}: variable {}: {e}\n{sql}", variable["name"]));
            assert!(!rows.is_empty(), "{file}: variable {} returns nothing", variable["name"]);
            queries += 1;
        }
        for panel in d["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().unwrap() {
                let sql = expand(t["rawSql"].as_str().unwrap(), variables);
                let rows = sqlx::query(AssertSqlSafe(sql.clone()))
                    .fetch_all(pool)
                    .await
                    .unwrap_or_else(|e| panic!("{file}: panel {}: {e}\n{sql}", panel["title"]));
                assert!(!rows.is_empty(), "{file}: panel {} returns no rows", panel["title"]);
                queries += 1;
            }
        }
    }
    queries
}

#[test]
fn fleet_dashboards_use_the_data_source_and_fixed_uids() {
    let all = dashboards_in("grafana/dashboards-admin");
    let titles: Vec<&str> = all.iter().map(|(_, d)| d["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["Customer energy", "Fleet overview", "Fleet ingest health"]);
    let customer: Vec<(String, Value)> = dashboards();
    for (file, d) in &all {
        assert!(d["uid"].as_str().is_some_and(|u| u.starts_with("tau-fleet-")), "{file}");
        assert!(customer.iter().all(|(_, c)| c["uid"] != d["uid"]), "{file}: uid clashes with a customer dashboard");
        for panel in d["panels"].as_array().unwrap() {
            assert_eq!(panel["datasource"]["uid"], "timescaledb", "{file}: panel {}", panel["title"]);
        }
    }
}

/// The fleet dashboards on an Admin database with two customers' data, the hourly table kept
/// as on plain PostgreSQL (the TimescaleDB leg checks the continuous aggregate of the same name).
#[sqlx::test]
async fn every_fleet_panel_query_runs_and_returns_rows(pool: PgPool) {
    use tau_acuvim_portal::db::timescale::Outcome;
    let plain = Outcome::PlainTable { reason: "tests".into() };
    tau_acuvim_portal::fleet::bootstrap::bootstrap(&pool, &plain).await.unwrap();
    sqlx::raw_sql(
        r#"INSERT INTO fleet."Customers" ("Code", "Name", "TokenHash", "TokenPrefix", "CreatedBy", "LastPushAt", "LastReadingAt")
               VALUES ('ABC0001', 'Acme', sha256('a'), 'taufleet_a', 't', now(), now() - interval '2 minutes'),
                      ('XYZ0002', 'Zed', sha256('b'), 'taufleet_b', 't', NULL, NULL);
           INSERT INTO fleet."Sites" ("CustomerId", "SourceId", "Name", "TimeZone") SELECT "Id", 1, 'Plant', 'UTC' FROM fleet."Customers";
           INSERT INTO fleet."Devices" ("CustomerId", "SourceId", "SiteId", "ExternalId", "Name", "Model", "Enabled")
               SELECT s."CustomerId", 1, s."Id", 'main', 'Main incomer', 'generic', true FROM fleet."Sites" s;
           INSERT INTO fleet."PowerMeasurements" ("CustomerId", "DeviceId", "Time", "PTotal", "EnergyImportWh", "EnergyExportWh")
               SELECT d."CustomerId", d."Id", t, 5000, 5000 * extract(epoch FROM t - '2026-11-01') / 3600, 0
               FROM fleet."Devices" d,
                    generate_series(timestamptz '2026-11-01T00:00:00Z', '2026-11-01T23:59:00Z', interval '1 minute') AS t;
           INSERT INTO fleet."HourlyStale" SELECT "Id", '2026-11-01' FROM fleet."Devices";
           INSERT INTO fleet."IngestEvents" ("CustomerId", "BatchId", "BatchType", "RowsAccepted", "Status", "Error", "ReceivedAt")
               SELECT "Id", gen_random_uuid(), 'measurements', 1440, 200, NULL, '2026-11-01T12:00:00Z' FROM fleet."Customers";
           INSERT INTO fleet."IngestEvents" ("CustomerId", "BatchType", "Status", "Error", "ReceivedAt")
               SELECT "Id", 'unknown', 401, 'the customer is inactive', '2026-11-01T13:00:00Z' FROM fleet."Customers";"#,
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(tau_acuvim_portal::fleet::hourly::refresh(&pool).await.unwrap(), 48);
    let customer: uuid::Uuid = sqlx::query_scalar(r#"SELECT "Id" FROM fleet."Customers" WHERE "Code" = 'ABC0001'"#)
        .fetch_one(&pool)
        .await
        .unwrap();
    let queries =
        run_every_query(&pool, dashboards_in("grafana/dashboards-admin"), &[("customer", customer.to_string())]).await;
    assert!(queries >= 10, "{queries}");
    // The energy panels read the counters' increase: 5 kW for the 24 hours, less the step
    // between hours (each hour's max - min covers 59 of its 60 minutes).
    let kwh: f64 = sqlx::query_scalar(
        r#"SELECT sum("MaxEnergyImportWh" - "MinEnergyImportWh") / 1000 FROM fleet.hourly_per_device WHERE "CustomerId" = $1"#,
    )
    .bind(customer)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!((kwh - 24.0 * 5.0 * 59.0 / 60.0).abs() < 1e-6, "{kwh}");
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
    let rows = run(expand(&energy, &vars(&[1, 2], 0))).await;
    let bars: Vec<(String, f64)> = rows.iter().map(|r| (r.get("metric"), r.get::<f64, _>("value"))).collect();
    assert_eq!(bars.len(), 2, "{bars:?}");
    assert_eq!(bars[0].0, north);
    assert_eq!(bars[1].0, south);
    assert!((bars[0].1 - 5.0 * hours).abs() < 1e-6, "{bars:?}");
    assert!((bars[1].1 - 10.0 * hours).abs() < 1e-6, "{bars:?}");
    let rows = run(expand(&energy, &vars(&[2], 0))).await;
    assert_eq!(rows.len(), 1, "the site filter keeps one site");
    assert_eq!(rows[0].get::<String, _>("metric"), south);

    // Power: one series per device (a 5-minute bucket holds one value per device, not a mix).
    let power = panel("power-overview.json", "Active power");
    let rows = run(expand(&power, &vars(&[1, 2], 0))).await;
    let mut series: Vec<(String, f64)> = rows.iter().map(|r| (r.get("metric"), r.get::<f64, _>("value"))).collect();
    assert_eq!(rows.len(), 2 * 288, "288 buckets per device");
    series.sort_by(|a, b| a.0.cmp(&b.0));
    series.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    assert_eq!(series, vec![(north.to_string(), 5.0), (south.to_string(), 10.0)]);
    assert_eq!(run(expand(&power, &vars(&[1], 0))).await.len(), 288);

    // Latest reading: one row per device, with its site.
    let latest = panel("power-overview.json", "Latest reading");
    let rows = run(expand(&latest, &vars(&[1, 2], 0))).await;
    let sites: Vec<(String, String, f64)> =
        rows.iter().map(|r| (r.get("site"), r.get("external id"), r.get::<f64, _>("kW"))).collect();
    assert_eq!(
        sites,
        vec![("North plant".into(), "north-main".into(), 5.0), ("South plant".into(), "south-main".into(), 10.0)]
    );
    assert_eq!(run(expand(&latest, &vars(&[1], 0))).await.len(), 1);

    // The device picker names both devices apart and follows the site filter; the device panels
    // read the chosen device alone.
    let (_, detail) = dashboards().into_iter().find(|(f, _)| f == "device-detail.json").unwrap();
    let variables = detail["templating"]["list"].as_array().unwrap();
    assert_eq!(variables[0]["name"], "site", "the site variable comes first: the device list depends on it");
    let picker = variables.iter().find(|v| v["name"] == "device").unwrap()["query"].as_str().unwrap().to_string();
    let rows = run(expand(&picker, &vars(&[1, 2], 0))).await;
    let names: Vec<(String, i32)> = rows.iter().map(|r| (r.get("__text"), r.get("__value"))).collect();
    assert_eq!(names, vec![(north.to_string(), 1), (south.to_string(), 2)]);
    assert_eq!(run(expand(&picker, &vars(&[2], 0))).await.len(), 1);
    let device_power = panel("device-detail.json", "Power");
    let rows = run(expand(&device_power, &vars(&[1, 2], 2))).await;
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
