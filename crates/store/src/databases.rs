//! A PostgreSQL server's databases: one made fresh for a run (of the benchmarks, of a test)
//! and dropped after it. The server is reached at an administrator's URL (one naming a
//! database that exists, usually `postgres`); nothing is migrated there.

use sqlx::Connection;

/// Making or dropping a database failed.
#[derive(Debug, thiserror::Error)]
pub enum DatabasesError {
    /// A database name that is not a plain lower-case identifier (it goes into the statement
    /// as written).
    #[error("`{0}` is not a database name of lower-case letters, digits and `_`")]
    Name(String),
    /// The URL names no database to replace with the new one.
    #[error("the administrator's URL `{0}` does not end in a database name")]
    Url(String),
    /// The server could not be reached.
    #[error("cannot connect to PostgreSQL at {url}")]
    Connect {
        /// The administrator's URL.
        url: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// The server refused a statement.
    #[error("PostgreSQL refused {doing} `{name}`")]
    Refused {
        /// `creating` or `dropping`.
        doing: &'static str,
        /// The database.
        name: String,
        /// Its error.
        #[source]
        source: sqlx::Error,
    },
}

/// Makes the database `name` afresh on the server `admin_url` reaches (dropping one of that
/// name first), and returns the URL that reaches it.
///
/// # Errors
/// [`DatabasesError`].
pub async fn recreate(admin_url: &str, name: &str) -> Result<String, DatabasesError> {
    check_name(name)?;
    let (base, _) = admin_url
        .rsplit_once('/')
        .ok_or_else(|| DatabasesError::Url(admin_url.to_string()))?;
    let mut conn = connect(admin_url).await?;
    run(
        &mut conn,
        "dropping",
        name,
        &format!("DROP DATABASE IF EXISTS {name}"),
    )
    .await?;
    run(
        &mut conn,
        "creating",
        name,
        &format!("CREATE DATABASE {name}"),
    )
    .await?;
    Ok(format!("{base}/{name}"))
}

/// Drops the database `name` on the server `admin_url` reaches, if it exists, closing
/// whatever still uses it.
///
/// # Errors
/// [`DatabasesError`].
pub async fn drop(admin_url: &str, name: &str) -> Result<(), DatabasesError> {
    check_name(name)?;
    let mut conn = connect(admin_url).await?;
    run(
        &mut conn,
        "dropping",
        name,
        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    )
    .await
}

fn check_name(name: &str) -> Result<(), DatabasesError> {
    let plain = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        Ok(())
    } else {
        Err(DatabasesError::Name(name.to_string()))
    }
}

async fn connect(admin_url: &str) -> Result<sqlx::AnyConnection, DatabasesError> {
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(admin_url)
        .await
        .map_err(|source| DatabasesError::Connect {
            url: admin_url.to_string(),
            source,
        })
}

async fn run(
    conn: &mut sqlx::AnyConnection,
    doing: &'static str,
    name: &str,
    statement: &str,
) -> Result<(), DatabasesError> {
    sqlx::query(statement)
        .execute(conn)
        .await
        .map_err(|source| DatabasesError::Refused {
            doing,
            name: name.to_string(),
            source,
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn only_plain_names_go_into_a_statement() {
        for good in ["guestnet_bench_42", "a", "store_rules_0f3a"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1abc", "Bench", "a;DROP", "a b", "a-b", "\"x\""] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
