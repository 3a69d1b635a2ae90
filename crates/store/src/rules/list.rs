//! Listings of firewall and forwarding rules, rendered by the database: one page of objects
//! joined into one text, and how many rules match.

use domain::ids::AccountId;
use domain::model::{Purpose, Traffic};
use sqlx::Row;

use super::json::{listed_object, OBJECT_FROM};
use crate::db::Db;
use crate::error::StoreError;
use crate::filter::{self, Filter};

/// Which rules a listing shows, and which page of them.
#[derive(Debug, Clone)]
pub struct RuleQuery<'a> {
    /// The rules' purpose (never a balancer's: those are listed elsewhere).
    pub purpose: Purpose,
    /// The firewall rules' direction.
    pub traffic: Option<Traffic>,
    /// One rule, by uuid.
    pub uuid: Option<&'a str>,
    /// The rules of one public IP, by uuid.
    pub ip_uuid: Option<&'a str>,
    /// The rules of one network, by uuid.
    pub network_uuid: Option<&'a str>,
    /// The rules that send to one VM, by uuid.
    pub vm_uuid: Option<&'a str>,
    /// The rules carrying one of these tags (key, value), tagged as this resource type.
    pub tags: Option<(&'a str, &'a [(String, String)])>,
    /// The rules of one account.
    pub account: Option<AccountId>,
    /// Only shown (`true`) or hidden (`false`) rules.
    pub display: Option<bool>,
    /// A word found in the protocol, the uuid or the name, in any case.
    pub keyword: Option<&'a str>,
    /// Render the administrators' fields.
    pub admin: bool,
    /// At most this many rules (all with `None`).
    pub limit: Option<u64>,
    /// Skip this many rules first.
    pub offset: u64,
}

/// A page of rules' objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulePage {
    /// The page's objects as JSON texts joined with `,`, newest first.
    pub items: String,
    /// How many rules match, over every page.
    pub total: u64,
}

impl RuleQuery<'_> {
    fn filter(&self) -> Filter {
        let mut f = Filter::new();
        // Our own constants, written into the SQL as before, so the plan does not change.
        let none = std::iter::empty::<i64>;
        f.and(&format!("r.purpose = '{}'", self.purpose.as_str()), none());
        if let Some(t) = self.traffic {
            f.and(&format!("r.traffic_type = '{}'", t.as_str()), none());
        }
        if let Some(uuid) = self.uuid {
            f.and("r.uuid = $?", [uuid]);
        }
        if let Some(uuid) = self.ip_uuid {
            f.and("p.uuid = $?", [uuid]);
        }
        if let Some(uuid) = self.network_uuid {
            f.and("n.uuid = $?", [uuid]);
        }
        if let Some(uuid) = self.vm_uuid {
            f.and("v.uuid = $?", [uuid]);
        }
        if let Some((resource_type, pairs)) = self.tags {
            crate::tags::filter_condition(&mut f, resource_type, "r.id", pairs);
        }
        if let Some(a) = self.account {
            f.and("r.account_id = $?", [a.get()]);
        }
        if let Some(d) = self.display {
            f.and(&format!("r.display = {}", i64::from(d)), none());
        }
        if let Some(k) = self.keyword.filter(|k| !k.is_empty()) {
            let pattern = format!("%{}%", k.to_ascii_lowercase());
            f.and(
                "LOWER(r.protocol) LIKE $? OR LOWER(r.uuid) LIKE $? \
                 OR LOWER(COALESCE(r.name, '')) LIKE $?",
                [pattern.clone(), pattern.clone(), pattern],
            );
        }
        f
    }
}

/// The page of rules `q` asks for, newest first, with the number of all that match. The
/// count costs a second statement only when the page does not show that it holds them all.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn list(db: &Db, q: &RuleQuery<'_>) -> Result<RulePage, StoreError> {
    const W: &str = "listing rules";
    let f = q.filter();
    let object = listed_object(db.dialect(), q.purpose, q.admin);
    // A page needs the rows in order before it is cut; the whole list is ordered once, by
    // the aggregate.
    let limit = match q.limit {
        Some(n) => format!(" ORDER BY r.id DESC LIMIT {n} OFFSET {}", q.offset),
        None => String::new(),
    };
    // One row: the page's objects joined by the database, and how many there are.
    let sql = format!(
        "SELECT string_agg(j, ',' ORDER BY id DESC) AS items, COUNT(*) AS n FROM \
         (SELECT r.id AS id, {object} AS j FROM {OBJECT_FROM} {}{limit}) page",
        f.where_clause()
    );
    let row = f
        .bind(sqlx::query(&sql))
        .fetch_one(db.pool())
        .await
        .map_err(StoreError::db(W))?;
    let items: Option<String> = row.try_get("items").map_err(StoreError::db(W))?;
    let n = u64::try_from(row.try_get::<i64, _>("n").map_err(StoreError::db(W))?).unwrap_or(0);
    let total = if q.offset == 0 && q.limit.is_none_or(|size| n < size) {
        n
    } else {
        filter::count(db, OBJECT_FROM, &f).await?
    };
    Ok(RulePage {
        items: items.unwrap_or_default(),
        total,
    })
}
