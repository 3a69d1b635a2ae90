//! Resource tags: createTags, deleteTags, listTags; the `tags` every tagged object shows, and
//! the `tags[i].key`/`tags[i].value` filter of the listings of tagged objects.
//!
//! Tags change nothing a router holds: a tag command's job ends in the transaction that
//! writes the tags.

use std::collections::{BTreeSet, HashMap};

use api_types::error::ApiError;
use api_types::params::Params;
use domain::actor::Caller;
use domain::ids::AccountId;
use domain::model::Purpose;
use serde_json::{json, Value};
use store::tags::{Tag, TagQuery};

use super::{owner, page, required, scope};
use crate::app::{store_error, ApiResult, App};

/// The resource types guestnet tags, as CloudStack names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResourceType {
    FirewallRule,
    PortForwardingRule,
    LoadBalancer,
    PublicIpAddress,
    Network,
    UserVm,
}

const TYPES: [ResourceType; 6] = [
    ResourceType::FirewallRule,
    ResourceType::PortForwardingRule,
    ResourceType::LoadBalancer,
    ResourceType::PublicIpAddress,
    ResourceType::Network,
    ResourceType::UserVm,
];

/// Longest key and value CloudStack's columns hold.
const MAX_LEN: usize = 255;

impl ResourceType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ResourceType::FirewallRule => "FirewallRule",
            ResourceType::PortForwardingRule => "PortForwardingRule",
            ResourceType::LoadBalancer => "LoadBalancer",
            ResourceType::PublicIpAddress => "PublicIpAddress",
            ResourceType::Network => "Network",
            ResourceType::UserVm => "UserVm",
        }
    }

    /// `resourcetype`, in any case, as CloudStack reads it.
    fn parse(s: &str) -> ApiResult<ResourceType> {
        TYPES
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                ApiError::invalid_parameter(format!(
                    "Invalid resourcetype {s}: guestnet tags {}",
                    TYPES.map(ResourceType::as_str).join(", ")
                ))
            })
    }

    /// The resource of this type with API id `uuid`, if the caller may see it: its internal
    /// id and owner.
    async fn resolve(self, app: &App, caller: &Caller, uuid: &str) -> ApiResult<(i64, i64)> {
        let db = &app.db;
        let found: Option<(i64, i64)> = match self {
            ResourceType::FirewallRule
            | ResourceType::PortForwardingRule
            | ResourceType::LoadBalancer => {
                let purpose = match self {
                    ResourceType::FirewallRule => Purpose::Firewall,
                    ResourceType::PortForwardingRule => Purpose::PortForwarding,
                    _ => Purpose::LoadBalancing,
                };
                store::lookups::rule_by_uuid(db, uuid)
                    .await
                    .map_err(store_error)?
                    .filter(|r| r.purpose == purpose)
                    .map(|r| (r.id.get(), r.account_id.get()))
            }
            ResourceType::PublicIpAddress => store::lookups::ip_by_uuid(db, uuid)
                .await
                .map_err(store_error)?
                .and_then(|ip| ip.account_id.map(|a| (ip.id.get(), a.get()))),
            ResourceType::Network => store::lookups::network_by_uuid(db, uuid)
                .await
                .map_err(store_error)?
                .map(|n| (n.id.get(), n.account_id.get())),
            ResourceType::UserVm => store::vms::by_uuid(db, uuid)
                .await
                .map_err(store_error)?
                .map(|v| (v.id.get(), v.account_id)),
        };
        found
            .filter(|(_, account)| caller.may_touch(AccountId::from(*account)))
            .ok_or_else(|| {
                ApiError::invalid_parameter(format!(
                    "Unable to find resource by id {uuid} and type {}",
                    self.as_str()
                ))
            })
    }
}

/// The key/value pairs of map parameter `tags`.
///
/// # Errors
/// 431 for an entry without a key or value, or one too long.
fn pairs(p: &Params, value_required: bool) -> ApiResult<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    for entry in p.map("tags") {
        let key = entry.get("key").map(|k| k.trim()).unwrap_or_default();
        if key.is_empty() {
            return Err(ApiError::invalid_parameter(
                "A tag's key is either null or empty: give tags[i].key",
            ));
        }
        let value = entry.get("value").cloned();
        if value_required && value.as_deref().is_none_or(str::is_empty) {
            return Err(ApiError::invalid_parameter(format!(
                "Value for the key {key} is either null or empty"
            )));
        }
        if key.chars().count() > MAX_LEN
            || value.as_ref().is_some_and(|v| v.chars().count() > MAX_LEN)
        {
            return Err(ApiError::invalid_parameter(format!(
                "Tag {key}: a key and a value hold at most {MAX_LEN} characters"
            )));
        }
        out.push((key.to_string(), value));
    }
    Ok(out)
}

/// The resources named by `resourcetype` and `resourceids`: type, and each one's API id,
/// internal id and owner.
async fn resources(
    app: &App,
    caller: &Caller,
    p: &Params,
) -> ApiResult<(ResourceType, Vec<(String, i64, i64)>)> {
    let kind = ResourceType::parse(required(p, "resourcetype")?)?;
    let ids = p.list("resourceids").unwrap_or_default();
    if ids.is_empty() {
        return Err(ApiError::missing_parameter(p.spec().name, "resourceids"));
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for uuid in ids {
        let uuid = uuid.trim().to_string();
        if !seen.insert(uuid.clone()) {
            continue;
        }
        let (id, account) = kind.resolve(app, caller, &uuid).await?;
        out.push((uuid, id, account));
    }
    Ok((kind, out))
}

/// Writes a tag command's job, already ended with `{"success": true}`, in `change`, commits
/// it and answers with the job.
async fn commit_ended(
    app: &App,
    change: store::ChangeTx,
    caller: &Caller,
    command: &'static str,
    kind: ResourceType,
    targets: &[(String, i64, i64)],
) -> ApiResult<Value> {
    let (event, verb) = match command {
        "createTags" => ("CREATE_TAGS", "creating tags on"),
        _ => ("DELETE_TAGS", "deleting tags of"),
    };
    let description = format!(
        "{verb} {} {}",
        kind.as_str(),
        targets
            .iter()
            .map(|(u, _, _)| u.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    crate::cmd::commit_ended(
        app,
        change,
        caller,
        crate::cmd::EndedJob {
            command,
            event,
            description: &description,
            resource_uuid: None,
            failure: "Failed to change tags",
        },
        &json!({"success": true}),
    )
    .await
}

/// createTags (async): every pair on every named resource; a key a resource carries already
/// is refused (431) and nothing is written.
pub(crate) async fn create(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let (kind, targets) = resources(app, caller, p).await?;
    let given = pairs(p, true)?;
    if given.is_empty() {
        return Err(ApiError::missing_parameter(p.spec().name, "tags"));
    }
    let mut keys = BTreeSet::new();
    for (k, _) in &given {
        if !keys.insert(k.as_str()) {
            return Err(ApiError::invalid_parameter(format!(
                "Tag key {k} is given twice"
            )));
        }
    }
    let customer = p
        .str("customer")
        .filter(|c| !c.is_empty())
        .map(str::to_string);
    let mut change = app.db.change(None).await.map_err(store_error)?;
    let ids: Vec<i64> = targets.iter().map(|(_, id, _)| *id).collect();
    let keys: Vec<&str> = keys.into_iter().collect();
    let taken = store::tags::existing_keys(change.conn(), kind.as_str(), &ids, &keys)
        .await
        .map_err(store_error)?;
    if let Some((id, key)) = taken.first() {
        let uuid = targets
            .iter()
            .find(|(_, i, _)| i == id)
            .map(|(u, _, _)| u.as_str())
            .unwrap_or_default();
        return Err(ApiError::invalid_parameter(format!(
            "Unable to create tags: {} {uuid} already has a tag with key {key}",
            kind.as_str()
        )));
    }
    let tags: Vec<Tag> = targets
        .iter()
        .flat_map(|(uuid, id, account)| {
            given.iter().map(|(k, v)| Tag {
                resource_type: kind.as_str().to_string(),
                resource_id: *id,
                resource_uuid: uuid.clone(),
                key: k.clone(),
                value: v.clone().unwrap_or_default(),
                account_id: *account,
                customer: customer.clone(),
            })
        })
        .collect();
    store::tags::insert(change.conn(), &tags)
        .await
        .map_err(store_error)?;
    commit_ended(app, change, caller, "createTags", kind, &targets).await
}

/// deleteTags (async): the named resources' tags that match one of `tags` (a key, and its
/// value when given), or all their tags without `tags`; 431 when none matches.
pub(crate) async fn delete(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let (kind, targets) = resources(app, caller, p).await?;
    let given = pairs(p, false)?;
    let ids: Vec<i64> = targets.iter().map(|(_, id, _)| *id).collect();
    let mut change = app.db.change(None).await.map_err(store_error)?;
    let gone = store::tags::delete(change.conn(), kind.as_str(), &ids, &given)
        .await
        .map_err(store_error)?;
    if gone == 0 {
        return Err(ApiError::invalid_parameter(
            "Unable to find any tags which conform to specified delete parameters",
        ));
    }
    commit_ended(app, change, caller, "deleteTags", kind, &targets).await
}

/// listTags: the caller's account's tags (a root admin's with `listall`, everyone's, or
/// `account`'s), by type, resource, key, value and customer.
pub(crate) async fn list(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let account = scope(app, caller, p).await?;
    let kind = match p.str("resourcetype").filter(|s| !s.is_empty()) {
        Some(t) => Some(ResourceType::parse(t)?),
        None => None,
    };
    let accounts = account.map(|a| vec![a]);
    let given = |n: &str| p.str(n).filter(|s| !s.is_empty());
    let q = TagQuery {
        accounts: accounts.as_deref(),
        resource_type: kind.map(ResourceType::as_str),
        resource_uuid: given("resourceid"),
        key: given("key"),
        value: given("value"),
        customer: given("customer"),
    };
    let mut tags = store::tags::list(&app.db, &q).await.map_err(store_error)?;
    if let Some(k) = given("keyword").map(str::to_lowercase) {
        tags.retain(|t| t.key.to_lowercase().contains(&k) || t.value.to_lowercase().contains(&k));
    }
    let mut owners = HashMap::new();
    let mut items = Vec::with_capacity(tags.len());
    for t in &tags {
        let own = match owners.get(&t.account_id) {
            Some(o) => o,
            None => {
                let o = owner(app, AccountId::from(t.account_id)).await?;
                owners.entry(t.account_id).or_insert(o)
            }
        };
        let mut v = t.short_json();
        v["account"] = json!(own.account);
        v["domainid"] = json!(own.domain_id);
        v["domain"] = json!(own.domain);
        v["domainpath"] = json!(own.domain_path);
        items.push(v);
    }
    Ok(page("tag", items, p.paging()))
}

/// Sets each listed object's `tags` (objects of `kind`, by their `id`).
pub(crate) async fn attach(app: &App, kind: ResourceType, items: &mut [Value]) -> ApiResult<()> {
    let uuids: Vec<String> = items
        .iter()
        .filter_map(|v| v["id"].as_str().map(str::to_string))
        .collect();
    if uuids.is_empty() {
        return Ok(());
    }
    let by_uuid = store::tags::by_uuids(&app.db, kind.as_str(), &uuids)
        .await
        .map_err(store_error)?;
    for v in items {
        let shown: Vec<Value> = v["id"]
            .as_str()
            .and_then(|u| by_uuid.get(u))
            .map(|ts| ts.iter().map(Tag::short_json).collect())
            .unwrap_or_default();
        v["tags"] = Value::Array(shown);
    }
    Ok(())
}

/// The `tags[i].key`/`tags[i].value` filter of a listing of `kind`: `None` without one, else
/// the API ids of the resources carrying one of the pairs (key and value both equal, as
/// CloudStack matches them).
///
/// # Errors
/// 431 for an entry without its key or value.
pub(crate) async fn filter(
    app: &App,
    p: &Params,
    kind: ResourceType,
) -> ApiResult<Option<BTreeSet<String>>> {
    let Some(pairs) = filter_pairs(p)? else {
        return Ok(None);
    };
    let found = store::tags::carrying(&app.db, kind.as_str(), &pairs)
        .await
        .map_err(store_error)?;
    Ok(Some(found))
}

/// The pairs of a listing's `tags` filter, when it has one.
///
/// # Errors
/// 431 for an entry without its key or value (CloudStack: "No value is passed in for key").
pub(crate) fn filter_pairs(p: &Params) -> ApiResult<Option<Vec<(String, String)>>> {
    if p.spec().param("tags").is_none() {
        return Ok(None);
    }
    let given = pairs(p, false)?;
    if given.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for (k, v) in given {
        let v = v.ok_or_else(|| {
            ApiError::invalid_parameter(format!("No value is passed in for key {k}"))
        })?;
        out.push((k, v));
    }
    Ok(Some(out))
}
