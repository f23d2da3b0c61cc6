//! The site hierarchy (issue 15) through the real router: roles and parents set in the device
//! form with every refusal named by field, the site page's sub-meter breakdown and remainder,
//! and site totals and bills that add up main meters only, fresh as soon as a role changes.

use axum::http::StatusCode;
use chrono::TimeDelta;
use sqlx::PgPool;
use tau_acuvim_portal::measurements::energy::{self, rollup};
use tau_acuvim_portal::measurements::{self, Quantity, Reading};

use crate::dashboards::{floor_15, mid_interval, noon_zone};
use crate::helpers::{Browser, Reply, TestApp};
use crate::site_page::power;
use crate::sites::{admin, create_device, id_in, post_device, post_site};

async fn site_in(b: &mut Browser, name: &str, zone: &str) -> i32 {
    let res = post_site(b, "/sites/new", &[("name", name), ("time_zone", zone)]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    id_in(res.location(), "/sites/")
}

/// A pushed meter named `name` with `role` (and its parent's id) on `site`.
async fn meter(b: &mut Browser, site: i32, name: &str, role: &str, parent: Option<i32>) -> i32 {
    let parent = parent.map(|p| p.to_string()).unwrap_or_default();
    let fields = [("name", name), ("source", "push"), ("modbus_host", ""), ("role", role), ("parent_id", &parent)];
    create_device(b, site, &name.replace(' ', "-"), &fields).await
}

/// The text of the element with `data-field="key"` in `body`.
fn field(body: &str, key: &str) -> String {
    let needle = format!(r#"data-field="{key}">"#);
    let at = body.find(&needle).unwrap_or_else(|| panic!("no {key} in {body}"));
    let rest = &body[at + needle.len()..];
    rest[..rest.find('<').unwrap()].to_string()
}

/// Readings every 15 minutes for the hour from `from`, the import counter rising by `kwh` in all.
fn hour_of(device: i32, from: chrono::DateTime<chrono::Utc>, kwh: f64) -> Vec<Reading> {
    (0..=4)
        .map(|k| {
            let mut r = Reading::empty(device, from + TimeDelta::minutes(15 * k));
            r.set(Quantity::named("energyImportWh").unwrap(), Some(5e6 + kwh * 250.0 * k as f64));
            r
        })
        .collect()
}

/// Hand-computed: the incomer imported 100 kWh this morning, its two sub-meters 30 and 50 (so
/// 20 kWh went unmetered), the roof PV 12 kWh and a check meter on the incomer's supply 99 kWh.
/// The site's totals, the Overview and the bill see the incomer's 100 only; what the site draws
/// now is the incomer's 50 kW (not 50 + 20 + 10 + 5 + 49).
#[sqlx::test]
async fn site_totals_and_bills_add_up_main_meters_and_the_site_page_shows_the_remainder(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let now = mid_interval(&app);
    let mut b = admin(&app).await;
    let zone = noon_zone(now);
    let site = site_in(&mut b, "Plant", &zone).await;
    let page = b.get(&format!("/sites/{site}")).await;
    assert!(page.body.contains("No meters yet."), "{}", page.body);
    let incomer = meter(&mut b, site, "Incomer", "main", None).await;
    let page = b.get(&format!("/sites/{site}")).await;
    assert!(page.body.contains("Every device here is a main meter"), "{}", page.body);
    let chillers = meter(&mut b, site, "Chillers", "sub", Some(incomer)).await;
    let lighting = meter(&mut b, site, "Lighting", "sub", Some(incomer)).await;
    let pv = meter(&mut b, site, "Roof PV", "generation", None).await;
    let check = meter(&mut b, site, "Utility check", "check", None).await;

    let start = floor_15(now - TimeDelta::hours(2));
    let mut readings = Vec::new();
    for (device, kwh) in [(incomer, 100.0), (chillers, 30.0), (lighting, 50.0), (pv, 12.0), (check, 99.0)] {
        readings.extend(hour_of(device, start, kwh));
    }
    measurements::write(&pool, &readings).await.unwrap();
    rollup::run_once(&pool, now).await.unwrap();
    let live = [(incomer, 50_000.0), (chillers, 20_000.0), (lighting, 10_000.0), (pv, 5_000.0), (check, 49_000.0)];
    let live: Vec<Reading> = live.into_iter().map(|(d, w)| power(d, now - TimeDelta::seconds(10), w)).collect();
    measurements::write(&pool, &live).await.unwrap();
    crate::tariffs::flat_tariff(&mut b, site).await;

    let page = b.get(&format!("/sites/{site}")).await;
    assert_eq!(page.status, StatusCode::OK);
    for (key, want) in [
        (format!("site-{site}-kw"), "50.00 kW"),
        ("site-main-today".to_string(), "100.0 kWh"),
        ("site-main-month".into(), "100.0 kWh"),
        (format!("meter-{incomer}-today"), "100.0 kWh"),
        (format!("meter-{chillers}-today"), "30.0 kWh"),
        (format!("meter-{lighting}-month"), "50.0 kWh"),
        (format!("remainder-{incomer}-today"), "20.0 kWh"),
        (format!("remainder-{incomer}-month"), "20.0 kWh"),
        (format!("meter-{check}-today"), "99.0 kWh"),
        ("site-generation-today".into(), "12.0 kWh"),
    ] {
        assert_eq!(field(&page.body, &key), want, "{key}");
    }
    assert!(!page.body.contains("Every device here is a main meter"));

    let overview = b.get("/").await;
    assert_eq!(field(&overview.body, &format!("site-{site}-kw")), "50.00 kW", "the incomer's power only");
    assert_eq!(field(&overview.body, &format!("site-{site}-today-kwh")), "100.0 kWh", "not 291: main meters only");
    assert_eq!(field(&overview.body, &format!("site-{site}-today-cost")), "ZAR 200.00");
    let month = now.with_timezone(&zone.parse::<chrono_tz::Tz>().unwrap()).format("%Y-%m");
    let cost = b.get(&format!("/sites/{site}/cost?month={month}")).await;
    assert_eq!(cost.status, StatusCode::OK);
    assert!(cost.body.contains(">100 kWh<") || cost.body.contains(" 100 kWh"), "{}", cost.body);
    assert!(!cost.body.contains("291 kWh") && !cost.body.contains("180 kWh"), "{}", cost.body);

    // Stored sums, then a role change: the Chillers become a main meter of their own. The
    // totals follow at once (the site is queued), and the stored sums after the next refresh.
    energy::refresh_site_sums(&pool).await.unwrap();
    let fields = [("name", "Chillers"), ("source", "push"), ("modbus_host", ""), ("role", "main"), ("parent_id", "")];
    let res = post_device(&mut b, &format!("/devices/{chillers}/edit"), "Chillers", &fields).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let overview = b.get("/").await;
    assert_eq!(field(&overview.body, &format!("site-{site}-today-kwh")), "130.0 kWh");
    assert_eq!(field(&overview.body, &format!("site-{site}-kw")), "70.00 kW", "incomer and chillers");
    assert_eq!(energy::refresh_site_sums(&pool).await.unwrap(), 1);
    let stored: f64 =
        sqlx::query_scalar(r#"SELECT sum("ImportWh") FROM monitoring."SiteEnergyIntervals" WHERE "SiteId" = $1"#)
            .bind(site)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored, 130_000.0);
    let page = b.get(&format!("/sites/{site}")).await;
    assert_eq!(field(&page.body, &format!("remainder-{incomer}-today")), "50.0 kWh", "100 − Lighting's 50");
}

/// A pushed meter's form fields with `role` and `parent`.
fn placed(name: &str, role: &str, parent: String) -> Vec<(&'static str, String)> {
    let fields = [("name", name), ("source", "push"), ("modbus_host", ""), ("role", role)];
    let mut out: Vec<(&'static str, String)> = fields.iter().map(|(k, v)| (*k, v.to_string())).collect();
    out.push(("parent_id", parent));
    out
}

async fn send(b: &mut Browser, url: &str, external_id: &str, fields: Vec<(&'static str, String)>) -> Reply {
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    post_device(b, url, external_id, &fields).await
}

async fn role_of(pool: &PgPool, id: i32) -> (String, Option<i32>, i32) {
    sqlx::query_as(r#"SELECT "Role", "ParentId", "SiteId" FROM monitoring."Devices" WHERE "Id" = $1"#)
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn audit_rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar(r#"SELECT count(*) FROM identity."AuditLog""#).fetch_one(pool).await.unwrap()
}

#[sqlx::test]
async fn the_device_form_refuses_bad_parents_by_field_and_stores_nothing(pool: PgPool) {
    let app = TestApp::new(pool.clone()).await;
    let mut b = admin(&app).await;
    let a = site_in(&mut b, "Plant A", "UTC").await;
    let other_site = site_in(&mut b, "Plant B", "UTC").await;
    let incomer = meter(&mut b, a, "Incomer", "main", None).await;
    let sub1 = meter(&mut b, a, "Sub one", "sub", Some(incomer)).await;
    let sub2 = meter(&mut b, a, "Sub two", "sub", Some(sub1)).await;
    let pv = meter(&mut b, a, "Roof PV", "generation", None).await;
    let elsewhere = meter(&mut b, other_site, "Other incomer", "main", None).await;
    let form = b.get(&format!("/devices/{sub2}/edit")).await;
    assert!(form.body.contains(&format!(r#"<option value="{sub1}" selected>Sub one</option>"#)), "{}", form.body);
    assert!(!form.body.contains(&format!(r#"<option value="{pv}""#)), "a generation meter is no parent");
    let before = (audit_rows(&pool).await, role_of(&pool, incomer).await, role_of(&pool, sub1).await);

    let refused = |res: Reply, field: &str, text: &str| {
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", res.body);
        let needle = format!(r#"id="{field}-error">"#);
        let at = res.body.find(&needle).unwrap_or_else(|| panic!("no {field} error in {}", res.body));
        let message = &res.body[at..at + res.body[at..].find("</p>").unwrap()];
        assert!(message.contains(text), "{field}: {message}");
    };
    let new = format!("/sites/{a}/devices/new");
    refused(
        send(&mut b, &new, "x1", placed("New", "sub", String::new())).await,
        "parent_id",
        "Choose the meter this sub-meter is part of.",
    );
    refused(
        send(&mut b, &new, "x2", placed("New", "sub", elsewhere.to_string())).await,
        "parent_id",
        "at another site",
    );
    refused(
        send(&mut b, &new, "x3", placed("New", "sub", pv.to_string())).await,
        "parent_id",
        "Roof PV is a generation meter",
    );
    refused(send(&mut b, &new, "x4", placed("New", "incomer", String::new())).await, "role", "Choose the meter");
    let edit = |id: i32| format!("/devices/{id}/edit");
    refused(
        send(&mut b, &edit(incomer), "Incomer", placed("Incomer", "sub", sub2.to_string())).await,
        "parent_id",
        "Sub two is itself a sub-meter below this device (this device → Sub one → Sub two)",
    );
    refused(
        send(&mut b, &edit(sub1), "Sub-one", placed("Sub one", "sub", sub1.to_string())).await,
        "parent_id",
        "its own parent",
    );
    refused(
        send(&mut b, &edit(incomer), "Incomer", placed("Incomer", "check", String::new())).await,
        "role",
        "Sub one is a sub-meter of this device, and only",
    );
    let mut moved = placed("Incomer", "main", String::new());
    moved.push(("site_id", other_site.to_string()));
    refused(
        send(&mut b, &edit(incomer), "Incomer", moved).await,
        "site_id",
        "Sub one is a sub-meter of this device: give it another parent",
    );
    let mut moved = placed("Sub two", "sub", incomer.to_string());
    moved.push(("site_id", other_site.to_string()));
    refused(send(&mut b, &edit(sub2), "Sub-two", moved).await, "parent_id", "at another site");

    let confirm = b.get(&format!("/devices/{incomer}/delete")).await;
    assert!(confirm.body.contains("Sub one: sub-meters of this device"), "{}", confirm.body);
    assert!(!confirm.body.contains("Delete device and"), "no delete button while it has sub-meters");
    let csrf = b.get(&format!("/devices/{pv}/delete")).await.csrf();
    let res = b.post(&format!("/devices/{incomer}/delete"), &[("csrf", &csrf)]).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert!(res.body.contains("Sub one: sub-meters of this device"), "{}", res.body);

    let after = (audit_rows(&pool).await, role_of(&pool, incomer).await, role_of(&pool, sub1).await);
    assert_eq!(after, before, "nothing stored, nothing audited");
    assert_eq!(role_of(&pool, sub2).await, ("sub".into(), Some(sub1), a));

    // Allowed: Sub two straight under the incomer; then the device page says where it is.
    let res = send(&mut b, &edit(sub2), "Sub-two", placed("Sub two", "sub", incomer.to_string())).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    assert_eq!(role_of(&pool, sub2).await, ("sub".into(), Some(incomer), a));
    let page = b.get(&format!("/devices/{sub2}")).await;
    assert!(page.body.contains(&format!(r#"Sub-meter of <a href="/devices/{incomer}">Incomer</a>"#)), "{}", page.body);
    let detail: serde_json::Value = sqlx::query_scalar(
        r#"SELECT "Detail" FROM identity."AuditLog" WHERE "Action" = 'device.updated' ORDER BY "Id" DESC LIMIT 1"#,
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((detail["role"].as_str(), detail["parentId"].as_i64()), (Some("sub"), Some(i64::from(incomer))));

    // A site's deletion takes a parent and its sub-meters together.
    let csrf = b.get(&format!("/sites/{a}/delete")).await.csrf();
    let res = b.post(&format!("/sites/{a}/delete"), &[("csrf", &csrf)]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let left: i64 = sqlx::query_scalar(r#"SELECT count(*) FROM monitoring."Devices""#).fetch_one(&pool).await.unwrap();
    assert_eq!(left, 1);
}

/// Sites from before roles keep today's behaviour: the migration makes every existing device a
/// main meter, so the door still adds all of them up, before and after the stored sums refresh.
#[sqlx::test(migrations = false)]
async fn existing_devices_migrate_as_main_meters_and_their_sites_still_add_every_device(pool: PgPool) {
    use tau_acuvim_portal::db::migrate::{self, MIGRATOR};
    let roles = 20261202002600_i64;
    let dir = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.split('_').next().unwrap().parse::<i64>().unwrap() < roles {
            std::fs::copy(&path, dir.path().join(&name)).unwrap();
        }
    }
    let before = sqlx::migrate::Migrator::new(dir.path()).await.unwrap();
    migrate::run(&pool, &before).await.unwrap();
    let (site, devices) = crate::helpers::site_with_devices(&pool, "Old plant", "UTC", &["old-1", "old-2"]).await;
    let start: chrono::DateTime<chrono::Utc> = "2026-11-02T10:00:00Z".parse().unwrap();
    sqlx::query(
        r#"INSERT INTO monitoring."EnergyIntervals" ("DeviceId", "Start", "ImportWh", "ExportWh", "Samples")
           SELECT d, $2, w, 0, 15 FROM UNNEST($1::int4[], $3::float8[]) AS x(d, w)"#,
    )
    .bind(&devices)
    .bind(start)
    .bind([1_000.0, 2_500.0])
    .execute(&pool)
    .await
    .unwrap();
    // Queued as the interval writer queues a site, in the same transaction in real life.
    sqlx::query(r#"INSERT INTO monitoring."SiteEnergyStale" ("SiteId", "From") VALUES ($1, $2)"#)
        .bind(site)
        .bind(start)
        .execute(&pool)
        .await
        .unwrap();

    let applied = migrate::run(&pool, &MIGRATOR).await.unwrap();
    assert!(applied.contains(&"DeviceRoles".to_string()), "{applied:?}");
    let roles: Vec<(String, Option<i32>)> =
        sqlx::query_as(r#"SELECT "Role", "ParentId" FROM monitoring."Devices" ORDER BY "Id""#)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(roles, [("main".to_string(), None), ("main".to_string(), None)]);
    let read = || energy::site_intervals(&pool, site, start, start + TimeDelta::hours(1));
    let wh = |e: &energy::SiteEnergy| (e.devices, e.intervals.iter().map(|i| i.import_wh).collect::<Vec<_>>());
    assert_eq!(wh(&read().await.unwrap()), (2, vec![3_500.0]));
    energy::refresh_site_sums(&pool).await.unwrap();
    assert_eq!(wh(&read().await.unwrap()), (2, vec![3_500.0]), "the stored sums add both, as before roles");
}
