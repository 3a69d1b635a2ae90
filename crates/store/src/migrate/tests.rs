//! Migrations: from empty, from a database the statement-splitting runner of older guestnet
//! versions migrated, with a `;` inside a literal, and refusing a newer database.

use sqlx::{AnyPool, Row};

use super::{run_files, File, FILES};
use crate::db::{Db, DbError, Dialect};

/// What guestnet did before sqlx's migrator: split each file on `;`, run the pieces, record
/// the version in `schema_migrations`.
async fn migrate_the_old_way(pool: &AnyPool, dialect: Dialect, files: &[File]) {
    let pk = match dialect {
        Dialect::Sqlite => "INTEGER PRIMARY KEY",
        Dialect::Postgres => "BIGSERIAL PRIMARY KEY",
    };
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations \
         (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await
    .unwrap();
    for f in files {
        let mut tx = pool.begin().await.unwrap();
        for stmt in f.sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            sqlx::query(&stmt.replace("{pk}", pk))
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, 0)")
            .bind(f.version)
            .bind(f.name)
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
}

async fn sqlite_pool(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPool::connect(&format!("{url}?mode=rwc")).await.unwrap()
}

async fn zone_names(db: &Db) -> Vec<String> {
    sqlx::query("SELECT name FROM zones ORDER BY name")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("name").unwrap())
        .collect()
}

async fn recorded(db: &Db) -> Vec<(i64, bool)> {
    sqlx::query(
        "SELECT version, CASE WHEN success THEN 1 ELSE 0 END AS ok FROM _sqlx_migrations \
         ORDER BY version",
    )
    .fetch_all(db.pool())
    .await
    .unwrap()
    .iter()
    .map(|r| {
        let ok: i64 = r.try_get("ok").unwrap();
        (r.try_get("version").unwrap(), ok == 1)
    })
    .collect()
}

/// An old database keeps its rows, its migrations are recorded for the migrator with the
/// migrator's checksums (a second start verifies them), and nothing runs twice (a
/// re-run of 001 would fail on its existing tables).
async fn an_old_database_is_adopted(url: &str, pool: AnyPool, dialect: Dialect) {
    migrate_the_old_way(&pool, dialect, FILES).await;
    sqlx::query("INSERT INTO zones (uuid, name, created) VALUES ('z1', 'kept', 0)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let db = Db::connect(url).await.expect("an old database opens");
    assert_eq!(zone_names(&db).await, vec!["kept".to_string()]);
    let all: Vec<(i64, bool)> = FILES.iter().map(|f| (f.version, true)).collect();
    assert_eq!(recorded(&db).await, all);
    db.pool().close().await;
    let again = Db::connect(url)
        .await
        .expect("an adopted database opens again");
    assert_eq!(recorded(&again).await, all);
    again.pool().close().await;
}

#[tokio::test]
async fn a_sqlite_database_migrated_by_the_old_runner_opens_and_keeps_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    let pool = sqlite_pool(&url).await;
    an_old_database_is_adopted(&url, pool, Dialect::Sqlite).await;
}

#[tokio::test]
async fn a_postgres_database_migrated_by_the_old_runner_opens_and_keeps_its_rows() {
    let pg = crate::testing::PgDatabase::create("store_adopt").await;
    let pool = AnyPool::connect(&pg.url).await.unwrap();
    an_old_database_is_adopted(&pg.url, pool, Dialect::Postgres).await;
    pg.drop().await;
}

/// A database the old runner took only part of the way gets the rest from the migrator.
#[tokio::test]
async fn a_partly_migrated_old_database_gets_the_remaining_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("part.db").display());
    let pool = sqlite_pool(&url).await;
    migrate_the_old_way(&pool, Dialect::Sqlite, &FILES[..2]).await;
    pool.close().await;
    let db = Db::connect(&url)
        .await
        .expect("a partly migrated database opens");
    let all: Vec<(i64, bool)> = FILES.iter().map(|f| (f.version, true)).collect();
    assert_eq!(recorded(&db).await, all);
    // 005 made the limits table.
    sqlx::query("SELECT COUNT(*) AS n FROM resource_limits")
        .fetch_one(db.pool())
        .await
        .expect("the later migrations ran");
}

/// Each file runs as the database parses it: a `;` inside a literal is only text.
#[tokio::test]
async fn a_migration_with_a_semicolon_in_a_literal_runs_whole() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("semi.db").display());
    let db = Db::connect(&url).await.unwrap();
    let mut files = FILES.to_vec();
    files.push(File {
        version: 1000,
        name: "a literal with a semicolon",
        sql: "CREATE TABLE notes (id {pk}, body TEXT NOT NULL);\n\
              INSERT INTO notes (body) VALUES ('first; second');\n",
    });
    run_files(&db, &files).await.expect("the file runs");
    let body: String = sqlx::query("SELECT body FROM notes")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .try_get("body")
        .unwrap();
    assert_eq!(body, "first; second");
}

/// A database some newer guestnet migrated further is refused, whichever record says so.
#[tokio::test]
async fn a_newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("new.db").display());
    let db = Db::connect(&url).await.unwrap();
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from the future', TRUE, x'00', 0)",
    )
    .execute(db.pool())
    .await
    .unwrap();
    db.pool().close().await;
    match Db::connect(&url).await {
        Err(DbError::TooNew { found: 99, known }) => {
            assert_eq!(known, FILES.last().unwrap().version)
        }
        Err(e) => panic!("expected TooNew, got {e}"),
        Ok(_) => panic!("a newer database opened"),
    }

    let old_url = format!("sqlite://{}", dir.path().join("old-new.db").display());
    let pool = sqlite_pool(&old_url).await;
    migrate_the_old_way(&pool, Dialect::Sqlite, FILES).await;
    sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'x', 0)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert!(matches!(
        Db::connect(&old_url).await,
        Err(DbError::TooNew { found: 99, .. })
    ));
}

/// Two servers starting at once on one PostgreSQL database: both open it, the schema is
/// made once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_migrating_one_postgres_database_at_once_both_open_it() {
    let pg = crate::testing::PgDatabase::create("store_race").await;
    let (a, b) = tokio::join!(Db::connect(&pg.url), Db::connect(&pg.url));
    let (a, b) = (a.expect("first opens"), b.expect("second opens"));
    let all: Vec<(i64, bool)> = FILES.iter().map(|f| (f.version, true)).collect();
    assert_eq!(recorded(&a).await, all);
    a.pool().close().await;
    b.pool().close().await;
    pg.drop().await;
}
