//! One builder for the dynamic filters of listings: conditions added one by one, each with
//! its own typed arguments, numbered in order.
//!
//! `$?` in a condition stands for its next argument; the builder numbers them (`$1`, `$2`…)
//! in the order they are added, so a condition never has to know how many came before it.
//! Values always go as arguments: the only text a condition adds is the caller's own SQL.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, Row};

use crate::db::Db;
use crate::error::StoreError;

/// A typed argument of a condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// An integer.
    Int(i64),
    /// A text.
    Text(String),
}

impl From<i64> for Arg {
    fn from(i: i64) -> Arg {
        Arg::Int(i)
    }
}

impl From<&str> for Arg {
    fn from(s: &str) -> Arg {
        Arg::Text(s.to_string())
    }
}

impl From<String> for Arg {
    fn from(s: String) -> Arg {
        Arg::Text(s)
    }
}

/// Conditions joined with `AND`, and their arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    conditions: String,
    args: Vec<Arg>,
}

impl Filter {
    /// No condition: everything.
    pub fn new() -> Filter {
        Filter::default()
    }

    /// Adds ` AND (cond)`, where each `$?` in `cond` takes the next of `args`. A `$?` without
    /// an argument left is kept as written (a mistake the database then reports).
    pub fn and<I>(&mut self, cond: &str, args: I) -> &mut Filter
    where
        I: IntoIterator,
        I::Item: Into<Arg>,
    {
        let mut args = args.into_iter().map(Into::into);
        self.conditions.push_str(" AND (");
        for (i, part) in cond.split("$?").enumerate() {
            if i > 0 {
                match args.next() {
                    Some(a) => {
                        self.args.push(a);
                        self.conditions.push_str(&format!("${}", self.args.len()));
                    }
                    None => self.conditions.push_str("$?"),
                }
            }
            self.conditions.push_str(part);
        }
        self.conditions.push(')');
        self
    }

    /// Adds ` AND column IN (…)` over integer ids; no id matches nothing.
    pub fn and_in(&mut self, column: &str, ids: &[i64]) -> &mut Filter {
        if ids.is_empty() {
            self.conditions.push_str(" AND (1 = 0)");
            return self;
        }
        let marks = vec!["$?"; ids.len()].join(", ");
        self.and(&format!("{column} IN ({marks})"), ids.iter().copied())
    }

    /// `WHERE 1 = 1` and the conditions, to follow a `FROM` clause.
    pub fn where_clause(&self) -> String {
        format!("WHERE 1 = 1{}", self.conditions)
    }

    /// The arguments, in order.
    pub fn args(&self) -> &[Arg] {
        &self.args
    }

    /// Binds the arguments to `q`, a query over [`Filter::where_clause`].
    pub fn bind<'q>(
        &'q self,
        mut q: Query<'q, Any, AnyArguments<'q>>,
    ) -> Query<'q, Any, AnyArguments<'q>> {
        for a in &self.args {
            q = match a {
                Arg::Int(i) => q.bind(*i),
                Arg::Text(s) => q.bind(s.as_str()),
            };
        }
        q
    }
}

/// How many rows of `from` (a `FROM` clause) match `filter`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn count(db: &Db, from: &str, filter: &Filter) -> Result<u64, StoreError> {
    let sql = format!("SELECT COUNT(*) AS n FROM {from} {}", filter.where_clause());
    let n: i64 = filter
        .bind(sqlx::query(&sql))
        .fetch_one(db.pool())
        .await
        .and_then(|r| r.try_get("n"))
        .map_err(StoreError::db("counting a listing"))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// One page of `columns` from `from` matching `filter`, in `order`: `limit` rows (all with
/// `None`) after skipping `offset`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn page(
    db: &Db,
    columns: &str,
    from: &str,
    filter: &Filter,
    order: &str,
    limit: Option<u64>,
    offset: u64,
) -> Result<Vec<AnyRow>, StoreError> {
    let tail = match limit {
        Some(n) => format!(" LIMIT {n} OFFSET {offset}"),
        None if offset > 0 => format!(" OFFSET {offset}"),
        None => String::new(),
    };
    let sql = format!(
        "SELECT {columns} FROM {from} {} ORDER BY {order}{tail}",
        filter.where_clause()
    );
    filter
        .bind(sqlx::query(&sql))
        .fetch_all(db.pool())
        .await
        .map_err(StoreError::db("reading a listing"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_numbered_in_the_order_conditions_are_added() {
        let mut f = Filter::new();
        f.and("a = $?", [1_i64])
            .and("b LIKE $? OR c = $?", ["x%", "y"])
            .and_in("d", &[4, 5]);
        assert_eq!(
            f.where_clause(),
            "WHERE 1 = 1 AND (a = $1) AND (b LIKE $2 OR c = $3) AND (d IN ($4, $5))"
        );
        assert_eq!(
            f.args(),
            &[
                Arg::Int(1),
                Arg::Text("x%".into()),
                Arg::Text("y".into()),
                Arg::Int(4),
                Arg::Int(5)
            ]
        );
    }

    #[test]
    fn no_ids_match_nothing() {
        let mut f = Filter::new();
        f.and_in("d", &[]);
        assert_eq!(f.where_clause(), "WHERE 1 = 1 AND (1 = 0)");
        assert!(f.args().is_empty());
    }
}
