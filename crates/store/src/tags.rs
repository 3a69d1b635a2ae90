//! Resource tags: a key and a value on a resource of one of the types CloudStack names
//! (`FirewallRule`, `PortForwardingRule`, `LoadBalancer`, `PublicIpAddress`, `Network`,
//! `UserVm`), kept by the resource's internal id. A rule's tags are also rendered into
//! `rules.tags` (the JSON array its object shows) whenever they change, in the same
//! transaction.

use std::collections::BTreeMap;

use serde_json::json;
use sqlx::{Any, Row, Transaction};

use crate::db::{now_ms, Db};
use crate::error::StoreError;
use crate::filter::Filter;

/// The tag types kept on rules.
pub const RULE_TYPES: [&str; 3] = ["FirewallRule", "PortForwardingRule", "LoadBalancer"];

/// One tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The tagged resource's type.
    pub resource_type: String,
    /// Its internal id.
    pub resource_id: i64,
    /// Its API id.
    pub resource_uuid: String,
    /// The key.
    pub key: String,
    /// The value.
    pub value: String,
    /// The resource's owner.
    pub account_id: i64,
    /// The customer it was made for, if any.
    pub customer: Option<String>,
}

impl Tag {
    /// As an object's `tags` list shows it (CloudStack's ResourceTagResponse, without the
    /// owner's names, which the listing adds).
    pub fn short_json(&self) -> serde_json::Value {
        let mut v = json!({
            "key": self.key,
            "value": self.value,
            "resourcetype": self.resource_type,
            "resourceid": self.resource_uuid,
        });
        if let Some(c) = &self.customer {
            v["customer"] = json!(c);
        }
        v
    }
}

fn tag(row: &sqlx::any::AnyRow) -> Result<Tag, StoreError> {
    let e = StoreError::db("reading a tag");
    Ok(Tag {
        resource_type: row.try_get("resource_type").map_err(e)?,
        resource_id: row.try_get("resource_id").map_err(e)?,
        resource_uuid: row.try_get("resource_uuid").map_err(e)?,
        key: row.try_get("tag_key").map_err(e)?,
        value: row.try_get("tag_value").map_err(e)?,
        account_id: row.try_get("account_id").map_err(e)?,
        customer: row.try_get("customer").map_err(e)?,
    })
}

const COLUMNS: &str =
    "resource_type, resource_id, resource_uuid, tag_key, tag_value, account_id, customer";

/// Which of `keys` the resources `ids` of `resource_type` already carry: (resource id, key)
/// pairs, one statement.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn existing_keys(
    tx: &mut Transaction<'_, Any>,
    resource_type: &str,
    ids: &[i64],
    keys: &[&str],
) -> Result<Vec<(i64, String)>, StoreError> {
    if ids.is_empty() || keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut f = Filter::new();
    f.and("resource_type = $?", [resource_type]);
    f.and_in("resource_id", ids);
    let marks = vec!["$?"; keys.len()].join(", ");
    f.and(&format!("tag_key IN ({marks})"), keys.iter().copied());
    let sql = format!(
        "SELECT resource_id, tag_key FROM resource_tags {} ORDER BY id",
        f.where_clause()
    );
    let rows = f
        .bind(sqlx::query(&sql))
        .fetch_all(&mut **tx)
        .await
        .map_err(StoreError::db("reading tags"))?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("resource_id")
                    .map_err(StoreError::db("reading tags"))?,
                r.try_get("tag_key")
                    .map_err(StoreError::db("reading tags"))?,
            ))
        })
        .collect()
}

/// Adds tags (every resource gets every pair), then renders the tags of tagged rules again.
///
/// # Errors
/// [`StoreError::Db`] (a key a resource already carries breaks the unique index).
pub async fn insert(tx: &mut Transaction<'_, Any>, tags: &[Tag]) -> Result<(), StoreError> {
    let now = now_ms();
    for t in tags {
        sqlx::query(&format!(
            "INSERT INTO resource_tags (uuid, {COLUMNS}, created) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(&t.resource_type)
        .bind(t.resource_id)
        .bind(&t.resource_uuid)
        .bind(&t.key)
        .bind(&t.value)
        .bind(t.account_id)
        .bind(t.customer.clone())
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::db("adding a tag"))?;
    }
    refresh_rules(
        tx,
        tags.iter()
            .map(|t| (t.resource_type.as_str(), t.resource_id)),
    )
    .await
}

/// Removes the tags of resources `ids` of `resource_type` that match one of `pairs` (a key,
/// and a value unless `None`), or all of their tags when `pairs` is empty; returns how many
/// went.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn delete(
    tx: &mut Transaction<'_, Any>,
    resource_type: &str,
    ids: &[i64],
    pairs: &[(String, Option<String>)],
) -> Result<u64, StoreError> {
    let mut gone = 0;
    for id in ids {
        if pairs.is_empty() {
            gone += sqlx::query(
                "DELETE FROM resource_tags WHERE resource_type = $1 AND resource_id = $2",
            )
            .bind(resource_type)
            .bind(*id)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::db("removing tags"))?
            .rows_affected();
        }
        for (key, value) in pairs {
            let q = match value {
                Some(v) => sqlx::query(
                    "DELETE FROM resource_tags WHERE resource_type = $1 AND resource_id = $2 \
                     AND tag_key = $3 AND tag_value = $4",
                )
                .bind(resource_type)
                .bind(*id)
                .bind(key.clone())
                .bind(v.clone()),
                None => sqlx::query(
                    "DELETE FROM resource_tags WHERE resource_type = $1 AND resource_id = $2 \
                     AND tag_key = $3",
                )
                .bind(resource_type)
                .bind(*id)
                .bind(key.clone()),
            };
            gone += q
                .execute(&mut **tx)
                .await
                .map_err(StoreError::db("removing tags"))?
                .rows_affected();
        }
    }
    refresh_rules(tx, ids.iter().map(|id| (resource_type, *id))).await?;
    Ok(gone)
}

/// Renders `rules.tags` again for the rules among `resources`.
async fn refresh_rules<'a>(
    tx: &mut Transaction<'_, Any>,
    resources: impl Iterator<Item = (&'a str, i64)>,
) -> Result<(), StoreError> {
    let mut rules: Vec<(String, i64)> = resources
        .filter(|(t, _)| RULE_TYPES.contains(t))
        .map(|(t, id)| (t.to_string(), id))
        .collect();
    rules.sort();
    rules.dedup();
    for (resource_type, id) in rules {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM resource_tags WHERE resource_type = $1 AND resource_id = $2 \
             ORDER BY id"
        ))
        .bind(&resource_type)
        .bind(id)
        .fetch_all(&mut **tx)
        .await
        .map_err(StoreError::db("reading a rule's tags"))?;
        let tags: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| tag(r).map(|t| t.short_json()))
            .collect::<Result<_, _>>()?;
        let text = (!tags.is_empty()).then(|| serde_json::Value::Array(tags).to_string());
        sqlx::query("UPDATE rules SET tags = $1 WHERE id = $2")
            .bind(text)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::db("rendering a rule's tags"))?;
    }
    Ok(())
}

/// The tags of the resources `ids` of `resource_type`, by resource id, oldest first.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn of(
    db: &Db,
    resource_type: &str,
    ids: &[i64],
) -> Result<BTreeMap<i64, Vec<Tag>>, StoreError> {
    let mut out: BTreeMap<i64, Vec<Tag>> = BTreeMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let mut f = Filter::new();
    f.and("resource_type = $?", [resource_type]);
    f.and_in("resource_id", ids);
    for row in crate::filter::page(db, COLUMNS, "resource_tags", &f, "id ASC", None, 0).await? {
        let t = tag(&row)?;
        out.entry(t.resource_id).or_default().push(t);
    }
    Ok(out)
}

/// The SQL condition (for [`Filter::and`]) that keeps resources of `resource_type` whose id,
/// in `id_column`, carries one of `pairs`, as CloudStack's `tags[i].key`/`tags[i].value`
/// filters match: any pair, key and value both equal.
pub fn filter_condition(
    f: &mut Filter,
    resource_type: &str,
    id_column: &str,
    pairs: &[(String, String)],
) {
    let any = vec!["(t.tag_key = $? AND t.tag_value = $?)"; pairs.len()].join(" OR ");
    let mut args = vec![resource_type.to_string()];
    for (k, v) in pairs {
        args.push(k.clone());
        args.push(v.clone());
    }
    f.and(
        &format!(
            "{id_column} IN (SELECT t.resource_id FROM resource_tags t \
             WHERE t.resource_type = $? AND ({any}))"
        ),
        args,
    );
}

/// Which tags a listing selects.
#[derive(Debug, Clone, Default)]
pub struct TagQuery<'a> {
    /// Only tags of resources of accounts in this list (`None`: every account).
    pub accounts: Option<&'a [i64]>,
    /// Only this type.
    pub resource_type: Option<&'a str>,
    /// Only the resource with this API id.
    pub resource_uuid: Option<&'a str>,
    /// Only this key.
    pub key: Option<&'a str>,
    /// Only this value.
    pub value: Option<&'a str>,
    /// Only this customer.
    pub customer: Option<&'a str>,
}

/// The tags `q` selects, oldest first.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn list(db: &Db, q: &TagQuery<'_>) -> Result<Vec<Tag>, StoreError> {
    let mut f = Filter::new();
    if let Some(a) = q.accounts {
        f.and_in("account_id", a);
    }
    if let Some(t) = q.resource_type {
        f.and("resource_type = $?", [t]);
    }
    if let Some(u) = q.resource_uuid {
        f.and("resource_uuid = $?", [u]);
    }
    if let Some(k) = q.key {
        f.and("tag_key = $?", [k]);
    }
    if let Some(v) = q.value {
        f.and("tag_value = $?", [v]);
    }
    if let Some(c) = q.customer {
        f.and("customer = $?", [c]);
    }
    crate::filter::page(db, COLUMNS, "resource_tags", &f, "id ASC", None, 0)
        .await?
        .iter()
        .map(tag)
        .collect()
}

/// The tags of the resources of `resource_type` with API ids `uuids`, by API id.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn by_uuids(
    db: &Db,
    resource_type: &str,
    uuids: &[String],
) -> Result<BTreeMap<String, Vec<Tag>>, StoreError> {
    let mut out: BTreeMap<String, Vec<Tag>> = BTreeMap::new();
    for chunk in uuids.chunks(500) {
        let mut f = Filter::new();
        f.and("resource_type = $?", [resource_type]);
        let marks = vec!["$?"; chunk.len()].join(", ");
        f.and(
            &format!("resource_uuid IN ({marks})"),
            chunk.iter().cloned(),
        );
        for row in crate::filter::page(db, COLUMNS, "resource_tags", &f, "id ASC", None, 0).await? {
            let t = tag(&row)?;
            out.entry(t.resource_uuid.clone()).or_default().push(t);
        }
    }
    Ok(out)
}

/// The API ids of the resources of `resource_type` carrying one of `pairs`.
///
/// # Errors
/// [`StoreError::Db`].
pub async fn carrying(
    db: &Db,
    resource_type: &str,
    pairs: &[(String, String)],
) -> Result<std::collections::BTreeSet<String>, StoreError> {
    let mut f = Filter::new();
    f.and("resource_type = $?", [resource_type]);
    let any = vec!["(tag_key = $? AND tag_value = $?)"; pairs.len()].join(" OR ");
    f.and(
        &format!("({any})"),
        pairs.iter().flat_map(|(k, v)| [k.clone(), v.clone()]),
    );
    crate::filter::page(db, "resource_uuid", "resource_tags", &f, "id ASC", None, 0)
        .await?
        .iter()
        .map(|r| {
            r.try_get::<String, _>("resource_uuid")
                .map_err(StoreError::db("reading tags"))
        })
        .collect()
}
