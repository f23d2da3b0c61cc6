//! Branding through the real router: first-boot seeding, validation, the theme stylesheet, and
//! every refused upload and the logo file's lifecycle.

use std::io::Cursor;

use axum::http::StatusCode;
use image::{ImageFormat, Rgba, RgbaImage};
use sqlx::PgPool;

use crate::helpers::{ADMIN_PASSWORD, Browser, TestApp, admin_options, test_config};

fn png(w: u32, h: u32, shade: u8) -> Vec<u8> {
    let img = RgbaImage::from_pixel(w, h, Rgba([shade, 74, 110, 255]));
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png).unwrap();
    out
}

async fn admin(app: &TestApp) -> Browser {
    app.seed_admin().await;
    let mut b = app.browser();
    assert_eq!(b.sign_in("admin@example.com", ADMIN_PASSWORD).await.status, StatusCode::SEE_OTHER);
    b
}

async fn logo_in_db(app: &TestApp) -> Option<String> {
    sqlx::query_scalar(r#"SELECT "LogoFile" FROM portal."Branding""#).fetch_one(&app.state.db).await.unwrap()
}

fn files_in(app: &TestApp) -> Vec<String> {
    match std::fs::read_dir(app.state.branding.folder()) {
        Ok(dir) => dir.map(|e| e.unwrap().file_name().into_string().unwrap()).collect(),
        Err(_) => Vec::new(),
    }
}

#[sqlx::test]
async fn white_label_settings_brand_the_first_boot_only(pool: PgPool) {
    let mut config = test_config(&admin_options());
    config.white_label.application_name = "Acme Corp Power Monitoring".into();
    config.white_label.footer_text = "© Acme Corp".into();
    let first = TestApp::with_config(pool.clone(), config.clone()).await;
    let login = first.browser().get("/login").await;
    assert!(login.body.contains("Acme Corp Power Monitoring") && login.body.contains("© Acme Corp"), "{}", login.body);

    config.white_label.application_name = "Something Else".into();
    let restarted = TestApp::with_config(pool, config).await;
    let login = restarted.browser().get("/login").await;
    assert!(login.body.contains("Acme Corp Power Monitoring"), "a restart with other env values changes nothing");
    assert!(!login.body.contains("Something Else"));
}

#[sqlx::test]
async fn saved_colours_drive_the_theme_stylesheet(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let page = b.get("/settings/branding").await;
    let old_css = app.state.branding.theme().css_url.clone();
    let res = b
        .post(
            "/settings/branding",
            &[
                ("csrf", &page.csrf()),
                ("application_name", "Northwind Energy"),
                ("primary_color", "#123456"),
                ("secondary_color", "#1D4ED8"),
                ("accent_color", "#f59e0b"),
                ("footer_text", "Northwind"),
            ],
        )
        .await;
    assert_eq!(res.location(), "/settings/branding?notice=branding-saved", "{}", res.body);
    let theme = app.state.branding.theme();
    assert_ne!(theme.css_url, old_css, "a new stylesheet URL, so browsers fetch it");
    let login = app.browser().get("/login").await;
    assert!(login.body.contains("Northwind Energy") && login.body.contains(&theme.css_url), "{}", login.body);
    let css = b.get(&theme.css_url).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.body.contains("--primary: #123456") && css.body.contains("--secondary: #1d4ed8"), "{}", css.body);
    assert_eq!(css.headers["cache-control"], "public, max-age=31536000, immutable");
    assert_eq!(b.get(&old_css).await.status, StatusCode::NOT_FOUND);
}

#[sqlx::test]
async fn invalid_branding_is_refused_field_by_field_and_nothing_changes(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let csrf = b.get("/settings/branding").await.csrf();
    let before = app.state.branding.theme().brand.clone();
    let res = b
        .post(
            "/settings/branding",
            &[
                ("csrf", &csrf),
                ("application_name", ""),
                ("primary_color", "blue"),
                ("secondary_color", "#ffff00"),
                ("accent_color", "#123"),
                ("footer_text", "kept as typed"),
            ],
        )
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    for message in [
        "Enter a name of 1 to 100 characters.",
        "Colour: expected #rrggbb, got &#34;blue&#34;.",
        "#ffff00 gives it as link and button colour against white a contrast of 1.1:1; WCAG AA needs 4.5:1.",
        "Colour: expected #rrggbb, got &#34;#123&#34;.",
    ] {
        assert!(res.body.contains(message), "missing {message:?} in {}", res.body);
    }
    assert!(res.body.contains(r#"value="kept as typed""#), "the form keeps what was typed");
    assert_eq!(app.state.branding.theme().brand, before);
    let low = b
        .post(
            "/settings/branding",
            &[
                ("csrf", &csrf),
                ("application_name", "X"),
                ("primary_color", "#ffff00"),
                ("secondary_color", "#0e7490"),
                ("accent_color", "#06b6d4"),
            ],
        )
        .await;
    assert!(low.body.contains("#ffff00 gives white header text on it a contrast of 1.1:1"), "{}", low.body);
}

#[sqlx::test]
async fn every_unsafe_upload_is_refused_with_a_reason(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let csrf = b.get("/settings/branding").await.csrf();
    let url = format!("/settings/branding/logo?csrf={csrf}");
    let big_png = {
        // Noise does not compress: just over 1 MB.
        let mut img = RgbaImage::new(600, 600);
        for (i, p) in img.pixels_mut().enumerate() {
            let v = (i as u32).wrapping_mul(2_654_435_761);
            *p = Rgba(v.to_le_bytes());
        }
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png).unwrap();
        assert!(out.len() > 1024 * 1024, "{}", out.len());
        out
    };
    let truncated = png(400, 400, 9)[..200].to_vec();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "logo.svg",
            br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#.to_vec(),
            "SVG images are not accepted",
        ),
        ("logo.png", b"<html><body>not an image</body></html>".to_vec(), "is not a PNG, JPEG or WebP image"),
        ("huge.png", big_png, "the limit is 1024 KB"),
        ("wide.png", png(2049, 16, 1), "The image is 2049 × 16 px; the limit is 2048 × 2048 px."),
        ("cut.png", truncated, "could not be read"),
    ];
    for (name, bytes, message) in cases {
        let res = b.upload(&url, "logo", name, &bytes).await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{name}");
        assert!(res.body.contains(message), "{name}: missing {message:?} in {}", res.body);
    }
    assert_eq!(logo_in_db(&app).await, None);
    assert!(files_in(&app).is_empty(), "{:?}", files_in(&app));
    // The token travels in the query string for uploads; without it, refused.
    let res = b.upload("/settings/branding/logo", "logo", "a.png", &png(10, 10, 1)).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
}

#[sqlx::test]
async fn a_logo_is_reencoded_served_replaced_and_removed(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    let csrf = b.get("/settings/branding").await.csrf();
    let url = format!("/settings/branding/logo?csrf={csrf}");

    let res = b.upload(&url, "logo", "first.png", &png(120, 40, 10)).await;
    assert_eq!(res.location(), "/settings/branding?notice=logo-saved", "{}", res.body);
    let first = logo_in_db(&app).await.expect("a logo");
    assert_eq!(files_in(&app), std::slice::from_ref(&first));
    let served = b.get(&format!("/branding/logo/{first}")).await;
    assert_eq!(served.status, StatusCode::OK);
    assert_eq!(served.headers["content-type"], "image/png");
    assert_eq!(served.headers["x-content-type-options"], "nosniff");
    assert_eq!(served.headers["cache-control"], "public, max-age=31536000, immutable");
    let login = app.browser().get("/login").await;
    assert!(login.body.contains(&format!("/branding/logo/{first}")), "the sign-in page shows the logo");

    b.upload(&url, "logo", "second.png", &png(120, 40, 200)).await;
    let second = logo_in_db(&app).await.expect("a logo");
    assert_ne!(first, second);
    assert_eq!(files_in(&app), std::slice::from_ref(&second), "the old file is removed after the new one is saved");

    let res = b.post("/settings/branding/logo/delete", &[("csrf", &csrf)]).await;
    assert_eq!(res.location(), "/settings/branding?notice=logo-removed");
    assert_eq!(logo_in_db(&app).await, None);
    assert!(files_in(&app).is_empty());
    let home = b.get("/").await;
    assert!(!home.body.contains("/branding/logo/"), "the header falls back to the name");
}

#[sqlx::test]
async fn an_unwritable_branding_folder_is_a_clear_error_not_a_broken_portal(pool: PgPool) {
    let app = TestApp::new(pool).await;
    let mut b = admin(&app).await;
    // A file where the folder should be: nothing can be written below it (even as root).
    std::fs::write(app.state.branding.folder(), b"in the way").unwrap();
    let csrf = b.get("/settings/branding").await.csrf();
    let res = b.upload(&format!("/settings/branding/logo?csrf={csrf}"), "logo", "a.png", &png(10, 10, 1)).await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        res.body.contains("The logo could not be saved: the folder") && res.body.contains("uid 1000"),
        "{}",
        res.body
    );
    assert_eq!(logo_in_db(&app).await, None);
    assert_eq!(b.get("/").await.status, StatusCode::OK, "every page still renders");
}
