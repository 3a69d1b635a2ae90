//! What can go wrong once the database is open.

use domain::UnknownValue;

/// A failed read or write.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a statement.
    #[error("database error while {doing}")]
    Db {
        /// What was being done (`inserting a job`, `reading a rule`…).
        doing: &'static str,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
    /// A stored value names nothing this program knows: the row is not trusted.
    #[error("{table}.{column} holds `{value}`, which this program does not know")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The value found.
        value: String,
    },
    /// A row that must exist does not.
    #[error("no {what} with id {id}")]
    NotFound {
        /// What was looked for.
        what: &'static str,
        /// Its id.
        id: i64,
    },
    /// The host's fence no longer holds: another server took the host, or its agent came back.
    #[error(
        "no longer the owner of host {host} at epoch {epoch}; leaving its jobs to the new owner"
    )]
    Fenced {
        /// The host.
        host: String,
        /// The epoch the fence was taken at.
        epoch: i64,
    },
}

impl StoreError {
    /// A database error while `doing` something: for `.map_err(StoreError::db("…"))`.
    pub fn db(doing: &'static str) -> impl Fn(sqlx::Error) -> StoreError + Copy {
        move |source| StoreError::Db { doing, source }
    }

    /// A stored value in `table.column` that did not parse.
    pub fn corrupt(
        table: &'static str,
        column: &'static str,
    ) -> impl Fn(UnknownValue) -> StoreError + Copy {
        move |e| StoreError::Corrupt {
            table,
            column,
            value: e.value,
        }
    }
}
