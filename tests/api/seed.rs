use std::os::unix::fs::PermissionsExt;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordVerifier};
use secrecy::SecretString;
use sqlx::PgPool;
use tau_acuvim_portal::auth::password::Passwords;
use tau_acuvim_portal::auth::seed::{GENERATED_PASSWORD_FILE, Seeded, seed_default_admin};

use crate::helpers::{ADMIN_PASSWORD, admin_options, test_config};

async fn passwords() -> Passwords {
    Passwords::new(test_config(&admin_options()).auth.password_hash).await.unwrap()
}

async fn stored_hash(pool: &PgPool, email: &str) -> String {
    sqlx::query_scalar(r#"SELECT "PasswordHash" FROM identity."Users" WHERE lower("Email") = lower($1)"#)
        .bind(email)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn verifies(hash: &str, password: &str) -> bool {
    Argon2::default().verify_password(password.as_bytes(), &PasswordHash::new(hash).unwrap()).is_ok()
}

#[sqlx::test]
async fn seeds_the_default_admin_once_and_never_changes_it(pool: PgPool) {
    let mut config = test_config(&admin_options());
    assert_eq!(seed_default_admin(&pool, &config, &passwords().await).await.unwrap(), Seeded::Created);
    let hash = stored_hash(&pool, "admin@example.com").await;
    assert!(verifies(&hash, ADMIN_PASSWORD));

    // A restart with another password (and the email in other case) changes nothing.
    config.default_admin.password = Some(SecretString::from("a completely different one"));
    config.default_admin.email = "ADMIN@Example.com".into();
    assert_eq!(seed_default_admin(&pool, &config, &passwords().await).await.unwrap(), Seeded::AlreadyPresent);
    assert_eq!(stored_hash(&pool, "admin@example.com").await, hash);

    let (is_admin, users): (bool, i64) =
        sqlx::query_as(r#"SELECT bool_and("IsAdmin"), count(*) FROM identity."Users""#).fetch_one(&pool).await.unwrap();
    assert!(is_admin);
    assert_eq!(users, 1);
    let audited: i64 = sqlx::query_scalar(r#"SELECT count(*) FROM identity."AuditLog" WHERE "Action" = 'user.seeded'"#)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(audited, 1);
}

#[sqlx::test]
async fn deleting_the_default_admin_makes_the_next_start_seed_it_again(pool: PgPool) {
    let config = test_config(&admin_options());
    seed_default_admin(&pool, &config, &passwords().await).await.unwrap();
    sqlx::query(r#"DELETE FROM identity."Users""#).execute(&pool).await.unwrap();
    assert_eq!(seed_default_admin(&pool, &config, &passwords().await).await.unwrap(), Seeded::Created);
}

#[sqlx::test]
async fn development_without_a_password_generates_one_into_a_private_file(pool: PgPool) {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config(&admin_options());
    config.default_admin.password = None;
    config.data_directory = data.path().join("nested");
    assert_eq!(seed_default_admin(&pool, &config, &passwords().await).await.unwrap(), Seeded::Created);

    let file = config.data_directory.join(GENERATED_PASSWORD_FILE);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the generated password is readable by its owner only");
    let password = std::fs::read_to_string(&file).unwrap();
    let password = password.trim_end();
    assert!(password.len() >= 20, "{password:?}");
    assert!(verifies(&stored_hash(&pool, "admin@example.com").await, password));
}
