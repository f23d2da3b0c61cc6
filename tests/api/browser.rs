//! Real-browser flows (Debian's Chromium driven by playwright-core, both installed by
//! scripts/test.sh) against the real binary. Screenshots land in `test-artifacts/browser/`.

use std::io::Cursor;
use std::path::Path;
use std::process::Command;

use image::{ImageFormat, Rgba, RgbaImage};

use crate::helpers::{ADMIN_PASSWORD, Portal, TestDb};

/// Chromium and playwright-core as scripts/test.sh installs them; `None` (the test skips) when
/// they are not there.
struct Browser {
    chromium: String,
    node_path: String,
}

impl Browser {
    fn from_env() -> Option<Browser> {
        match (std::env::var("TAU_TEST_CHROMIUM"), std::env::var("TAU_TEST_NODE_PATH")) {
            (Ok(chromium), Ok(node_path)) => Some(Browser { chromium, node_path }),
            _ => {
                eprintln!(
                    "SKIPPED: browser tests (TAU_TEST_CHROMIUM / TAU_TEST_NODE_PATH not set; scripts/test.sh sets them)"
                );
                None
            }
        }
    }

    /// Runs `tests/browser/<script>` against `portal` (base URL, admin e-mail and password, the
    /// screenshot folder, then `extra`) and asserts it ended with `passed` on stdout.
    async fn run(&self, portal: &Portal, script: &str, extra: Vec<String>, passed: &str) {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let artifacts = root.join("test-artifacts/browser");
        std::fs::create_dir_all(&artifacts).unwrap();
        let mut node = Command::new("node");
        node.arg(root.join("tests/browser").join(script))
            .args([portal.url("").as_str(), "admin@example.com", ADMIN_PASSWORD])
            .arg(&artifacts)
            .args(extra)
            .env("NODE_PATH", &self.node_path)
            .env("TAU_TEST_CHROMIUM", &self.chromium);
        let out = tokio::task::spawn_blocking(move || node.output().expect("run node")).await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "browser flow failed:\n{stdout}\n{stderr}\nportal log:\n{}",
            portal.raw_lines().join("\n")
        );
        assert!(stdout.contains(passed), "{stdout}");
    }
}

/// The real binary in Development with the seeded admin's known password, listening.
async fn start_portal(db: &TestDb, data: &Path) -> Portal {
    let env = [
        ("Database__ConnectionString", db.npgsql()),
        ("Application__Environment", "Development".to_string()),
        ("Authentication__DefaultAdminPassword", ADMIN_PASSWORD.to_string()),
    ];
    let portal = Portal::start(&[], &env, data);
    portal.wait_listening().await;
    portal
}

#[tokio::test]
async fn branding_and_keyboard_sign_in_in_chromium() {
    let Some(browser) = Browser::from_env() else { return };
    let data = tempfile::tempdir().unwrap();
    let logo = data.path().join("acme-logo.png");
    let mut img = RgbaImage::from_pixel(240, 80, Rgba([124, 45, 18, 255]));
    for x in 20..220 {
        for y in 30..50 {
            img.put_pixel(x, y, Rgba([245, 158, 11, 255]));
        }
    }
    let mut bytes = Vec::new();
    img.write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png).unwrap();
    std::fs::write(&logo, bytes).unwrap();

    let db = TestDb::create().await;
    let portal = start_portal(&db, data.path()).await;

    browser.run(&portal, "branding.cjs", vec![logo.display().to_string()], "browser flow passed").await;
}

/// The dashboards in Chromium: the Overview's figures change without a reload when a reading
/// arrives, the device chart draws (a non-empty canvas with the expected points) and its range
/// picker changes the data, the 375 px layout keeps the key figures on screen, and a wall
/// display link works without signing in and stops when revoked.
#[tokio::test]
async fn dashboards_update_live_chart_and_wall_display_in_chromium() {
    let Some(browser) = Browser::from_env() else { return };
    let data = tempfile::tempdir().unwrap();
    let db = TestDb::create().await;
    let portal = start_portal(&db, data.path()).await;
    let pool = db.pool().await;
    let (site, devices) =
        crate::helpers::site_with_devices(&pool, "North plant", "Europe/London", &["north-main"]).await;
    // A day of readings every 5 minutes (a slow wave between 2 and 6 kW), the newest now: 4 kW;
    // the import counter rises 4 kWh an hour, and the energy rollup has run over it.
    sqlx::query(
        r#"INSERT INTO monitoring."PowerMeasurements" ("DeviceId", "Time", "PTotal", "V1", "V2", "V3", "EnergyImportWh")
           SELECT $1, t, 4000 + 2000 * sin(extract(epoch FROM t) / 7200), 230, 231, 229,
                  extract(epoch FROM t - (now() - interval '24 hours')) / 3600 * 4000
           FROM generate_series(now() - interval '24 hours', now() - interval '5 minutes', interval '5 minutes') AS t
           UNION ALL SELECT $1, now(), 4000, 230, 231, 229, 96000"#,
    )
    .bind(devices[0])
    .execute(&pool)
    .await
    .unwrap();
    tau_acuvim_portal::measurements::energy::rollup::run_once(&pool, chrono::Utc::now()).await.unwrap();

    browser
        .run(
            &portal,
            "dashboards.cjs",
            vec![site.to_string(), devices[0].to_string(), "north-main".to_string()],
            "dashboards flow passed",
        )
        .await;
}

/// The TOU grid editor in Chromium: colour and letter per cell, painting by drag, shift-click and
/// keyboard, the painted grid saved, and the plain form without JavaScript.
#[tokio::test]
async fn the_tou_grid_paints_with_mouse_and_keyboard_in_chromium() {
    let Some(browser) = Browser::from_env() else { return };
    let data = tempfile::tempdir().unwrap();
    let db = TestDb::create().await;
    let portal = start_portal(&db, data.path()).await;
    browser.run(&portal, "tou_grid.cjs", Vec::new(), "tou grid flow passed").await;
}
