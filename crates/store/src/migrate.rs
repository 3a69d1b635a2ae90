//! Migrations: the numbered files in `schema/`, run by sqlx's [`Migrator`] through a
//! [`MigrationSource`] that fills in the dialect's spelling of an auto-increment key (`{pk}`).
//!
//! Each file runs whole, in one transaction, as the database parses it: a literal holding a
//! `;` is just a literal. sqlx records what ran in `_sqlx_migrations` with a checksum of the
//! text it ran.
//!
//! A database migrated by guestnet before the migrator took over records its versions in
//! `schema_migrations`; on the first start with this code those versions are written into
//! `_sqlx_migrations` with the checksums the migrator computes, so that nothing runs twice.
//! `schema_migrations` is left as it was.
//!
//! # Guarantees
//! - A database newer than this program (a version it does not know) is refused with
//!   [`DbError::TooNew`] before anything is written.
//! - Two servers starting at once on one PostgreSQL database do not both migrate: the whole
//!   run, adoption included, holds an advisory lock (and sqlx's migrator takes its own).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::error::BoxDynError;
use sqlx::migrate::{Migrate, Migration, MigrationSource, MigrationType, Migrator};
use sqlx::{AnyConnection, Row};

use crate::db::{Db, DbError, Dialect};

/// The advisory lock two servers starting at once on one PostgreSQL database share.
const ADVISORY_LOCK: i64 = 7_461_524;

/// One migration file: its number, its name, its text with `{pk}` for the key column type.
#[derive(Debug, Clone, Copy)]
pub struct File {
    /// Its number.
    pub version: i64,
    /// Its name.
    pub name: &'static str,
    /// Its statements.
    pub sql: &'static str,
}

/// The schema, oldest first.
pub const FILES: &[File] = &[
    File {
        version: 1,
        name: "initial schema",
        sql: include_str!("../schema/001_initial.sql"),
    },
    File {
        version: 2,
        name: "indexes on the job that last changed a row",
        sql: include_str!("../schema/002_job_indexes.sql"),
    },
    File {
        version: 3,
        name: "rendered rule objects",
        sql: include_str!("../schema/003_rule_json.sql"),
    },
    File {
        version: 4,
        name: "hosts, agents' tokens, servers",
        sql: include_str!("../schema/004_hosts.sql"),
    },
    File {
        version: 5,
        name: "resource limits",
        sql: include_str!("../schema/005_resource_limits.sql"),
    },
    File {
        version: 6,
        name: "guest VLANs, zone DNS, NIC MACs",
        sql: include_str!("../schema/006_guest_vlans_dns_macs.sql"),
    },
    File {
        version: 7,
        name: "template images",
        sql: include_str!("../schema/007_template_images.sql"),
    },
    File {
        version: 8,
        name: "the widest port range of an IP's rules",
        sql: include_str!("../schema/008_rule_widths.sql"),
    },
    File {
        version: 9,
        name: "the routers' system offering",
        sql: include_str!("../schema/009_router_offering.sql"),
    },
    File {
        version: 10,
        name: "static NAT on public IPs",
        sql: include_str!("../schema/010_static_nat.sql"),
    },
    File {
        version: 11,
        name: "resource tags",
        sql: include_str!("../schema/011_resource_tags.sql"),
    },
    File {
        version: 12,
        name: "secondary addresses of VMs' NICs",
        sql: include_str!("../schema/012_nic_secondary_ips.sql"),
    },
];

/// Migration files templated for one dialect.
#[derive(Debug, Clone)]
pub struct Source {
    dialect: Dialect,
    files: Vec<File>,
}

impl Source {
    /// `files` for `dialect`.
    pub fn new(dialect: Dialect, files: &[File]) -> Source {
        Source {
            dialect,
            files: files.to_vec(),
        }
    }

    /// The text of `file` as it runs on this dialect.
    fn sql(&self, file: &File) -> String {
        let pk = match self.dialect {
            Dialect::Sqlite => "INTEGER PRIMARY KEY",
            Dialect::Postgres => "BIGSERIAL PRIMARY KEY",
        };
        file.sql.replace("{pk}", pk)
    }
}

impl MigrationSource<'static> for Source {
    fn resolve(
        self,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Migration>, BoxDynError>> + Send + 'static>> {
        Box::pin(async move {
            Ok(self
                .files
                .iter()
                .map(|f| {
                    Migration::new(
                        f.version,
                        Cow::Borrowed(f.name),
                        MigrationType::Simple,
                        Cow::Owned(self.sql(f)),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Runs the schema's migrations on `db`.
///
/// # Errors
/// [`DbError::TooNew`] for a database newer than this program; why a migration failed.
pub(crate) async fn run(db: &Db) -> Result<(), DbError> {
    run_files(db, FILES).await
}

/// Runs `files` on `db` (the schema's, or a test's own).
///
/// # Errors
/// [`DbError::TooNew`] for a database newer than `files`; why a migration failed.
pub async fn run_files(db: &Db, files: &[File]) -> Result<(), DbError> {
    let migrator = Migrator::new(Source::new(db.dialect, files))
        .await
        .map_err(DbError::Migrate)?;
    let _writer = db.writer().await;
    let mut conn = db.pool.acquire().await?;
    if db.dialect == Dialect::Postgres {
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(ADVISORY_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    let result = migrate_locked(db.dialect, &mut conn, &migrator).await;
    if db.dialect == Dialect::Postgres {
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(ADVISORY_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    result
}

async fn migrate_locked(
    dialect: Dialect,
    conn: &mut AnyConnection,
    migrator: &Migrator,
) -> Result<(), DbError> {
    let known = migrator.iter().map(|m| m.version).max().unwrap_or(0);
    adopt(dialect, conn, migrator, known).await?;
    conn.ensure_migrations_table()
        .await
        .map_err(DbError::Migrate)?;
    let applied = conn
        .list_applied_migrations()
        .await
        .map_err(DbError::Migrate)?;
    if let Some(found) = applied
        .iter()
        .map(|m| m.version)
        .max()
        .filter(|v| *v > known)
    {
        return Err(DbError::TooNew { found, known });
    }
    migrator
        .run_direct(&mut *conn)
        .await
        .map_err(DbError::Migrate)?;
    for m in migrator
        .iter()
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
    {
        tracing::info!(version = m.version, name = %m.description, "database migrated");
    }
    Ok(())
}

/// Records in `_sqlx_migrations` the versions an older guestnet recorded in
/// `schema_migrations`, with the migrator's checksums, so that they do not run again.
async fn adopt(
    dialect: Dialect,
    conn: &mut AnyConnection,
    migrator: &Migrator,
    known: i64,
) -> Result<(), DbError> {
    let exists = match dialect {
        Dialect::Sqlite => {
            "SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' \
             AND name = 'schema_migrations'"
        }
        Dialect::Postgres => {
            "SELECT COUNT(*) AS n FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = 'schema_migrations'"
        }
    };
    let n: i64 = sqlx::query(exists)
        .fetch_one(&mut *conn)
        .await
        .map_err(DbError::Adopt)?
        .try_get("n")
        .map_err(DbError::Adopt)?;
    if n == 0 {
        return Ok(());
    }
    let old: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(&mut *conn)
        .await
        .map_err(DbError::Adopt)?
        .iter()
        .map(|r| r.try_get("version"))
        .collect::<Result<_, _>>()
        .map_err(DbError::Adopt)?;
    if let Some(found) = old.iter().copied().max().filter(|v| *v > known) {
        return Err(DbError::TooNew { found, known });
    }
    conn.ensure_migrations_table()
        .await
        .map_err(DbError::Migrate)?;
    let recorded: Vec<i64> = conn
        .list_applied_migrations()
        .await
        .map_err(DbError::Migrate)?
        .iter()
        .map(|m| m.version)
        .collect();
    for m in migrator
        .iter()
        .filter(|m| old.contains(&m.version) && !recorded.contains(&m.version))
    {
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES ($1, $2, TRUE, $3, 0)",
        )
        .bind(m.version)
        .bind(m.description.to_string())
        .bind(m.checksum.to_vec())
        .execute(&mut *conn)
        .await
        .map_err(DbError::Adopt)?;
        tracing::info!(
            version = m.version,
            "migration record adopted from schema_migrations"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests;
