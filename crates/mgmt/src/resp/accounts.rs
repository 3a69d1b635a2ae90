//! Accounts, users, keys, events, agent tokens, hosts and resource limits in CloudStack's
//! shapes.

use serde_json::{json, Map, Value};

use super::date;
use domain::ids::UserId;
use domain::limits::{Domain, Resource};
use store::accounts::{AccountRecord, UserRecord};
use store::events::EventRecord;
use store::tokens::{HostRecord, TokenRecord};

fn role_type(account_type: i64) -> &'static str {
    match account_type {
        1 => "Admin",
        2 => "DomainAdmin",
        _ => "User",
    }
}

fn role_name(account_type: i64) -> &'static str {
    match account_type {
        1 => "Root Admin",
        2 => "Domain Admin",
        _ => "User",
    }
}

fn insert_some(m: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(key.into(), v);
    }
}

/// A user: UserResponse. The API key is shown; the secret key never is. `first_user` is the
/// one made at first start, shown as `isdefault`.
pub fn user(u: &UserRecord, first_user: Option<UserId>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(u.uuid));
    m.insert("username".into(), json!(u.username));
    m.insert("firstname".into(), json!(u.firstname));
    m.insert("lastname".into(), json!(u.lastname));
    m.insert("email".into(), json!(u.email));
    m.insert("created".into(), json!(date(u.created)));
    m.insert("state".into(), json!(u.state));
    m.insert("account".into(), json!(u.account_name));
    m.insert("accountid".into(), json!(u.account_uuid));
    m.insert("accounttype".into(), json!(u.account_type));
    m.insert("roletype".into(), json!(role_type(u.account_type)));
    m.insert("rolename".into(), json!(role_name(u.account_type)));
    m.insert("domainid".into(), json!(u.domain_uuid));
    m.insert("domain".into(), json!(u.domain_name));
    insert_some(&mut m, "apikey", u.api_key.as_ref().map(|k| json!(k)));
    m.insert("isdefault".into(), json!(Some(u.id) == first_user));
    Value::Object(m)
}

/// A domain: DomainResponse, at `level` below ROOT, with the domain above it, and for each
/// type in `usage` its limit (`Unlimited` for -1), what its accounts hold and what is left.
pub fn domain(
    d: &Domain,
    level: usize,
    parent: Option<&Domain>,
    has_child: bool,
    usage: &[(Resource, i64, i64)],
) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(d.uuid));
    m.insert("name".into(), json!(d.name));
    m.insert("path".into(), json!(d.path));
    m.insert("level".into(), json!(level));
    if let Some(up) = parent {
        m.insert("parentdomainid".into(), json!(up.uuid));
        m.insert("parentdomainname".into(), json!(up.name));
    }
    m.insert("haschild".into(), json!(has_child));
    m.insert("state".into(), json!("Active"));
    for (r, max, held) in usage {
        let prefix = match r {
            Resource::UserVm => "vm",
            Resource::PublicIp => "ip",
            Resource::Network => "network",
            Resource::NetworkRule => continue,
        };
        let (limit, available) = if *max < 0 {
            ("Unlimited".to_string(), "Unlimited".to_string())
        } else {
            (max.to_string(), (max - held).max(0).to_string())
        };
        m.insert(format!("{prefix}limit"), json!(limit));
        m.insert(format!("{prefix}total"), json!(held));
        m.insert(format!("{prefix}available"), json!(available));
    }
    Value::Object(m)
}

/// An account: AccountResponse, with its users.
pub fn account(a: &AccountRecord, users: Vec<Value>) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(a.uuid));
    m.insert("name".into(), json!(a.name));
    m.insert("accounttype".into(), json!(a.account_type));
    m.insert("roletype".into(), json!(role_type(a.account_type)));
    m.insert("rolename".into(), json!(role_name(a.account_type)));
    m.insert("domainid".into(), json!(a.domain_uuid));
    m.insert("domain".into(), json!(a.domain_name));
    m.insert("domainpath".into(), json!(a.domain_path));
    m.insert("state".into(), json!(a.state));
    m.insert("created".into(), json!(date(a.created)));
    m.insert("user".into(), Value::Array(users));
    Value::Object(m)
}

/// registerUserKeys' answer: the new pair, shown this once.
pub fn user_keys(api_key: &str, secret_key: &str) -> Value {
    json!({"userkeys": {"apikey": api_key, "secretkey": secret_key}})
}

/// An event: EventResponse.
pub fn event(e: &EventRecord) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(e.uuid));
    insert_some(&mut m, "username", e.username.as_ref().map(|u| json!(u)));
    m.insert("type".into(), json!(e.event_type));
    m.insert("level".into(), json!(e.level));
    m.insert("description".into(), json!(e.description));
    insert_some(&mut m, "account", e.account_name.as_ref().map(|a| json!(a)));
    insert_some(&mut m, "domainid", e.domain_uuid.as_ref().map(|d| json!(d)));
    insert_some(&mut m, "domain", e.domain_name.as_ref().map(|d| json!(d)));
    m.insert("created".into(), json!(date(e.created)));
    m.insert("state".into(), json!(e.state));
    insert_some(
        &mut m,
        "resourceid",
        e.resource_uuid.as_ref().map(|r| json!(r)),
    );
    Value::Object(m)
}

/// createAgentToken's token: the only answer that ever holds it.
pub fn new_token(uuid: &str, host: &str, host_uuid: &str, token: &str, created: i64) -> Value {
    json!({
        "id": uuid,
        "host": host,
        "hostid": host_uuid,
        "token": token,
        "created": date(created),
    })
}

/// A token's row as listAgentTokens shows it: without the token or its digest.
pub fn token(t: &TokenRecord) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(t.uuid));
    m.insert("host".into(), json!(t.host_name));
    m.insert("hostid".into(), json!(t.host_uuid));
    m.insert("created".into(), json!(date(t.created)));
    insert_some(&mut m, "revoked", t.revoked.map(|at| json!(date(at))));
    insert_some(&mut m, "lastused", t.last_used.map(|at| json!(date(at))));
    let state = if t.revoked.is_some() {
        "Revoked"
    } else {
        "Active"
    };
    m.insert("state".into(), json!(state));
    Value::Object(m)
}

/// A host: HostResponse, of type Routing, in `state`, in the zone `(uuid, name)`.
pub fn host(h: &HostRecord, state: &str, zone: (&str, &str)) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(h.uuid));
    m.insert("name".into(), json!(h.name));
    m.insert("state".into(), json!(state));
    m.insert("type".into(), json!("Routing"));
    m.insert("zoneid".into(), json!(zone.0));
    m.insert("zonename".into(), json!(zone.1));
    insert_some(
        &mut m,
        "managementserverid",
        h.server_name.as_ref().map(|s| json!(s)),
    );
    insert_some(
        &mut m,
        "managementserveraddress",
        h.server_address.as_ref().map(|a| json!(a)),
    );
    insert_some(&mut m, "lastpinged", h.seen.map(|at| json!(date(at))));
    m.insert("created".into(), json!(date(h.created)));
    insert_some(&mut m, "agentdriver", h.driver.as_ref().map(|d| json!(d)));
    m.insert("routers".into(), json!(h.routers));
    m.insert("epoch".into(), json!(h.epoch));
    Value::Object(m)
}

/// One limit: ResourceLimitResponse. `account` names the owner when it is an account; the
/// domain `(uuid, name)` is the owner's own or its account's.
pub fn limit(account: Option<&str>, domain: (&str, &str), r: Resource, max: i64) -> Value {
    let mut m = Map::new();
    insert_some(&mut m, "account", account.map(|a| json!(a)));
    m.insert("domainid".into(), json!(domain.0));
    m.insert("domain".into(), json!(domain.1));
    m.insert("resourcetype".into(), json!(r.number().to_string()));
    m.insert("resourcetypename".into(), json!(r.name()));
    m.insert("max".into(), json!(max));
    Value::Object(m)
}
