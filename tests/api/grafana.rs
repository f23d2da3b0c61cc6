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

    let queries = run_every_query(&pool, dashboards(), &[("device", "1".into())]).await;
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
