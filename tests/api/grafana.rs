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

/// Grafana's macros for PostgreSQL, for a fixed range, and the dashboard variables.
fn expand(sql: &str, device_id: i32) -> String {
    let (from, to) = ("'2026-11-01T00:00:00Z'", "'2026-11-02T00:00:00Z'");
    let mut out = sql.replace("${device}", &device_id.to_string()).replace("$device", &device_id.to_string());
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
            let sql = expand(variable["query"].as_str().unwrap(), 1);
            let rows = sqlx::query(AssertSqlSafe(sql.clone()))
                .fetch_all(&pool)
                .await
                .unwrap_or_else(|e| panic!("{file}: variable {}: {e}\n{sql}", variable["name"]));
            assert!(!rows.is_empty(), "{file}: variable {} returns nothing", variable["name"]);
            queries += 1;
        }
        for panel in d["panels"].as_array().unwrap() {
            for t in panel["targets"].as_array().unwrap() {
                let sql = expand(t["rawSql"].as_str().unwrap(), 1);
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
