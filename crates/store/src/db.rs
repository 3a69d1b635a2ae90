//! The database: one schema on SQLite (embedded, the default) or PostgreSQL, migrations run on
//! start ([`crate::migrate`]), and the few dialect differences kept here.
//!
//! Everything goes through sqlx's `Any` driver with `$N` placeholders, which both back ends
//! accept. Booleans are stored as 0/1 and times as unix milliseconds, so that every column
//! decodes the same way from either database.

use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};
use tokio::sync::{Mutex, MutexGuard};

/// What went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL names neither SQLite nor PostgreSQL.
    #[error("database url `{0}` is neither sqlite:// nor postgres://")]
    UnknownScheme(String),
    /// Connecting failed.
    #[error("cannot connect to the {dialect} database")]
    Connect {
        /// Which back end.
        dialect: &'static str,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The migrations failed.
    #[error("migrating the database failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// Recording the versions a database migrated before sqlx's migrator took over failed.
    #[error("adopting the migration record of an older guestnet failed")]
    Adopt(#[source] sqlx::Error),
    /// The database is at a schema version this program does not know.
    #[error("the database has schema version {found}, newer than this program's {known}")]
    TooNew {
        /// What the database has.
        found: i64,
        /// The newest this program knows.
        known: i64,
    },
    /// A statement needed to open the database failed.
    #[error("preparing the database failed")]
    Query(#[from] sqlx::Error),
}

/// The back end in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite, one file, one writer at a time.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Dialect {
    /// Its name, as the startup line and metrics say it.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        }
    }
}

/// The database handle shared by the API and the job runner.
#[derive(Clone)]
pub struct Db {
    pub(crate) pool: AnyPool,
    pub(crate) dialect: Dialect,
    /// SQLite allows one writer; writers queue here instead of spinning on `SQLITE_BUSY`.
    /// PostgreSQL writers lock rows instead (see [`Db::lock_network`]). Only the store takes
    /// it: [`Db::change`] holds it for the length of its transaction.
    pub(crate) writer: Arc<Mutex<()>>,
    /// Jobs this process read as pending, so that polling one costs no round trip (see
    /// [`crate::jobs::poll`]); a change that ends a job forgets it on commit.
    pub(crate) pending: Arc<crate::jobs::PendingJobs>,
    /// The URL it was opened with (PostgreSQL's listener opens its own connection).
    url: Arc<str>,
}

/// The PostgreSQL channel on which servers ring each other's job runners.
pub const RING_CHANNEL: &str = "guestnet_ring";

/// Held for the length of a write transaction on SQLite; empty on PostgreSQL.
pub struct WriteGuard<'a> {
    _guard: Option<MutexGuard<'a, ()>>,
}

impl Db {
    /// Connects to `url` (`sqlite://PATH` or `postgres://…`) and runs the migrations.
    ///
    /// # Errors
    /// Why the database cannot be reached or migrated.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            return Err(DbError::UnknownScheme(url.to_string()));
        };
        let connect_err = |source| DbError::Connect {
            dialect: dialect.name(),
            source,
        };
        let pool = match dialect {
            Dialect::Sqlite => {
                AnyPoolOptions::new()
                    .max_connections(4)
                    .acquire_timeout(Duration::from_secs(30))
                    .after_connect(|conn, _meta| {
                        Box::pin(async move {
                            use sqlx::Executor;
                            conn.execute(
                                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; \
                                 PRAGMA busy_timeout=10000; PRAGMA foreign_keys=ON;",
                            )
                            .await?;
                            Ok(())
                        })
                    })
                    .connect(&sqlite_url(url))
                    .await
            }
            Dialect::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect(url)
                    .await
            }
        }
        .map_err(connect_err)?;
        let db = Db {
            pool,
            dialect,
            writer: Arc::new(Mutex::new(())),
            pending: Arc::default(),
            url: Arc::from(url),
        };
        crate::migrate::run(&db).await?;
        Ok(db)
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The back end.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Tells the other servers sharing a PostgreSQL database that a network has work (its
    /// jobs or its router changed); nothing on SQLite, which one server has to itself.
    ///
    /// # Errors
    /// The query's error.
    pub async fn ring_others(&self, network_id: i64) -> Result<(), sqlx::Error> {
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(RING_CHANNEL)
                .bind(network_id.to_string())
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Listens for [`Db::ring_others`] of every server (PostgreSQL only; `None` on SQLite).
    /// The listener reconnects by itself after losing its connection; rings sent meanwhile
    /// are lost, which the runners' periodic look at every network makes good.
    ///
    /// # Errors
    /// Why the listener cannot connect.
    pub async fn listen(&self) -> Result<Option<sqlx::postgres::PgListener>, sqlx::Error> {
        if self.dialect != Dialect::Postgres {
            return Ok(None);
        }
        let mut l = sqlx::postgres::PgListener::connect(&self.url).await?;
        l.listen(RING_CHANNEL).await?;
        Ok(Some(l))
    }

    /// Begins a write transaction: on SQLite with `BEGIN IMMEDIATE`, so that it takes the
    /// database's write lock before its first statement, where SQLite waits for a busy lock
    /// (`busy_timeout`). A deferred transaction that reads first takes the lock only at its
    /// first write, and SQLite then answers "database is locked" at once instead of waiting,
    /// whenever another connection still holds the lock (a dropped transaction whose rollback
    /// has not run yet, another process).
    ///
    /// Handlers and the runner open a [`Db::change`] instead, which takes SQLite's writer
    /// first and begins with this; code not yet moved to it takes [`Db::write_lock`] first.
    ///
    /// # Errors
    /// The database's error.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        }
    }

    /// Waits for the right to write (SQLite); immediate on PostgreSQL.
    ///
    /// Deprecated: handlers and the runner are moving to [`Db::change`] and [`Db::fenced`],
    /// whose transaction owns this guard; this method goes away once the last caller has moved.
    #[doc(hidden)]
    pub async fn write_lock(&self) -> WriteGuard<'_> {
        WriteGuard {
            _guard: match self.dialect {
                Dialect::Sqlite => Some(self.writer.lock().await),
                Dialect::Postgres => None,
            },
        }
    }

    /// The writer, for one statement (or a transaction begun after it) inside the store: on
    /// SQLite the guard, released when dropped; nothing on PostgreSQL.
    pub(crate) async fn writer(&self) -> Option<tokio::sync::OwnedMutexGuard<()>> {
        match self.dialect {
            Dialect::Sqlite => Some(self.writer.clone().lock_owned().await),
            Dialect::Postgres => None,
        }
    }

    /// Locks a network's row for the rest of the transaction on PostgreSQL, so that rule
    /// creations on one network (from any management server) are checked for conflicts one
    /// at a time. On SQLite the write lock already serializes writers.
    ///
    /// # Errors
    /// The query's error.
    pub async fn lock_network(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        network_id: i64,
    ) -> Result<(), sqlx::Error> {
        if self.dialect == Dialect::Postgres {
            sqlx::query("SELECT id FROM networks WHERE id = $1 FOR UPDATE")
                .bind(network_id)
                .fetch_optional(&mut **tx)
                .await?;
        }
        Ok(())
    }
}

/// `sqlite://path` with `mode=rwc` added, so that a new file is created.
fn sqlite_url(url: &str) -> String {
    if url.contains("mode=") {
        url.to_string()
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    }
}

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Reads an optional text column.
pub fn opt_str(row: &AnyRow, col: &str) -> Result<Option<String>, sqlx::Error> {
    row.try_get::<Option<String>, _>(col)
}

/// Reads a 0/1 column as a boolean.
pub fn flag(row: &AnyRow, col: &str) -> Result<bool, sqlx::Error> {
    Ok(row.try_get::<i64, _>(col)? != 0)
}

/// One field of a JSON object built by the database ([`Dialect::json_object`]).
#[derive(Debug, Clone, Copy)]
pub enum J<'a> {
    /// A text column or expression.
    Text(&'a str),
    /// An integer column or expression.
    Int(&'a str),
    /// An integer column shown as a JSON string (CloudStack's ports of forwards and balancers).
    IntText(&'a str),
    /// A 0/1 column shown as a JSON boolean.
    Bool(&'a str),
    /// An empty JSON array.
    EmptyArray,
}

impl Dialect {
    /// An SQL expression giving the JSON text of an object with these fields, in this order,
    /// null fields left out (as CloudStack leaves them out). Listing thousands of rows this
    /// way costs one text column per row instead of one value per field. The text is put
    /// together by concatenation, which both databases do quickly (SQLite's `json_patch`,
    /// the obvious way to drop nulls, re-parses every object and cost seven times as much).
    pub fn json_object(self, fields: &[(&str, J<'_>)]) -> String {
        format!("('{{' || {} || '}}')", self.json_fields(fields))
    }

    /// The members of [`Dialect::json_object`]'s object without the braces (`"a":1,"b":2`),
    /// to be completed with more members.
    pub fn json_fields(self, fields: &[(&str, J<'_>)]) -> String {
        let quote = |c: &str| match self {
            Dialect::Sqlite => format!("json_quote({c})"),
            Dialect::Postgres => format!("CAST(to_json(CAST({c} AS TEXT)) AS TEXT)"),
        };
        let parts: Vec<String> = fields
            .iter()
            .map(|(k, v)| {
                let key = format!("',\"{k}\":'");
                match v {
                    J::Text(c) => format!(
                        "CASE WHEN ({c}) IS NULL THEN '' ELSE {key} || {} END",
                        quote(c)
                    ),
                    J::Int(c) => format!(
                        "CASE WHEN ({c}) IS NULL THEN '' ELSE {key} || CAST({c} AS TEXT) END"
                    ),
                    J::IntText(c) => format!(
                        "CASE WHEN ({c}) IS NULL THEN '' ELSE {key} || '\"' || CAST({c} AS TEXT) || '\"' END"
                    ),
                    J::Bool(c) => {
                        format!("{key} || CASE WHEN ({c}) <> 0 THEN 'true' ELSE 'false' END")
                    }
                    J::EmptyArray => format!("{key} || '[]'"),
                }
            })
            .collect();
        format!("substr({}, 2)", parts.join(" || "))
    }
}

#[cfg(test)]
mod tests;

/// The rows of a multi-row `VALUES`: `rows` rows, each `template` with every `?` numbered as
/// a placeholder in turn (`$1`, `$2`, …), which both dialects read.
pub fn values_rows(template: &str, rows: usize) -> String {
    let mut n = 0;
    let mut out = String::new();
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        for ch in template.chars() {
            if ch == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(ch);
            }
        }
    }
    out
}

/// The most rows one multi-row statement writes: under either dialect's bound on
/// placeholders (SQLite's 32,766, PostgreSQL's 65,535) with the widest row written so.
pub const ROWS_PER_STATEMENT: usize = 500;

/// The tracing target under which the database library reports each statement it sends (one
/// event per statement, at debug level or, when slow, at warn), so that a test can count a
/// piece of work's statements.
pub const STATEMENT_EVENT_TARGET: &str = "sqlx::query";
