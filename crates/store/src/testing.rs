//! Test support: a PostgreSQL database of a test's own.

/// A database of its own on the PostgreSQL server the test command names
/// (`GUESTNET_TEST_POSTGRES_URL`), or the one on 127.0.0.1:5432; no server is a failure.
pub(crate) struct PgDatabase {
    /// Its URL.
    pub(crate) url: String,
    name: String,
    admin: sqlx::AnyPool,
}

impl PgDatabase {
    /// Creates a database whose name starts with `prefix`.
    pub(crate) async fn create(prefix: &str) -> PgDatabase {
        let base = std::env::var("GUESTNET_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        sqlx::any::install_default_drivers();
        let admin = sqlx::AnyPool::connect(&base).await.unwrap();
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .unwrap();
        let (server, _) = base.rsplit_once('/').unwrap();
        PgDatabase {
            url: format!("{server}/{name}"),
            name,
            admin,
        }
    }

    /// Drops the database, closing whatever still uses it.
    pub(crate) async fn drop(self) {
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .execute(&self.admin)
            .await
            .unwrap();
    }
}
