//! Sites and devices through the real router: create, edit and delete with every validation
//! rule, who may change what, the delete confirmations, the externalId directory, and the device
//! page with readings written straight into the measurement table.

use axum::http::StatusCode;
use sqlx::PgPool;

use crate::helpers::{ADMIN_PASSWORD, Browser, Reply, TestApp, admin_options, test_config};

pub(crate) async fn admin(app: &TestApp) -> Browser {
    app.seed_admin().await;
    let mut b = app.browser();
    assert_eq!(b.sign_in("admin@example.com", ADMIN_PASSWORD).await.status, StatusCode::SEE_OTHER);
    b
}

/// A viewer (non-admin) account created through Settings → Users, signed in.
pub(crate) async fn viewer(app: &TestApp, admin: &mut Browser) -> Browser {
    let csrf = admin.get("/settings/users").await.csrf();
    let password = "viewer password 123";
    let res = admin
        .post("/settings/users", &[("csrf", &csrf), ("email", "viewer@example.com"), ("password", password)])
        .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let mut b = app.browser();
    assert_eq!(b.sign_in("viewer@example.com", password).await.status, StatusCode::SEE_OTHER);
    b
}

/// The id in a redirect such as `/sites/7?notice=site-created`.
pub(crate) fn id_in(location: &str, prefix: &str) -> i32 {
    let rest = location.strip_prefix(prefix).unwrap_or_else(|| panic!("{location:?} does not start with {prefix}"));
    rest.split('?').next().unwrap().parse().unwrap_or_else(|_| panic!("no id in {location:?}"))
}

pub(crate) async fn post_site(b: &mut Browser, url: &str, fields: &[(&str, &str)]) -> Reply {
    let csrf = b.get(url).await.csrf();
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    b.post(url, &all).await
}

pub(crate) async fn create_site(b: &mut Browser, name: &str) -> i32 {
    let res = post_site(b, "/sites/new", &[("name", name), ("time_zone", "Africa/Johannesburg")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    id_in(res.location(), "/sites/")
}

/// A valid Modbus TCP device's fields, with `overrides` replacing or adding fields.
pub(crate) fn device_fields<'a>(external_id: &'a str, overrides: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        ("external_id", external_id),
        ("name", "Main incomer"),
        ("model", "acuvim-ii"),
        ("source", "modbus-tcp"),
        ("modbus_host", "10.0.0.5"),
        ("modbus_port", "502"),
        ("modbus_unit_id", "1"),
        ("poll_interval_seconds", "60"),
        ("enabled", "on"),
    ];
    for (k, v) in overrides {
        match fields.iter_mut().find(|(f, _)| f == k) {
            Some(field) => field.1 = v,
            None => fields.push((k, v)),
        }
    }
    fields.retain(|(_, v)| *v != "<absent>");
    fields
}

/// Form fields that replace or add to a valid device's.
type Fields<'a> = &'a [(&'a str, &'a str)];

pub(crate) async fn post_device(b: &mut Browser, url: &str, external_id: &str, overrides: &[(&str, &str)]) -> Reply {
    post_site(b, url, &device_fields(external_id, overrides)).await
}

pub(crate) async fn create_device(b: &mut Browser, site: i32, external_id: &str, overrides: &[(&str, &str)]) -> i32 {
    let res = post_device(b, &format!("/sites/{site}/devices/new"), external_id, overrides).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    id_in(res.location(), "/devices/")
}

async fn device_count(app: &TestApp) -> i64 {
    sqlx::query_scalar(r#"SELECT count(*) FROM monitoring."Devices""#).fetch_one(&app.state.db).await.unwrap()
}

async fn audit_actions(app: &TestApp) -> Vec<(String, Option<String>)> {
    sqlx::query_as(
        r#"SELECT "Action", "Target" FROM identity."AuditLog" WHERE "Action" LIKE 'site.%' OR "Action" LIKE 'device.%'
           ORDER BY "Id""#,
    )
    .fetch_all(&app.state.db)
    .await
    .unwrap()
}

/// A reading `minutes_ago` with active power `p_total` (W) and nothing else.
async fn insert_power(app: &TestApp, device: i32, minutes_ago: i32, p_total: f32) {
    sqlx::query(
        r#"INSERT INTO monitoring."PowerMeasurements" ("DeviceId", "Time", "PTotal")
           VALUES ($1, date_trunc('second', now()) - make_interval(mins => $2), $3)"#,
    )
    .bind(device)
    .bind(minutes_ago)
    .bind(p_total)
    .execute(&app.state.db)
    .await
    .unwrap();
}

async fn external_ids(app: &TestApp) -> Vec<String> {
    let mut ids: Vec<String> = app.state.devices.snapshot().await.unwrap().keys().cloned().collect();
    ids.sort();
    ids
}

fn assert_contains(res: &Reply, needles: &[&str]) {
    for needle in needles {
        assert!(res.body.contains(needle), "missing {needle:?} in {}", res.body);
    }
}

#[sqlx::test]
async fn the_sites_list_starts_with_an_empty_state_then_counts_devices(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let empty = b.get("/sites").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_contains(&empty, &["No sites yet", "then a device for each", r#"href="/sites/new""#, r#"href="/sites""#]);
    let mut v = viewer(&app, &mut b).await;
    let viewer_empty = v.get("/sites").await;
    assert_contains(&viewer_empty, &["An administrator has not added any sites yet", r#"<a href="/sites""#]);
    assert!(!viewer_empty.body.contains("/sites/new"), "no add link for viewers");

    let site = create_site(&mut b, "Plant A").await;
    create_site(&mut b, "Cape Town office").await;
    create_device(&mut b, site, "MTR-1", &[]).await;
    let list = b.get("/sites").await;
    assert!(!list.body.contains("No sites yet"));
    assert_contains(
        &list,
        &[&format!(r#"<a href="/sites/{site}">Plant A</a>"#), "Africa/Johannesburg", "1 device<", "0 devices"],
    );
    let (cape, plant) = (list.body.find("Cape Town office").unwrap(), list.body.find("Plant A").unwrap());
    assert!(cape < plant, "sorted by name");
    assert!(v.get("/sites").await.body.contains("Plant A"), "viewers see the sites");
}

#[sqlx::test]
async fn the_new_site_form_proposes_the_configured_time_zone(pool: PgPool) {
    let mut config = test_config(&admin_options());
    config.default_time_zone = chrono_tz::America::Sao_Paulo;
    let app = TestApp::with_config(pool, config).await;
    let mut b = admin(&app).await;
    let form = b.get("/sites/new").await;
    assert_eq!(form.status, StatusCode::OK);
    assert_contains(
        &form,
        &[r#"name="time_zone" type="text" value="America/Sao_Paulo""#, r#"<option value="Europe/London">"#],
    );
}

#[sqlx::test]
async fn a_site_is_created_and_edited_and_every_change_is_audited(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let res = post_site(
        &mut b,
        "/sites/new",
        &[
            ("name", "  Plant A  "),
            ("address", " 1 Main Rd "),
            ("time_zone", "africa/johannesburg"),
            ("notes", "Gate code 1234"),
        ],
    )
    .await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let id = id_in(res.location(), "/sites/");
    assert_eq!(res.location(), format!("/sites/{id}?notice=site-created"));
    let stored: (String, String, String, String) =
        sqlx::query_as(r#"SELECT "Name", "Address", "TimeZone", "Notes" FROM monitoring."Sites" WHERE "Id" = $1"#)
            .bind(id)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(stored, ("Plant A".into(), "1 Main Rd".into(), "Africa/Johannesburg".into(), "Gate code 1234".into()));
    let page = b.get(res.location()).await;
    assert_contains(&page, &["<h1>Plant A</h1>", "The site was added.", "Gate code 1234", "No devices yet"]);
    assert_contains(&page, &[&format!(r#"href="/sites/{id}/devices/new""#), &format!(r#"href="/sites/{id}/edit""#)]);

    let edit = b.get(&format!("/sites/{id}/edit")).await;
    assert_contains(&edit, &[r#"value="Plant A""#, r#"value="1 Main Rd""#, ">Gate code 1234</textarea>"]);
    let res = post_site(
        &mut b,
        &format!("/sites/{id}/edit"),
        &[("name", "Plant B"), ("address", ""), ("time_zone", "Europe/London"), ("notes", "")],
    )
    .await;
    assert_eq!(res.location(), format!("/sites/{id}?notice=site-updated"), "{}", res.body);
    let page = b.get(&format!("/sites/{id}")).await;
    assert_contains(&page, &["<h1>Plant B</h1>", "Europe/London"]);
    assert_eq!(
        audit_actions(&app).await,
        [("site.created".into(), Some("Plant A".into())), ("site.updated".into(), Some("Plant B".into()))]
    );
}

#[sqlx::test]
async fn invalid_sites_are_refused_field_by_field_keeping_what_was_typed(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let res =
        post_site(&mut b, "/sites/new", &[("name", "  "), ("time_zone", "Mars/Olympus"), ("address", "kept")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_contains(
        &res,
        &[
            "Enter a name of 1 to 100 characters.",
            "Mars/Olympus is not an IANA time zone.",
            r#"value="Mars/Olympus""#,
            r#"value="kept""#,
            r#"aria-describedby="time_zone-error""#,
        ],
    );
    let long = "n".repeat(101);
    let res = post_site(&mut b, "/sites/new", &[("name", &long), ("time_zone", "UTC")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(res.body.contains("Enter a name of 1 to 100 characters."));
    let res = post_site(&mut b, "/sites/new", &[("name", "Plant A"), ("time_zone", "")]).await;
    assert!(res.body.contains("Enter a time zone"), "{}", res.body);

    let a = create_site(&mut b, "Plant A").await;
    let res = post_site(&mut b, "/sites/new", &[("name", " plant a "), ("time_zone", "UTC")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "names are unique case-insensitively");
    assert_contains(&res, &["A site with this name already exists.", r#"value=" plant a ""#]);
    let other = create_site(&mut b, "Plant B").await;
    let res = post_site(&mut b, &format!("/sites/{other}/edit"), &[("name", "PLANT A"), ("time_zone", "UTC")]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_contains(&res, &["A site with this name already exists.", &format!(r#"action="/sites/{other}/edit""#)]);
    let res = post_site(&mut b, &format!("/sites/{a}/edit"), &[("name", "plant a"), ("time_zone", "UTC")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "a site may change its own name's case");
    let names: Vec<String> = sqlx::query_scalar(r#"SELECT "Name" FROM monitoring."Sites" ORDER BY "Id""#)
        .fetch_all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(names, ["plant a", "Plant B"]);
}

#[sqlx::test]
async fn devices_are_created_edited_and_deleted_and_the_directory_follows(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let site = create_site(&mut b, "Plant A").await;
    let form = b.get(&format!("/sites/{site}/devices/new")).await;
    assert_contains(
        &form,
        &[r#"name="modbus_port" type="text" value="502""#, r#"name="poll_interval_seconds" type="text" value="60""#],
    );
    assert_contains(
        &form,
        &[&format!(r#"<option value="{site}" selected>Plant A</option>"#), r#"name="enabled" value="on" checked"#],
    );
    assert!(external_ids(&app).await.is_empty(), "the directory is loaded (and cached) before the change");

    let res = post_device(&mut b, &format!("/sites/{site}/devices/new"), " MTR-1 ", &[("modbus_port", "")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "{}", res.body);
    let id = id_in(res.location(), "/devices/");
    assert_eq!(external_ids(&app).await, ["MTR-1"], "the directory is invalidated after the insert");
    let stored: (String, Option<String>, i32, i16, i32, bool) = sqlx::query_as(
        r#"SELECT "ExternalId", "ModbusHost", "ModbusPort", "ModbusUnitId", "PollIntervalSeconds", "Enabled"
           FROM monitoring."Devices" WHERE "Id" = $1"#,
    )
    .bind(id)
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!(stored, ("MTR-1".into(), Some("10.0.0.5".into()), 502, 1, 60, true));
    let page = b.get(res.location()).await;
    assert_contains(&page, &["The device was added.", "Main incomer", "MTR-1", "Modbus TCP 10.0.0.5:502, unit 1"]);
    let site_page = b.get(&format!("/sites/{site}")).await;
    assert_contains(&site_page, &[&format!(r#"<a href="/devices/{id}">Main incomer</a>"#), "No readings yet"]);

    // Edit: a push device on another site, renamed externalId, disabled.
    let other = create_site(&mut b, "Plant B").await;
    let other_id = other.to_string();
    let res = post_device(
        &mut b,
        &format!("/devices/{id}/edit"),
        "MTR-9",
        &[
            ("site_id", &other_id),
            ("source", "push"),
            ("model", "generic"),
            ("modbus_host", ""),
            ("enabled", "<absent>"),
        ],
    )
    .await;
    assert_eq!(res.location(), format!("/devices/{id}?notice=device-updated"), "{}", res.body);
    assert_eq!(external_ids(&app).await, ["MTR-9"], "the directory forgets the old externalId");
    let stored: (i32, String, Option<String>, bool) = sqlx::query_as(
        r#"SELECT "SiteId", "Source", "ModbusHost", "Enabled" FROM monitoring."Devices" WHERE "Id" = $1"#,
    )
    .bind(id)
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!(stored, (other, "push".into(), None, false));
    assert!(b.get(&format!("/sites/{other}")).await.body.contains("Disabled"));

    let res = post_site(&mut b, &format!("/devices/{id}/delete"), &[]).await;
    assert_eq!(res.location(), format!("/sites/{other}?notice=device-deleted"));
    assert!(external_ids(&app).await.is_empty(), "the directory forgets the deleted device");
    assert_eq!(device_count(&app).await, 0);
    assert_eq!(b.get(&format!("/devices/{id}")).await.status, StatusCode::NOT_FOUND);
    let actions: Vec<String> = audit_actions(&app).await.into_iter().map(|(a, _)| a).collect();
    assert_eq!(actions, ["site.created", "device.created", "site.created", "device.updated", "device.deleted"]);
}

#[sqlx::test]
async fn invalid_devices_are_refused_field_by_field_and_nothing_is_stored(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let site = create_site(&mut b, "Plant A").await;
    create_device(&mut b, site, "MTR-1", &[]).await;
    let url = format!("/sites/{site}/devices/new");
    // (externalId, changed fields, the error shown, what the form keeps)
    let cases: [(&str, Fields, &str, &str); 10] = [
        ("MTR-1", &[], "A device with this external ID already exists.", r#"value="MTR-1""#),
        ("MTR 2", &[], "An external ID cannot contain spaces.", r#"value="MTR 2""#),
        ("", &[], "Enter the external ID its readings arrive with", r#"id="external_id-error""#),
        ("MTR-2", &[("modbus_host", " ")], "Modbus TCP devices are polled there.", r#"id="modbus_host-error""#),
        ("MTR-2", &[("modbus_unit_id", "0")], "Enter a unit id from 1 to 247.", r#"value="0""#),
        ("MTR-2", &[("modbus_unit_id", "248")], "Enter a unit id from 1 to 247.", r#"value="248""#),
        ("MTR-2", &[("modbus_port", "0")], "Enter a port from 1 to 65535.", r#"id="modbus_port-error""#),
        ("MTR-2", &[("poll_interval_seconds", "0")], "Enter an interval from 1 to 3600 seconds.", r#"value="0""#),
        ("MTR-2", &[("poll_interval_seconds", "3601")], "Enter an interval from 1 to 3600 seconds.", r#"value="3601""#),
        ("MTR-2", &[("model", "acuvim-x"), ("name", "")], "Choose a meter model.", "Enter a name of 1 to 100"),
    ];
    for (external_id, overrides, message, kept) in cases {
        let res = post_device(&mut b, &url, external_id, overrides).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{external_id} {overrides:?}: {}", res.body);
        assert_contains(&res, &[message, kept, r#"aria-invalid="true""#]);
    }
    assert_eq!(device_count(&app).await, 1, "nothing stored from a refused form");
    let res = post_device(&mut b, &url, "MTR-2", &[("source", "push"), ("modbus_host", "")]).await;
    assert_eq!(res.status, StatusCode::SEE_OTHER, "a push device needs no host: {}", res.body);
    let second = id_in(res.location(), "/devices/");

    // Taking another device's externalId on edit is refused the same way.
    let res = post_device(&mut b, &format!("/devices/{second}/edit"), "MTR-1", &[]).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_contains(
        &res,
        &["A device with this external ID already exists.", &format!(r#"action="/devices/{second}/edit""#)],
    );
    assert_eq!(external_ids(&app).await, ["MTR-1", "MTR-2"]);
}

#[sqlx::test]
async fn viewers_can_view_but_not_change(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut a = admin(&app).await;
    let site = create_site(&mut a, "Plant A").await;
    let device = create_device(&mut a, site, "MTR-1", &[]).await;
    let mut v = viewer(&app, &mut a).await;

    for page in ["/sites".to_string(), format!("/sites/{site}"), format!("/devices/{device}")] {
        let res = v.get(&page).await;
        assert_eq!(res.status, StatusCode::OK, "{page}");
        for admin_only in ["/edit", "/delete", "/devices/new", "/sites/new"] {
            assert!(!res.body.contains(admin_only), "{page} offers {admin_only} to a viewer");
        }
    }
    let nav = v.get("/sites").await;
    assert!(nav.body.contains(r#"<a href="/sites" aria-current="page">Sites</a>"#), "{}", nav.body);
    let csrf = v.get("/sites").await.csrf();
    let forms = [
        "/sites/new".to_string(),
        format!("/sites/{site}/edit"),
        format!("/sites/{site}/delete"),
        format!("/sites/{site}/devices/new"),
        format!("/devices/{device}/edit"),
        format!("/devices/{device}/delete"),
    ];
    for url in &forms {
        assert_eq!(v.get(url).await.status, StatusCode::FORBIDDEN, "GET {url}");
        let mut fields = device_fields("MTR-X", &[("name", "Hacked"), ("time_zone", "UTC")]);
        fields.push(("csrf", &csrf));
        assert_eq!(v.post(url, &fields).await.status, StatusCode::FORBIDDEN, "POST {url}");
    }
    let names: Vec<String> = sqlx::query_scalar(
        r#"SELECT "Name" FROM monitoring."Sites" UNION ALL SELECT "ExternalId" FROM monitoring."Devices""#,
    )
    .fetch_all(&app.state.db)
    .await
    .unwrap();
    assert_eq!(names, ["Plant A", "MTR-1"], "nothing changed");
    let anonymous = app.browser().get(&format!("/sites/{site}")).await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert!(anonymous.location().starts_with("/login?next="));
}

#[sqlx::test]
async fn deleting_a_site_says_what_goes_with_it_and_takes_it(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let site = create_site(&mut b, "Plant A").await;
    let keep = create_site(&mut b, "Plant B").await;
    let (d1, d2) = (create_device(&mut b, site, "MTR-1", &[]).await, create_device(&mut b, site, "MTR-2", &[]).await);
    let kept = create_device(&mut b, keep, "MTR-3", &[]).await;
    for (device, minutes) in [(d1, 1), (d1, 2), (d2, 1), (kept, 1)] {
        insert_power(&app, device, minutes, 1000.0).await;
    }
    let confirm = b.get(&format!("/sites/{site}/delete")).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert_contains(
        &confirm,
        &["<strong>2 devices</strong>", "<strong>3 readings</strong>", "Delete site, 2 devices and 3 readings"],
    );
    assert_eq!(device_count(&app).await, 3, "the confirmation page deletes nothing");
    assert_eq!(external_ids(&app).await, ["MTR-1", "MTR-2", "MTR-3"]);

    let res = post_site(&mut b, &format!("/sites/{site}/delete"), &[]).await;
    assert_eq!(res.location(), "/sites?notice=site-deleted");
    assert_eq!(external_ids(&app).await, ["MTR-3"], "the directory forgets the site's devices");
    let left: (i64, i64, i64) = sqlx::query_as(
        r#"SELECT (SELECT count(*) FROM monitoring."Sites"), (SELECT count(*) FROM monitoring."Devices"),
                  (SELECT count(*) FROM monitoring."PowerMeasurements")"#,
    )
    .fetch_one(&app.state.db)
    .await
    .unwrap();
    assert_eq!(left, (1, 1, 1), "the other site, its device and its reading stay");
    let list = b.get(res.location()).await;
    assert_contains(&list, &["The site was deleted", "Plant B"]);
    assert!(!list.body.contains("Plant A"));
    let detail: serde_json::Value =
        sqlx::query_scalar(r#"SELECT "Detail" FROM identity."AuditLog" WHERE "Action" = 'site.deleted'"#)
            .fetch_one(&app.state.db)
            .await
            .unwrap();
    assert_eq!(detail, serde_json::json!({ "devices": ["MTR-1", "MTR-2"] }));
    assert_eq!(b.get(&format!("/sites/{site}/delete")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(post_site(&mut b, &format!("/sites/{keep}/delete"), &[]).await.status, StatusCode::SEE_OTHER);
    let empty = b.get("/sites").await;
    assert!(empty.body.contains("No sites yet"));
}

#[sqlx::test]
async fn deleting_a_device_says_how_many_readings_go_with_it(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let site = create_site(&mut b, "Plant A").await;
    let device = create_device(&mut b, site, "MTR-1", &[]).await;
    let other = create_device(&mut b, site, "MTR-2", &[]).await;
    insert_power(&app, device, 1, 5.0).await;
    insert_power(&app, other, 1, 5.0).await;
    let confirm = b.get(&format!("/devices/{device}/delete")).await;
    assert_contains(&confirm, &["its <strong>1 reading</strong>", "<code>MTR-1</code>"]);
    let res = post_site(&mut b, &format!("/devices/{device}/delete"), &[]).await;
    assert_eq!(res.location(), format!("/sites/{site}?notice=device-deleted"));
    let readings: Vec<i32> = sqlx::query_scalar(r#"SELECT "DeviceId" FROM monitoring."PowerMeasurements""#)
        .fetch_all(&app.state.db)
        .await
        .unwrap();
    assert_eq!(readings, [other], "only the deleted device's readings went");
}

#[sqlx::test]
async fn the_device_page_shows_the_latest_reading_with_units_and_a_power_chart(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let site = create_site(&mut b, "Plant A").await;
    let device = create_device(&mut b, site, "MTR-1", &[]).await;
    // A day of power every 10 minutes (an older, different reading first), then a full reading now.
    for minutes in (10..=24 * 60).step_by(10) {
        insert_power(&app, device, minutes, 1000.0 + minutes as f32).await;
    }
    insert_power(&app, device, 26 * 60, 99_999.0).await;
    sqlx::query(
        r#"INSERT INTO monitoring."PowerMeasurements" ("DeviceId", "Time", "Frequency", "V1", "V2", "V3", "V12", "I1",
               "IN", "PTotal", "QTotal", "STotal", "PFTotal", "DemandW", "EnergyImportWh", "EnergyExportWh")
           VALUES ($1, now(), 50.004, 230.44, 231.0, 229.96, 399.1, 12.345, 0.5, 12345, -1500, 2345678, 0.98456,
                   10000, 12345678, 0)"#,
    )
    .bind(device)
    .execute(&app.state.db)
    .await
    .unwrap();
    let page = b.get(&format!("/devices/{device}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_contains(
        &page,
        &[
            ">230.4 V</td>",
            ">231.0 V</td>",
            ">399.1 V</td>",
            ">12.35 A</td>",
            ">0.50 A</td>",
            ">12.35 kW</td>",
            ">-1.50 kvar</td>",
            ">2.346 MVA</td>",
            ">0.985</td>",
            ">50.00 Hz</td>",
            ">10.00 kW</td>",
            ">12\u{202f}345.7 kWh</td>",
            ">0.0 kWh</td>",
            "<span class=\"badge on\">Online</span>",
        ],
    );
    assert!(!page.body.contains("No readings yet"));
    assert!(!page.body.contains("100.00 kW"), "the 26-hour-old reading is neither latest nor charted");
    let svg = &page.body[page.body.find("<svg").expect("an inline SVG chart")..];
    let points =
        svg.split(r#"<polyline class="line-0" points=""#).nth(1).expect("a polyline").split('"').next().unwrap();
    let n = points.split(' ').count();
    assert!((140..=146).contains(&n), "one point per 5-minute bucket with data, 10-minute data: {n}");
    assert_contains(&page, &["Active power (kW), last 24 hours, per 5 minutes", "12.35 kW</text>"]);
    let site_page = b.get(&format!("/sites/{site}")).await;
    assert_contains(&site_page, &["<span class=\"badge on\">Online</span>"]);
}

#[sqlx::test]
async fn a_device_without_readings_says_how_data_arrives(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let site = create_site(&mut b, "Plant A").await;
    let pushed = create_device(&mut b, site, "PUSH-1", &[("source", "push"), ("modbus_host", "")]).await;
    let polled =
        create_device(&mut b, site, "MTR-1", &[("modbus_host", "meter-1.local"), ("poll_interval_seconds", "15")])
            .await;
    let page = b.get(&format!("/devices/{pushed}")).await;
    assert_contains(
        &page,
        &[
            "No readings yet",
            "POST /api/ingest",
            r#"href="/settings/api-keys">Settings → API keys"#,
            r#"<code>"externalId": "PUSH-1"</code>"#,
        ],
    );
    assert!(!page.body.contains("<polyline") && page.body.contains("No readings of this quantity in this range."));
    let page = b.get(&format!("/devices/{polled}")).await;
    assert_contains(
        &page,
        &["No readings yet", "The Modbus poller reads this meter at Modbus TCP meter-1.local:502", "every 15 s"],
    );
    assert_eq!(b.get("/devices/999999").await.status, StatusCode::NOT_FOUND);
    assert_eq!(b.get("/sites/999999").await.status, StatusCode::NOT_FOUND);
    assert_eq!(b.get("/sites/999999/devices/new").await.status, StatusCode::NOT_FOUND);
}

#[sqlx::test]
async fn the_site_page_shows_a_failing_or_silent_device(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let site = create_site(&mut b, "Plant A").await;
    let failing = create_device(&mut b, site, "MTR-1", &[]).await;
    let silent = create_device(&mut b, site, "MTR-2", &[("poll_interval_seconds", "60")]).await;
    insert_power(&app, failing, 10, 1.0).await;
    insert_power(&app, silent, 10, 1.0).await;
    sqlx::query(
        r#"UPDATE monitoring."Devices" SET "LastError" = 'Connection refused (10.0.0.5:502)', "LastErrorAt" = now()
           WHERE "Id" = $1"#,
    )
    .bind(failing)
    .execute(&app.state.db)
    .await
    .unwrap();
    let page = b.get(&format!("/sites/{site}")).await;
    assert_contains(&page, &["<span class=\"badge off\">Error</span>", "Connection refused (10.0.0.5:502)"]);
    assert_contains(&page, &["<span class=\"badge off\">Offline</span>"]);
    let device = b.get(&format!("/devices/{failing}")).await;
    assert_contains(&device, &["Last error", "Connection refused (10.0.0.5:502)"]);
}
