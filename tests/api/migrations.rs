use std::path::Path;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tau_acuvim_portal::db::migrate::{self, MIGRATOR, MigrationError};
use tau_acuvim_portal::db::timescale::{self, Outcome};

async fn migrator_from(files: &[(&str, &str)]) -> (tempfile::TempDir, Migrator) {
    let dir = tempfile::tempdir().unwrap();
    for (name, sql) in files {
        std::fs::write(dir.path().join(name), sql).unwrap();
    }
    let migrator = Migrator::new(dir.path()).await.unwrap();
    (dir, migrator)
}

#[sqlx::test(migrations = false)]
async fn applies_every_migration_once_and_names_it(pool: PgPool) {
    let first = migrate::run(&pool, &MIGRATOR).await.unwrap();
    assert_eq!(first.first().map(String::as_str), Some("InitialCreate"));
    assert_eq!(first.len(), MIGRATOR.iter().count());
    let second = migrate::run(&pool, &MIGRATOR).await.unwrap();
    assert!(second.is_empty(), "nothing left to apply: {second:?}");
}

#[sqlx::test(migrations = false)]
async fn creates_the_tables_the_runbook_and_grafana_query(pool: PgPool) {
    migrate::run(&pool, &MIGRATOR).await.unwrap();
    for table in [
        r#"identity."Users""#,
        r#"identity."Sessions""#,
        r#"identity."AuditLog""#,
        r#"monitoring."Sites""#,
        r#"monitoring."Devices""#,
        r#"monitoring."PowerMeasurements""#,
    ] {
        let found: Option<String> =
            sqlx::query_scalar("SELECT to_regclass($1)::text").bind(table).fetch_one(&pool).await.unwrap();
        assert_eq!(found.as_deref(), Some(table), "missing table {table}");
    }
    let pk: Vec<String> = sqlx::query_scalar(
        r#"SELECT a.attname::text FROM pg_index i
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
           WHERE i.indrelid = 'monitoring."PowerMeasurements"'::regclass AND i.indisprimary
           ORDER BY array_position(i.indkey, a.attnum)"#,
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(pk, ["DeviceId", "Time"]);
}

#[sqlx::test(migrations = false)]
async fn a_failing_migration_is_named_with_the_database_error(pool: PgPool) {
    let (_dir, broken) = migrator_from(&[
        ("20990101000000_AddWidgets.sql", "CREATE TABLE widgets (id int);"),
        ("20990102000000_BrokenStep.sql", "SELECT * FROM no_such_table;"),
    ])
    .await;
    let err = migrate::run(&pool, &broken).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(&err, MigrationError::Failed { name, .. } if name == "BrokenStep"), "{text}");
    assert!(text.starts_with("Migration 'BrokenStep' (version 20990102000000) failed"), "{text}");
    assert!(text.contains(r#"relation "no_such_table" does not exist"#), "{text}");
    // The migration before it stays applied; the lock was released (a second run proceeds).
    let err = migrate::run(&pool, &broken).await.unwrap_err();
    assert!(matches!(err, MigrationError::Failed { .. }), "{err}");
}

#[sqlx::test(migrations = false)]
async fn an_edited_applied_migration_is_refused(pool: PgPool) {
    migrate::run(&pool, &MIGRATOR).await.unwrap();
    // Every migration as shipped, but the first one edited.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_str().unwrap().to_string(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    files.sort();
    files[0].1.push_str("\n-- an innocent-looking comment\n");
    let borrowed: Vec<(&str, &str)> = files.iter().map(|(n, s)| (n.as_str(), s.as_str())).collect();
    let (_dir, edited) = migrator_from(&borrowed).await;
    let err = migrate::run(&pool, &edited).await.unwrap_err();
    assert!(matches!(err, MigrationError::Edited { ref name, .. } if name == "InitialCreate"), "{err}");
    assert!(err.to_string().contains("append-only"), "{err}");
}

#[sqlx::test(migrations = false)]
async fn a_database_from_a_newer_build_is_refused(pool: PgPool) {
    migrate::run(&pool, &MIGRATOR).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (29991231000000, 'FromTheFuture', true, '\\x00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let err = migrate::run(&pool, &MIGRATOR).await.unwrap_err();
    assert!(matches!(err, MigrationError::Unknown { version: 29991231000000 }), "{err}");
}

/// On plain PostgreSQL the bootstrapper keeps a plain table with a BRIN index, twice over.
#[sqlx::test]
async fn bootstrapper_on_plain_postgres_is_idempotent(pool: PgPool) {
    for _ in 0..2 {
        match timescale::bootstrap(&pool).await.unwrap() {
            Outcome::PlainTable { reason } => assert!(reason.contains("not installed"), "{reason}"),
            other => panic!("expected a plain table on Debian's PostgreSQL, got {other:?}"),
        }
    }
    let brin: Vec<String> = sqlx::query_scalar(
        r#"SELECT indexdef FROM pg_indexes WHERE schemaname = 'monitoring' AND tablename = 'PowerMeasurements'
           AND indexdef ILIKE '%USING brin%'"#,
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(brin.len(), 1, "{brin:?}");
    assert!(brin[0].contains(r#"("Time")"#), "{brin:?}");
}

#[test]
fn migration_files_follow_the_naming_convention() {
    // `<14-digit UTC timestamp>_<PascalCaseName>.sql`: the name is what the runbook greps for.
    // Versions are unique: two branches that picked the same one would both be applied as one
    // version, and the second insert into `_sqlx_migrations` fails on a fresh database.
    let mut versions = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let (version, rest) = name.split_once('_').unwrap_or_else(|| panic!("{name}: no version prefix"));
        assert!(version.len() == 14 && version.chars().all(|c| c.is_ascii_digit()), "{name}: version");
        if let Some(other) = versions.insert(version.to_string(), name.clone()) {
            panic!("{name} and {other} have the same version");
        }
        let stem = rest.strip_suffix(".sql").unwrap_or_else(|| panic!("{name}: not .sql"));
        assert!(stem.chars().next().is_some_and(|c| c.is_ascii_uppercase()), "{name}: PascalCase name");
        assert!(stem.chars().all(|c| c.is_ascii_alphanumeric()), "{name}: PascalCase name");
    }
}
