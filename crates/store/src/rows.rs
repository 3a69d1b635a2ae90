//! Reading a row's columns into typed values, for the modules of networks, addresses, ranges,
//! VMs, the catalogue and routers' listings.

use std::str::FromStr;

use sqlx::any::AnyRow;
use sqlx::{Any, Row};

use crate::error::StoreError;

/// A column read as `T`, or a database error while reading `what`.
pub(crate) fn get<'r, T>(row: &'r AnyRow, col: &str, what: &'static str) -> Result<T, StoreError>
where
    T: sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(col).map_err(StoreError::db(what))
}

/// A 0/1 column as a boolean.
pub(crate) fn flag(row: &AnyRow, col: &str, what: &'static str) -> Result<bool, StoreError> {
    Ok(get::<i64>(row, col, what)? != 0)
}

/// A text column parsed as `T` (an address, a CIDR); what does not parse is
/// [`StoreError::Corrupt`].
pub(crate) fn parsed<T: FromStr>(
    row: &AnyRow,
    table: &'static str,
    col: &'static str,
    what: &'static str,
) -> Result<T, StoreError> {
    let text: String = get(row, col, what)?;
    text.parse().map_err(|_| StoreError::Corrupt {
        table,
        column: col,
        value: text,
    })
}
