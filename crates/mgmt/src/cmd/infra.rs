//! Zones, offerings, templates, networks, public IPs and ranges, VMs and routers: what the rules
//! stand on.
//!
//! Choices where CloudStack's behaviour does not carry over:
//! - One zone (the server's [`crate::app::Site`]); any other `zoneid` is an unknown id.
//! - createNetwork implements the network at once (router up, first generation applied) and
//!   answers with state `Implemented`. If the router cannot be brought up, everything the call
//!   wrote is removed again and the answer is 530 with the reason, so a failed create leaves
//!   nothing behind for the client to clean up.
//! - Guest CIDRs are RFC 1918 networks of prefix /8 to /30, never overlapping a public range
//!   (the router refuses that) nor another network of the same owner; networks of different
//!   owners may overlap (each has its own bridge). Without gateway/netmask the lowest /24 of
//!   10.1.0.0/16 that no network uses is taken.
//! - A VM has one NIC and a name of 1–32 characters of `[A-Za-z0-9_-]`, unique among its
//!   account's VMs (another account may use the same name). Its lab namespace is named after
//!   its id, and `guestnet lab exec vm:NAME[@ACCOUNT]` finds it by name. The default name is
//!   `VM-` followed by the first 29 hex digits of the VM's id. VMs are always expunged:
//!   destroyVirtualMachine removes them.
//! - deleteNetwork refuses a network that VMs still use, unless a root admin passes
//!   `forced=true` (then the VMs are destroyed with it).
//! - Admin-only commands (createVlanIpRange, listVlanIpRanges) answer users with 432, as
//!   CloudStack does for commands not available to the caller. listRouters shows users the
//!   routers of their own networks (CloudStack shows them to admins only).
//! - listTemplates follows CloudStack's filters: the built-in template is featured, public and
//!   the admin's, so `featured`, `executable` and `all` show it, `self`/`selfexecutable` only to
//!   the admin, and `community` (public but not featured) and `sharedexecutable` never; `all` is
//!   for admins only.
//! - Projects and tags do not exist here: a `projectid` (other than -1) is an unknown id, and
//!   a `tags` filter matches nothing.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use api_types::error::{ApiError, ApiErrorCode, CsErrorCode};
use api_types::params::Params;
use ipnet::Ipv4Net;
use serde_json::{json, Map, Value};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::limits::{self, Resource};
use super::{accepted, begin, network_by_id, owner, page, queued, required, scope, unknown};
use crate::app::{internal, ApiResult, App};
use crate::bootstrap::{insert_public_range, PublicRange};
use crate::resp::{self, date, IpContext, Owner};
use domain::actor::Caller;
use domain::job::{Kind, NewJob, Outcome, Payload};
use domain::model::NetworkRow;
use domain::model::RouterState;
use store::db::{now_ms, Dialect};
use store::rules::{IP_COLUMNS, NETWORK_COLUMNS};

// ------------------------------------------------------------------------------------------
// Small helpers.

/// A value bound to a dynamic query.
enum Arg {
    Int(i64),
    Text(String),
}

/// A `SELECT` with conditions added one by one; `$?` in a condition is its next argument.
struct Select {
    sql: String,
    args: Vec<Arg>,
}

impl Select {
    fn new(base: &str) -> Select {
        Select {
            sql: format!("{base} WHERE 1 = 1"),
            args: Vec::new(),
        }
    }

    fn and(&mut self, cond: &str, args: Vec<Arg>) {
        let mut args = args.into_iter();
        self.sql.push_str(" AND (");
        for (i, part) in cond.split("$?").enumerate() {
            if i > 0 {
                if let Some(a) = args.next() {
                    self.args.push(a);
                    self.sql.push_str(&format!("${}", self.args.len()));
                }
            }
            self.sql.push_str(part);
        }
        self.sql.push(')');
    }

    async fn fetch(&self, app: &App, order: &str) -> ApiResult<Vec<AnyRow>> {
        let sql = format!("{} ORDER BY {order}", self.sql);
        let mut q = sqlx::query(&sql);
        for a in &self.args {
            q = match a {
                Arg::Int(i) => q.bind(*i),
                Arg::Text(s) => q.bind(s.clone()),
            };
        }
        q.fetch_all(app.db.pool()).await.map_err(internal)
    }
}

/// Whose items a list shows.
enum Owners {
    /// Nobody's (a filter nothing here can match).
    Nobody,
    /// Everyone's.
    Everyone,
    /// Those matching a condition (with its arguments).
    Only(String, Vec<Arg>),
}

pub(crate) fn given<'a>(p: &'a Params, name: &str) -> Option<&'a str> {
    p.spec().param(name)?;
    p.str(name).map(str::trim).filter(|v| !v.is_empty())
}

/// The ownership filter of a list, on the account id column `col`: projects match nothing; a
/// root admin may name a domain (optionally with its subdomains) or an account; otherwise
/// [`scope`] decides.
async fn owners(app: &App, caller: &Caller, p: &Params, col: &str) -> ApiResult<Owners> {
    if given(p, "projectid").is_some_and(|v| v != "-1") {
        return Ok(Owners::Nobody);
    }
    if caller.admin {
        if let Some(domain_uuid) = given(p, "domainid") {
            let row = sqlx::query("SELECT id, path FROM domains WHERE uuid = $1")
                .bind(domain_uuid)
                .fetch_optional(app.db.pool())
                .await
                .map_err(internal)?
                .ok_or_else(|| unknown(p, "domainid"))?;
            let domain_id: i64 = row.try_get("id").map_err(internal)?;
            let path: String = row.try_get("path").map_err(internal)?;
            if let Some(name) = given(p, "account") {
                let id: i64 =
                    sqlx::query("SELECT id FROM accounts WHERE name = $1 AND domain_id = $2")
                        .bind(name)
                        .bind(domain_id)
                        .fetch_optional(app.db.pool())
                        .await
                        .map_err(internal)?
                        .ok_or_else(|| {
                            ApiError::invalid_parameter(format!(
                                "Unable to find account {name} in domain {domain_uuid}"
                            ))
                        })?
                        .try_get("id")
                        .map_err(internal)?;
                return Ok(Owners::Only(format!("{col} = $?"), vec![Arg::Int(id)]));
            }
            let recursive =
                p.spec().param("isrecursive").is_some() && p.bool("isrecursive") == Some(true);
            return Ok(if recursive {
                Owners::Only(
                    format!(
                        "{col} IN (SELECT a.id FROM accounts a JOIN domains d ON d.id = a.domain_id \
                         WHERE d.id = $? OR d.path LIKE $?)"
                    ),
                    vec![Arg::Int(domain_id), Arg::Text(format!("{path}/%"))],
                )
            } else {
                Owners::Only(
                    format!("{col} IN (SELECT id FROM accounts WHERE domain_id = $?)"),
                    vec![Arg::Int(domain_id)],
                )
            });
        }
    }
    Ok(match scope(app, caller, p).await? {
        Some(account) => Owners::Only(format!("{col} = $?"), vec![Arg::Int(account)]),
        None => Owners::Everyone,
    })
}

/// Applies an ownership filter; false when nothing can match.
fn restrict(sel: &mut Select, owners: Owners) -> bool {
    match owners {
        Owners::Nobody => false,
        Owners::Everyone => true,
        Owners::Only(cond, args) => {
            sel.and(&cond, args);
            true
        }
    }
}

/// A `zoneid` (list filter or argument) must be the server's zone.
pub(crate) fn zone_param(app: &App, p: &Params, name: &str) -> ApiResult<()> {
    match given(p, name) {
        Some(z) if z != app.site.zone_uuid => Err(unknown(p, name)),
        _ => Ok(()),
    }
}

fn zone(app: &App) -> (&str, &str) {
    (app.site.zone_uuid.as_str(), app.site.zone_name.as_str())
}

/// Admin-only commands answer everyone else as CloudStack answers a command the caller may not
/// use.
pub(crate) fn admin_only(caller: &Caller) -> ApiResult<()> {
    if caller.admin {
        Ok(())
    } else {
        Err(ApiError::new(
            ApiErrorCode::UnsupportedAction,
            Some(CsErrorCode::UnavailableCommand),
            "The given command does not exist or it is not available for user",
        ))
    }
}

pub(crate) fn keyword(p: &Params) -> Option<String> {
    given(p, "keyword").map(str::to_lowercase)
}

pub(crate) fn contains(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(needle)
}

async fn owner_of(app: &App, cache: &mut HashMap<i64, Owner>, account_id: i64) -> ApiResult<Owner> {
    if let Some(o) = cache.get(&account_id) {
        return Ok(o.clone());
    }
    let o = owner(app, account_id).await?;
    cache.insert(account_id, o.clone());
    Ok(o)
}

fn payload(outcome: Outcome, event: &str, what: String, failure: &str) -> Payload {
    Payload {
        outcome,
        event: event.to_string(),
        what,
        failure: failure.to_string(),
        target: None,
        undo: None,
    }
}

/// The account a create acts for: the caller's, or (root admins) the account named by
/// `account` (and `domainid`). Users may only name themselves.
async fn acting_for(app: &App, caller: &Caller, p: &Params) -> ApiResult<i64> {
    let Some(name) = given(p, "account") else {
        return Ok(caller.account_id);
    };
    let domain = given(p, "domainid");
    if !caller.admin {
        if name == caller.account_name && domain.is_none_or(|d| d == caller.domain_uuid) {
            return Ok(caller.account_id);
        }
        return Err(ApiError::permission_denied(format!(
            "Account {} may not act for account {name}",
            caller.account_name
        )));
    }
    let row = match domain {
        Some(d) => {
            sqlx::query(
                "SELECT a.id FROM accounts a JOIN domains d ON d.id = a.domain_id \
                 WHERE a.name = $1 AND d.uuid = $2",
            )
            .bind(name)
            .bind(d)
            .fetch_optional(app.db.pool())
            .await
        }
        None => {
            sqlx::query("SELECT id FROM accounts WHERE name = $1 ORDER BY id LIMIT 1")
                .bind(name)
                .fetch_optional(app.db.pool())
                .await
        }
    }
    .map_err(internal)?
    .ok_or_else(|| {
        ApiError::invalid_parameter(match domain {
            Some(d) => format!("Unable to find account {name} in domain {d}"),
            None => format!("Unable to find account {name}"),
        })
    })?;
    row.try_get("id").map_err(internal)
}

/// Whether the network has a deleteNetwork job pending.
async fn being_deleted(app: &App, network_id: i64) -> ApiResult<bool> {
    Ok(sqlx::query(
        "SELECT id FROM jobs WHERE network_id = $1 AND kind = $2 AND status = $3 LIMIT 1",
    )
    .bind(network_id)
    .bind(Kind::DeleteNetwork.as_str())
    .bind(domain::job::JobStatus::Pending.code())
    .fetch_optional(app.db.pool())
    .await
    .map_err(internal)?
    .is_some())
}

async fn usable_network(app: &App, net: &NetworkRow) -> ApiResult<()> {
    if being_deleted(app, net.id).await? {
        return Err(ApiError::invalid_parameter(format!(
            "Network {} is being deleted",
            net.uuid
        )));
    }
    Ok(())
}

fn parse_ip(name: &str, s: &str) -> ApiResult<Ipv4Addr> {
    s.trim().parse().map_err(|_| {
        ApiError::invalid_parameter(format!("Invalid {name} {s}: not an IPv4 address"))
    })
}

/// A netmask's prefix length; the mask's bits must be contiguous.
fn netmask_prefix(s: &str) -> ApiResult<u8> {
    let mask = parse_ip("netmask", s)?;
    let m = u32::from(mask);
    if m.count_ones() != m.leading_ones() {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid netmask {s}: its one bits must be contiguous"
        )));
    }
    u8::try_from(m.leading_ones()).map_err(internal)
}

/// Whether `ip` is a host address of `net` (not its network or broadcast address).
fn is_host(ip: Ipv4Addr, net: Ipv4Net) -> bool {
    net.contains(&ip) && (net.prefix_len() >= 31 || (ip != net.network() && ip != net.broadcast()))
}

fn nets_overlap(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn net_meets_range(net: &Ipv4Net, start: Ipv4Addr, end: Ipv4Addr) -> bool {
    u32::from(net.network()) <= u32::from(end) && u32::from(start) <= u32::from(net.broadcast())
}

fn is_private(net: &Ipv4Net) -> bool {
    [
        Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8),
        Ipv4Net::new(Ipv4Addr::new(172, 16, 0, 0), 12),
        Ipv4Net::new(Ipv4Addr::new(192, 168, 0, 0), 16),
    ]
    .into_iter()
    .flatten()
    .any(|r| r.contains(net))
}

/// A MAC address made from the guest address: `02:00:` and its four bytes.
fn mac_of(ip: Ipv4Addr) -> String {
    let [a, b, c, d] = ip.octets();
    format!("02:00:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

// ------------------------------------------------------------------------------------------
// Zones, offerings, templates.

/// listZones: the server's one zone.
pub(crate) async fn list_zones(app: &App, _caller: &Caller, p: &Params) -> ApiResult<Value> {
    let site = &app.site;
    let kw = keyword(p);
    let matches = given(p, "id").is_none_or(|id| id == site.zone_uuid)
        && given(p, "name").is_none_or(|n| n == site.zone_name)
        && kw.as_deref().is_none_or(|k| contains(&site.zone_name, k));
    let mut items = Vec::new();
    if matches {
        items.push(json!({
            "id": site.zone_uuid,
            "name": site.zone_name,
            "description": "guestnet zone: isolated guest networks, each served by its own router",
            "networktype": "Advanced",
            "allocationstate": "Enabled",
            "dns1": "",
            "guestcidraddress": "10.1.0.0/16",
            "securitygroupsenabled": false,
            "localstorageenabled": false,
            "tags": [],
        }));
    }
    Ok(page("zone", items, p.paging()))
}

/// listNetworkOfferings: the two offerings made at first start.
pub(crate) async fn list_network_offerings(
    app: &App,
    _caller: &Caller,
    p: &Params,
) -> ApiResult<Value> {
    zone_param(app, p, "zoneid")?;
    let rows = sqlx::query(
        "SELECT uuid, name, display_text, egress_default_allow, is_default, created \
         FROM network_offerings ORDER BY id",
    )
    .fetch_all(app.db.pool())
    .await
    .map_err(internal)?;
    let kw = keyword(p);
    let type_ok = given(p, "guestiptype").is_none_or(|t| t.eq_ignore_ascii_case("Isolated"));
    let state_ok = given(p, "state").is_none_or(|s| s.eq_ignore_ascii_case("Enabled"));
    let mut items = Vec::new();
    for r in &rows {
        let uuid: String = r.try_get("uuid").map_err(internal)?;
        let name: String = r.try_get("name").map_err(internal)?;
        let text: String = r.try_get("display_text").map_err(internal)?;
        if !type_ok
            || !state_ok
            || given(p, "id").is_some_and(|id| id != uuid)
            || given(p, "name").is_some_and(|n| n != name)
            || kw
                .as_deref()
                .is_some_and(|k| !contains(&name, k) && !contains(&text, k))
        {
            continue;
        }
        items.push(json!({
            "id": uuid,
            "name": name,
            "displaytext": text,
            "traffictype": "Guest",
            "guestiptype": "Isolated",
            "state": "Enabled",
            "isdefault": store::db::flag(r, "is_default").map_err(internal)?,
            "specifyvlan": false,
            "specifyipranges": false,
            "conservemode": true,
            "availability": "Optional",
            // The lab does not shape traffic: -1, no limit.
            "networkrate": -1,
            "ispersistent": false,
            "egressdefaultpolicy": store::db::flag(r, "egress_default_allow").map_err(internal)?,
            "forvpc": false,
            "service": resp::services(),
            "created": date(r.try_get("created").map_err(internal)?),
        }));
    }
    Ok(page("networkoffering", items, p.paging()))
}

/// listServiceOfferings.
pub(crate) async fn list_service_offerings(
    app: &App,
    _caller: &Caller,
    p: &Params,
) -> ApiResult<Value> {
    let rows = sqlx::query(
        "SELECT uuid, name, display_text, cpu_number, cpu_speed, memory, created \
         FROM service_offerings ORDER BY id",
    )
    .fetch_all(app.db.pool())
    .await
    .map_err(internal)?;
    let kw = keyword(p);
    let mut items = Vec::new();
    for r in &rows {
        let uuid: String = r.try_get("uuid").map_err(internal)?;
        let name: String = r.try_get("name").map_err(internal)?;
        let text: String = r.try_get("display_text").map_err(internal)?;
        if given(p, "id").is_some_and(|id| id != uuid)
            || given(p, "name").is_some_and(|n| n != name)
            || kw
                .as_deref()
                .is_some_and(|k| !contains(&name, k) && !contains(&text, k))
        {
            continue;
        }
        items.push(json!({
            "id": uuid,
            "name": name,
            "displaytext": text,
            "cpunumber": r.try_get::<i64, _>("cpu_number").map_err(internal)?,
            "cpuspeed": r.try_get::<i64, _>("cpu_speed").map_err(internal)?,
            "memory": r.try_get::<i64, _>("memory").map_err(internal)?,
            "created": date(r.try_get("created").map_err(internal)?),
            "storagetype": "shared",
            "offerha": false,
            "limitcpuuse": false,
            "isvolatile": false,
            "iscustomized": false,
            "issystem": false,
            "defaultuse": false,
        }));
    }
    Ok(page("serviceoffering", items, p.paging()))
}

/// The first root-admin account (owner of the built-in template).
async fn admin_account(app: &App) -> ApiResult<i64> {
    sqlx::query("SELECT id FROM accounts WHERE account_type = 1 ORDER BY id LIMIT 1")
        .fetch_one(app.db.pool())
        .await
        .map_err(internal)?
        .try_get("id")
        .map_err(internal)
}

/// listTemplates: `templatefilter` decides, as CloudStack's filters do for a featured public
/// template owned by the admin.
pub(crate) async fn list_templates(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let filter = required(p, "templatefilter")?.trim().to_ascii_lowercase();
    let shown = match filter.as_str() {
        "featured" | "executable" => true,
        "self" | "selfexecutable" => caller.admin,
        "community" | "sharedexecutable" => false,
        "all" if caller.admin => true,
        "all" => {
            return Err(ApiError::invalid_parameter(
                "Filter all can be specified by admin only",
            ))
        }
        other => {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid templatefilter {other}: use featured, self, selfexecutable, \
                 sharedexecutable, executable, community or all"
            )))
        }
    };
    zone_param(app, p, "zoneid")?;
    if !shown {
        return Ok(page("template", Vec::new(), p.paging()));
    }
    let rows =
        sqlx::query("SELECT uuid, name, display_text, os_type, created FROM templates ORDER BY id")
            .fetch_all(app.db.pool())
            .await
            .map_err(internal)?;
    let admin = owner(app, admin_account(app).await?).await?;
    let kw = keyword(p);
    let (zone_id, zone_name) = zone(app);
    let mut items = Vec::new();
    for r in &rows {
        let uuid: String = r.try_get("uuid").map_err(internal)?;
        let name: String = r.try_get("name").map_err(internal)?;
        let text: String = r.try_get("display_text").map_err(internal)?;
        if given(p, "id").is_some_and(|id| id != uuid)
            || given(p, "name").is_some_and(|n| n != name)
            || kw
                .as_deref()
                .is_some_and(|k| !contains(&name, k) && !contains(&text, k))
        {
            continue;
        }
        items.push(json!({
            "id": uuid,
            "name": name,
            "displaytext": text,
            "ispublic": true,
            "isready": true,
            "isfeatured": true,
            "crossZones": false,
            "isextractable": false,
            "passwordenabled": false,
            "sshkeyenabled": false,
            "isdynamicallyscalable": false,
            "ostypename": r.try_get::<String, _>("os_type").map_err(internal)?,
            "account": admin.account,
            "domainid": admin.domain_id,
            "domain": admin.domain,
            "zoneid": zone_id,
            "zonename": zone_name,
            "status": "Download Complete",
            "templatetype": "BUILTIN",
            "hypervisor": "Lab",
            "created": date(r.try_get("created").map_err(internal)?),
            "tags": [],
        }));
    }
    Ok(page("template", items, p.paging()))
}

// ------------------------------------------------------------------------------------------
// Networks.

/// Gateway and CIDR from `gateway` and `netmask`, when given.
fn requested_cidr(p: &Params) -> ApiResult<Option<(Ipv4Net, Ipv4Addr)>> {
    match (given(p, "gateway"), given(p, "netmask")) {
        (None, None) => Ok(None),
        (Some(_), None) | (None, Some(_)) => Err(ApiError::invalid_parameter(
            "gateway and netmask must be given together",
        )),
        (Some(g), Some(m)) => {
            let gateway = parse_ip("gateway", g)?;
            let prefix = netmask_prefix(m)?;
            if !(8..=30).contains(&prefix) {
                return Err(ApiError::invalid_parameter(format!(
                    "Invalid netmask {m}: a guest network is a /8 to a /30"
                )));
            }
            let cidr = Ipv4Net::new(gateway, prefix).map_err(internal)?.trunc();
            if !is_host(gateway, cidr) {
                return Err(ApiError::invalid_parameter(format!(
                    "Invalid gateway {g}: not a host address of {cidr}"
                )));
            }
            if !is_private(&cidr) {
                return Err(ApiError::invalid_parameter(format!(
                    "Invalid guest network {cidr}: it must be inside 10.0.0.0/8, 172.16.0.0/12 \
                     or 192.168.0.0/16"
                )));
            }
            Ok(Some((cidr, gateway)))
        }
    }
}

/// The lowest /24 of 10.1.0.0/16 that meets no network and no public range.
fn pick_cidr(
    networks: &[(i64, Ipv4Net)],
    ranges: &[(Ipv4Addr, Ipv4Addr)],
) -> Option<(Ipv4Net, Ipv4Addr)> {
    (0..=255u8).find_map(|third| {
        let cidr = Ipv4Net::new(Ipv4Addr::new(10, 1, third, 0), 24).ok()?;
        let free = !networks.iter().any(|(_, n)| nets_overlap(n, &cidr))
            && !ranges.iter().any(|(s, e)| net_meets_range(&cidr, *s, *e));
        free.then_some((cidr, Ipv4Addr::new(10, 1, third, 1)))
    })
}

async fn all_cidrs(tx: &mut Transaction<'_, Any>) -> ApiResult<Vec<(i64, Ipv4Net)>> {
    let rows = sqlx::query("SELECT account_id, cidr FROM networks")
        .fetch_all(&mut **tx)
        .await
        .map_err(internal)?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some((
                r.try_get("account_id").ok()?,
                r.try_get::<String, _>("cidr").ok()?.parse().ok()?,
            ))
        })
        .collect())
}

async fn all_ranges(tx: &mut Transaction<'_, Any>) -> ApiResult<Vec<(Ipv4Addr, Ipv4Addr)>> {
    let rows = sqlx::query("SELECT start_ip, end_ip FROM vlan_ranges")
        .fetch_all(&mut **tx)
        .await
        .map_err(internal)?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            Some((
                r.try_get::<String, _>("start_ip").ok()?.parse().ok()?,
                r.try_get::<String, _>("end_ip").ok()?.parse().ok()?,
            ))
        })
        .collect())
}

/// A public IP taken in a transaction: id, uuid, address.
struct Taken {
    id: i64,
    uuid: String,
    address: String,
}

/// Finds a Free public IP of the zone: `wanted`, or the lowest. `Ok(None)` when none is free.
async fn find_free_ip(
    app: &App,
    tx: &mut Transaction<'_, Any>,
    wanted: Option<Ipv4Addr>,
) -> ApiResult<Option<Taken>> {
    // PostgreSQL: concurrent takers lock (or skip) rows; SQLite has one writer anyway.
    let (lock, skip) = match app.db.dialect() {
        Dialect::Postgres => (" FOR UPDATE", " SKIP LOCKED"),
        Dialect::Sqlite => ("", ""),
    };
    let row = match wanted {
        Some(ip) => {
            let row = sqlx::query(&format!(
                "SELECT id, uuid, address, state FROM public_ips WHERE address = $1 \
                 AND zone_id = $2{lock}"
            ))
            .bind(ip.to_string())
            .bind(app.site.zone_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(internal)?
            .ok_or_else(|| {
                ApiError::invalid_parameter(format!(
                    "Unable to use ip address {ip}: it is in no public range of zone {}",
                    app.site.zone_name
                ))
            })?;
            if row.try_get::<String, _>("state").map_err(internal)? != "Free" {
                return Err(ApiError::invalid_parameter(format!(
                    "Unable to use ip address {ip}: it is already in use"
                )));
            }
            Some(row)
        }
        None => sqlx::query(&format!(
            "SELECT id, uuid, address FROM public_ips WHERE zone_id = $1 AND state = 'Free' \
             ORDER BY address_num LIMIT 1{lock}{skip}"
        ))
        .bind(app.site.zone_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(internal)?,
    };
    row.map(|r| {
        Ok(Taken {
            id: r.try_get("id").map_err(internal)?,
            uuid: r.try_get("uuid").map_err(internal)?,
            address: r.try_get("address").map_err(internal)?,
        })
    })
    .transpose()
}

/// What a taken IP becomes.
struct Allocation {
    state: &'static str,
    account_id: i64,
    network_id: i64,
    source_nat: bool,
    job_id: Option<i64>,
}

async fn allocate_ip(tx: &mut Transaction<'_, Any>, ip: &Taken, a: &Allocation) -> ApiResult<()> {
    let done = sqlx::query(
        "UPDATE public_ips SET state = $1, account_id = $2, network_id = $3, source_nat = $4, \
         job_id = $5, applied = 0, allocated = $6 WHERE id = $7 AND state = 'Free'",
    )
    .bind(a.state)
    .bind(a.account_id)
    .bind(a.network_id)
    .bind(i64::from(a.source_nat))
    .bind(a.job_id)
    .bind(now_ms())
    .bind(ip.id)
    .execute(&mut **tx)
    .await
    .map_err(internal)?
    .rows_affected();
    if done != 1 {
        return Err(ApiError::internal(format!(
            "ip address {} was taken by a concurrent request; try again",
            ip.address
        )));
    }
    Ok(())
}

fn no_free_ip(app: &App) -> ApiError {
    ApiError::insufficient_address_capacity(format!(
        "Insufficient address capacity: no free public ip address in zone {}",
        app.site.zone_name
    ))
}

/// The offering named by `networkofferingid`: id, uuid, name.
async fn offering_param(app: &App, p: &Params) -> ApiResult<(i64, String, String)> {
    let uuid = required(p, "networkofferingid")?;
    let row = sqlx::query("SELECT id, uuid, name FROM network_offerings WHERE uuid = $1")
        .bind(uuid)
        .fetch_optional(app.db.pool())
        .await
        .map_err(internal)?
        .ok_or_else(|| unknown(p, "networkofferingid"))?;
    Ok((
        row.try_get("id").map_err(internal)?,
        row.try_get("uuid").map_err(internal)?,
        row.try_get("name").map_err(internal)?,
    ))
}

/// createNetwork (sync): the network, its router (placed on a host) and its source-NAT address
/// in one transaction; then the router is brought up and given its first generation by the
/// server holding its host, and the call returns when it is Running (or removes the network
/// again and fails with the reason).
pub(crate) async fn create_network(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let name = required(p, "name")?.to_string();
    let display = given(p, "displaytext").unwrap_or(&name).to_string();
    required(p, "zoneid")?;
    zone_param(app, p, "zoneid")?;
    let (offering_id, offering_uuid, offering_name) = offering_param(app, p).await?;
    let account_id = acting_for(app, caller, p).await?;
    let requested = requested_cidr(p)?;
    let network_uuid = uuid::Uuid::new_v4().to_string();
    let host = crate::hosts::place(&app.db, &app.hosts)
        .await
        .map_err(internal)?
        .ok_or_else(|| {
            ApiError::new(
                ApiErrorCode::InsufficientCapacity,
                Some(CsErrorCode::InsufficientCapacity),
                "Unable to create a deployment for the network: no host has a connected agent",
            )
        })?;
    let network_id = {
        let _w = app.db.write_lock().await;
        let mut tx = begin(app).await?;
        limits::take(
            app,
            &mut tx,
            account_id,
            &[(Resource::Network, 1), (Resource::PublicIp, 1)],
        )
        .await?;
        let networks = all_cidrs(&mut tx).await?;
        let ranges = all_ranges(&mut tx).await?;
        let (cidr, gateway) = match requested {
            Some((cidr, gateway)) => {
                if let Some((s, e)) = ranges.iter().find(|(s, e)| net_meets_range(&cidr, *s, *e)) {
                    return Err(ApiError::invalid_parameter(format!(
                        "Invalid guest network {cidr}: it overlaps the public range {s}-{e}"
                    )));
                }
                if let Some((_, other)) = networks
                    .iter()
                    .find(|(a, n)| *a == account_id && nets_overlap(n, &cidr))
                {
                    return Err(ApiError::invalid_parameter(format!(
                        "Invalid guest network {cidr}: it overlaps {other}, another network of \
                         the same account"
                    )));
                }
                (cidr, gateway)
            }
            None => pick_cidr(&networks, &ranges).ok_or_else(|| {
                ApiError::insufficient_address_capacity(
                    "Insufficient address capacity: every /24 of 10.1.0.0/16 is in use; give \
                     gateway and netmask",
                )
            })?,
        };
        let ip = find_free_ip(app, &mut tx, None)
            .await?
            .ok_or_else(|| no_free_ip(app))?;
        let now = now_ms();
        let network_id: i64 = sqlx::query(
            "INSERT INTO networks (uuid, name, display_text, account_id, zone_id, offering_id, \
             cidr, gateway, state, created) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'Implemented', $9) RETURNING id",
        )
        .bind(&network_uuid)
        .bind(&name)
        .bind(&display)
        .bind(account_id)
        .bind(app.site.zone_id)
        .bind(offering_id)
        .bind(cidr.to_string())
        .bind(gateway.to_string())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(internal)?
        .try_get("id")
        .map_err(internal)?;
        let router_name = format!("r-{network_id}-VM");
        sqlx::query(
            "INSERT INTO routers (uuid, name, network_id, host, state, desired_generation, \
             applied_generation, created) VALUES ($1, $2, $3, $4, 'Starting', 0, 0, $5)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(&router_name)
        .bind(network_id)
        .bind(&host)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        allocate_ip(
            &mut tx,
            &ip,
            &Allocation {
                state: "Allocated",
                account_id,
                network_id,
                source_nat: true,
                job_id: None,
            },
        )
        .await?;
        store::events::event(
            &mut tx,
            caller.account_id,
            caller.user_id,
            "NETWORK.CREATE",
            "INFO",
            "Completed",
            &format!(
                "Created network {name} ({cidr}) with source NAT address {}",
                ip.address
            ),
            Some(&network_uuid),
            None,
        )
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        network_id
    };
    app.doorbell.ring_network(network_id);
    if let Err(reason) = router_started(app, network_id).await {
        // Take back what was written: a failed create leaves nothing behind.
        if let Err(e) = store::networks::delete_network(&app.db, network_id).await {
            tracing::warn!(network = network_id, error = %e, "removing a network that failed to start");
        }
        let _w = app.db.write_lock().await;
        let mut tx = begin(app).await?;
        store::events::event(
            &mut tx,
            caller.account_id,
            caller.user_id,
            "NETWORK.CREATE",
            "ERROR",
            "Completed",
            &format!("Network {name} was removed again: its router could not start: {reason}"),
            Some(&network_uuid),
            None,
        )
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        return Err(ApiError::internal(format!(
            "Unable to implement network {name}: {reason}"
        )));
    }
    let net = network_by_id(app, network_id).await?;
    let own = owner(app, net.account_id).await?;
    Ok(resp::wrap(
        "network",
        resp::network(
            &net,
            &own,
            (&offering_uuid, &offering_name),
            zone(app),
            caller.admin,
        ),
    ))
}

/// Waits until a new network's router is Running; its reason when it ends in Error or does not
/// start within the apply timeout (and a little more).
async fn router_started(app: &App, network_id: i64) -> Result<(), String> {
    let deadline = std::time::Instant::now() + app.hosts.apply_timeout() + Duration::from_secs(10);
    let mut wait = Duration::from_millis(1);
    loop {
        match store::routers::router_of(&app.db, network_id.into())
            .await
            .map_err(|e| crate::app::chain(&e))?
        {
            None => return Err("the router is gone".into()),
            Some(r) if r.state == RouterState::Running => return Ok(()),
            Some(r) if r.state == RouterState::Error => {
                return Err(r
                    .last_error
                    .unwrap_or_else(|| "the router did not start".into()))
            }
            Some(r) => {
                if std::time::Instant::now() > deadline {
                    return Err(format!(
                        "router {} on host {} did not start within {} s",
                        r.name,
                        r.host,
                        (app.hosts.apply_timeout() + Duration::from_secs(10)).as_secs()
                    ));
                }
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_millis(20));
    }
}

/// listNetworks.
pub(crate) async fn list_networks(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    zone_param(app, p, "zoneid")?;
    super::visible_filter(app, caller, p, "id", "networks").await?;
    let type_ok = given(p, "type")
        .is_none_or(|t| t.eq_ignore_ascii_case("isolated") || t.eq_ignore_ascii_case("all"));
    let mut sel = Select::new(&format!(
        "SELECT {NETWORK_COLUMNS}, o.uuid AS offering_uuid, o.name AS offering_name \
         FROM networks n JOIN network_offerings o ON o.id = n.offering_id"
    ));
    if let Some(id) = given(p, "id") {
        sel.and("n.uuid = $?", vec![Arg::Text(id.to_string())]);
    }
    if let Some(name) = given(p, "name") {
        sel.and("n.name = $?", vec![Arg::Text(name.to_string())]);
    }
    let who = owners(app, caller, p, "n.account_id").await?;
    if !type_ok || !restrict(&mut sel, who) {
        return Ok(page("network", Vec::new(), p.paging()));
    }
    let rows = sel.fetch(app, "n.id").await?;
    let kw = keyword(p);
    let mut cache = HashMap::new();
    let mut items = Vec::new();
    for r in &rows {
        let n = store::rules::network(r).map_err(internal)?;
        if kw
            .as_deref()
            .is_some_and(|k| !contains(&n.name, k) && !contains(&n.display_text, k))
        {
            continue;
        }
        let o_uuid: String = r.try_get("offering_uuid").map_err(internal)?;
        let o_name: String = r.try_get("offering_name").map_err(internal)?;
        let own = owner_of(app, &mut cache, n.account_id).await?;
        items.push(resp::network(
            &n,
            &own,
            (&o_uuid, &o_name),
            zone(app),
            caller.admin,
        ));
    }
    Ok(page("network", items, p.paging()))
}

/// The refusal of deleteNetwork while VMs sit on the network (CloudStack's network
/// orchestrator refuses to destroy a network with user VMs that are not expunged, and the job
/// fails with 530 "Failed to delete network").
fn network_in_use(net: &NetworkRow, vms: &[String]) -> ApiError {
    const SHOWN: usize = 10;
    let mut names = vms
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if vms.len() > SHOWN {
        names.push_str(&format!(" and {} more", vms.len() - SHOWN));
    }
    ApiError::internal(format!(
        "Failed to delete network {} ({}): {} virtual machine(s) still use it ({names}); destroy \
         them first, or (root admins) delete with forced=true to destroy them with the network",
        net.name,
        net.uuid,
        vms.len()
    ))
}

/// deleteNetwork (async): everything of the network is revoked by one job; the runner removes
/// the rows, the VMs and the router once the router has dropped them.
///
/// A network that VMs still use is refused (530, nothing written), as CloudStack refuses it,
/// unless a root admin passes `forced=true`: then its VMs are destroyed with it. For anyone
/// else `forced` is ignored, as CloudStack ignores an admins-only parameter.
pub(crate) async fn delete_network(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let net = super::network_param(app, caller, p, "id").await?;
    usable_network(app, &net).await?;
    let forced = caller.admin && p.bool("forced") == Some(true);
    let job_uuid = {
        let _w = app.db.write_lock().await;
        let mut tx = begin(app).await?;
        app.db
            .lock_network(&mut tx, net.id)
            .await
            .map_err(internal)?;
        // Under the network's lock: a deployVirtualMachine on it waits for this commit, and
        // then finds the network being deleted.
        if !forced {
            let vms: Vec<String> =
                sqlx::query("SELECT name FROM vms WHERE network_id = $1 ORDER BY id")
                    .bind(net.id)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(internal)?
                    .iter()
                    .map(|r| r.try_get("name"))
                    .collect::<Result<_, _>>()
                    .map_err(internal)?;
            if !vms.is_empty() {
                return Err(network_in_use(&net, &vms));
            }
        }
        let (job_id, job_uuid) = store::jobs::insert(
            &mut tx,
            caller,
            NewJob {
                command: "deleteNetwork",
                kind: Kind::DeleteNetwork,
                network_id: Some(net.id.into()),
                payload: payload(
                    Outcome::Success,
                    "NETWORK.DELETE",
                    format!("deleting network {}", net.name),
                    "Failed to delete network",
                ),
                instance_type: Some("Network"),
                instance_uuid: Some(&net.uuid),
            },
        )
        .await
        .map_err(internal)?;
        let job_id = job_id.get();
        for sql in [
            "UPDATE lb_members SET state = 'Revoke', job_id = $1 \
             WHERE lb_id IN (SELECT id FROM rules WHERE network_id = $2)",
            "UPDATE lb_policies SET state = 'Revoke', job_id = $1 \
             WHERE lb_id IN (SELECT id FROM rules WHERE network_id = $2)",
            "UPDATE rules SET state = 'Revoke', job_id = $1 WHERE network_id = $2",
            // The source-NAT address stays until the end: a router config needs one. It is
            // freed with the network's rows once the router has dropped everything else.
            "UPDATE public_ips SET state = 'Releasing', job_id = $1 \
             WHERE network_id = $2 AND source_nat = 0",
        ] {
            sqlx::query(sql)
                .bind(job_id)
                .bind(net.id)
                .execute(&mut *tx)
                .await
                .map_err(internal)?;
        }
        sqlx::query("UPDATE networks SET state = 'Destroy' WHERE id = $1")
            .bind(net.id)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        store::events::scheduled(
            &mut tx,
            caller,
            "NETWORK.DELETE",
            &format!("deleting network {} ({})", net.name, net.uuid),
            Some(&net.uuid),
            &job_uuid,
        )
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        job_uuid
    };
    app.doorbell.ring_network(net.id);
    Ok(queued(&job_uuid))
}

// ------------------------------------------------------------------------------------------
// Public IPs.

fn ip_select() -> String {
    let cols = IP_COLUMNS
        .split(", ")
        .map(|c| format!("p.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT {cols}, v.uuid AS vlan_uuid, v.vlan AS vlan_name, n.uuid AS net_uuid, \
         n.name AS net_name, (SELECT COUNT(*) FROM rules r WHERE r.ip_id = p.id \
         AND r.state <> 'Revoke') AS rule_count \
         FROM public_ips p JOIN vlan_ranges v ON v.id = p.vlan_range_id \
         LEFT JOIN networks n ON n.id = p.network_id"
    )
}

async fn ip_item(
    app: &App,
    cache: &mut HashMap<i64, Owner>,
    r: &AnyRow,
    admin: bool,
) -> ApiResult<Value> {
    let ip = store::rules::ip(r).map_err(internal)?;
    let owner = match ip.account_id {
        Some(a) => Some(owner_of(app, cache, a).await?),
        None => None,
    };
    let net_uuid: Option<String> = r.try_get("net_uuid").map_err(internal)?;
    let net_name: Option<String> = r.try_get("net_name").map_err(internal)?;
    let cx = IpContext {
        zone: (app.site.zone_uuid.clone(), app.site.zone_name.clone()),
        owner,
        vlan_uuid: r.try_get("vlan_uuid").map_err(internal)?,
        vlan_name: r.try_get("vlan_name").map_err(internal)?,
        network: net_uuid.zip(net_name),
        has_rules: r.try_get::<i64, _>("rule_count").map_err(internal)? > 0,
    };
    Ok(resp::ip_address(&ip, &cx, admin))
}

/// The `jobresult` of associateIpAddress: `{"ipaddress": {...}}`.
pub(crate) async fn ip_result(app: &App, id: i64) -> ApiResult<Value> {
    let mut sel = Select::new(&ip_select());
    sel.and("p.id = $?", vec![Arg::Int(id)]);
    let rows = sel.fetch(app, "p.id").await?;
    let row = rows
        .first()
        .ok_or_else(|| ApiError::internal(format!("ip address {id} is gone")))?;
    let item = ip_item(app, &mut HashMap::new(), row, true).await?;
    Ok(resp::wrap("ipaddress", item))
}

/// associateIpAddress (async create): the address is taken now (Allocating) and reaches the
/// router with the job.
pub(crate) async fn associate_ip(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    if given(p, "networkid").is_none() {
        return Err(ApiError::invalid_parameter(
            "networkid is required: every public ip address here belongs to a guest network",
        ));
    }
    zone_param(app, p, "zoneid")?;
    let net = super::network_param(app, caller, p, "networkid").await?;
    usable_network(app, &net).await?;
    if given(p, "account").is_some() {
        let acting = acting_for(app, caller, p).await?;
        if acting != net.account_id {
            return Err(ApiError::invalid_parameter(format!(
                "Network {} does not belong to account {}",
                net.uuid,
                given(p, "account").unwrap_or_default()
            )));
        }
    }
    let wanted = given(p, "ipaddress")
        .map(|s| parse_ip("ipaddress", s))
        .transpose()?;
    let (ip_uuid, job_uuid) = {
        let _w = app.db.write_lock().await;
        let mut tx = begin(app).await?;
        app.db
            .lock_network(&mut tx, net.id)
            .await
            .map_err(internal)?;
        limits::take(app, &mut tx, net.account_id, &[(Resource::PublicIp, 1)]).await?;
        let ip = find_free_ip(app, &mut tx, wanted)
            .await?
            .ok_or_else(|| no_free_ip(app))?;
        let (job_id, job_uuid) = store::jobs::insert(
            &mut tx,
            caller,
            NewJob {
                command: "associateIpAddress",
                kind: Kind::Change,
                network_id: Some(net.id.into()),
                payload: payload(
                    Outcome::Ip { id: ip.id },
                    "NET.IPASSIGN",
                    format!(
                        "associating ip address {} with network {}",
                        ip.address, net.name
                    ),
                    "Failed to associate ip address",
                ),
                instance_type: Some("IpAddress"),
                instance_uuid: Some(&ip.uuid),
            },
        )
        .await
        .map_err(internal)?;
        let job_id = job_id.get();
        allocate_ip(
            &mut tx,
            &ip,
            &Allocation {
                state: "Allocating",
                account_id: net.account_id,
                network_id: net.id,
                source_nat: false,
                job_id: Some(job_id),
            },
        )
        .await?;
        store::events::scheduled(
            &mut tx,
            caller,
            "NET.IPASSIGN",
            &format!(
                "associating ip address {} with network {}",
                ip.address, net.uuid
            ),
            Some(&ip.uuid),
            &job_uuid,
        )
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        (ip.uuid, job_uuid)
    };
    app.doorbell.ring_network(net.id);
    Ok(accepted(&ip_uuid, &job_uuid))
}

/// disassociateIpAddress (async): the rules on the address are revoked and the address is
/// released by one job.
pub(crate) async fn disassociate_ip(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let ip = if given(p, "id").is_some() {
        super::ip_param(app, caller, p, "id").await?
    } else if let Some(addr) = given(p, "ipaddress") {
        let not_found = || ApiError::invalid_parameter(format!("Unable to find ip address {addr}"));
        let row = sqlx::query(&format!(
            "SELECT {IP_COLUMNS} FROM public_ips WHERE address = $1"
        ))
        .bind(addr)
        .fetch_optional(app.db.pool())
        .await
        .map_err(internal)?
        .ok_or_else(not_found)?;
        let ip = store::rules::ip(&row).map_err(internal)?;
        match ip.account_id {
            Some(a) if caller.may_touch(a) => ip,
            None if caller.admin => ip,
            _ => return Err(not_found()),
        }
    } else {
        return Err(ApiError::invalid_parameter(
            "Either id or ipaddress must be given",
        ));
    };
    let Some(network_id) = ip.network_id.filter(|_| ip.state != "Free") else {
        return Err(ApiError::invalid_parameter(format!(
            "ip address {} is not allocated",
            ip.address
        )));
    };
    if ip.source_nat {
        return Err(ApiError::invalid_parameter(format!(
            "Can't release source nat ip address {}",
            ip.address
        )));
    }
    if ip.state == "Releasing" {
        return Err(ApiError::invalid_parameter(format!(
            "ip address {} is already being released",
            ip.address
        )));
    }
    let job_uuid = {
        let _w = app.db.write_lock().await;
        let mut tx = begin(app).await?;
        app.db
            .lock_network(&mut tx, network_id)
            .await
            .map_err(internal)?;
        let (job_id, job_uuid) = store::jobs::insert(
            &mut tx,
            caller,
            NewJob {
                command: "disassociateIpAddress",
                kind: Kind::Change,
                network_id: Some(network_id.into()),
                payload: payload(
                    Outcome::Success,
                    "NET.IPRELEASE",
                    format!("releasing ip address {}", ip.address),
                    "Failed to disassociate ip address",
                ),
                instance_type: Some("IpAddress"),
                instance_uuid: Some(&ip.uuid),
            },
        )
        .await
        .map_err(internal)?;
        let job_id = job_id.get();
        for sql in [
            "UPDATE lb_members SET state = 'Revoke', job_id = $1 \
             WHERE lb_id IN (SELECT id FROM rules WHERE ip_id = $2)",
            "UPDATE lb_policies SET state = 'Revoke', job_id = $1 \
             WHERE lb_id IN (SELECT id FROM rules WHERE ip_id = $2)",
            "UPDATE rules SET state = 'Revoke', job_id = $1 WHERE ip_id = $2",
            "UPDATE public_ips SET state = 'Releasing', job_id = $1 WHERE id = $2",
        ] {
            sqlx::query(sql)
                .bind(job_id)
                .bind(ip.id)
                .execute(&mut *tx)
                .await
                .map_err(internal)?;
        }
        store::events::scheduled(
            &mut tx,
            caller,
            "NET.IPRELEASE",
            &format!("releasing ip address {}", ip.address),
            Some(&ip.uuid),
            &job_uuid,
        )
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        job_uuid
    };
    app.doorbell.ring_network(network_id);
    Ok(queued(&job_uuid))
}

/// A network filter of a list: visible to the caller, or 431.
async fn network_filter(
    app: &App,
    caller: &Caller,
    p: &Params,
    name: &str,
) -> ApiResult<Option<i64>> {
    if given(p, name).is_none() {
        return Ok(None);
    }
    Ok(Some(super::network_param(app, caller, p, name).await?.id))
}

/// listPublicIpAddresses.
pub(crate) async fn list_ips(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    zone_param(app, p, "zoneid")?;
    super::visible_filter(app, caller, p, "id", "public_ips").await?;
    let mut sel = Select::new(&ip_select());
    if let Some(id) = given(p, "id") {
        sel.and("p.uuid = $?", vec![Arg::Text(id.to_string())]);
    }
    if let Some(a) = given(p, "ipaddress") {
        sel.and("p.address = $?", vec![Arg::Text(a.to_string())]);
    }
    for name in ["associatednetworkid", "networkid"] {
        if let Some(n) = network_filter(app, caller, p, name).await? {
            sel.and("p.network_id = $?", vec![Arg::Int(n)]);
        }
    }
    let allocated_only = p.bool("allocatedonly").unwrap_or(true);
    if allocated_only {
        sel.and("p.state <> 'Free'", Vec::new());
    }
    if let Some(snat) = p.bool("issourcenat") {
        sel.and("p.source_nat = $?", vec![Arg::Int(i64::from(snat))]);
    }
    if let Some(v) = given(p, "vlanid") {
        sel.and("v.uuid = $?", vec![Arg::Text(v.to_string())]);
    }
    let mut nothing = !p.map("tags").is_empty();
    if let Some(s) = given(p, "state") {
        match ["Free", "Allocating", "Allocated", "Releasing"]
            .into_iter()
            .find(|k| k.eq_ignore_ascii_case(s))
        {
            Some(k) => sel.and("p.state = $?", vec![Arg::Text(k.to_string())]),
            None => nothing = true,
        }
    }
    match owners(app, caller, p, "p.account_id").await? {
        Owners::Nobody => nothing = true,
        Owners::Everyone => {}
        Owners::Only(cond, args) => {
            if caller.admin && !allocated_only {
                sel.and(&format!("{cond} OR p.state = 'Free'"), args);
            } else {
                sel.and(&cond, args);
            }
        }
    }
    if nothing {
        return Ok(page("publicipaddress", Vec::new(), p.paging()));
    }
    let rows = sel.fetch(app, "p.id").await?;
    let kw = keyword(p);
    let mut cache = HashMap::new();
    let mut items = Vec::new();
    for r in &rows {
        if let Some(k) = kw.as_deref() {
            let addr: String = r.try_get("address").map_err(internal)?;
            if !contains(&addr, k) {
                continue;
            }
        }
        items.push(ip_item(app, &mut cache, r, caller.admin).await?);
    }
    Ok(page("publicipaddress", items, p.paging()))
}

// ------------------------------------------------------------------------------------------
// Public ranges.

fn range_json(r: &AnyRow, zone_uuid: &str) -> ApiResult<Value> {
    let get = |c: &str| r.try_get::<String, _>(c).map_err(internal);
    let (start, end) = (get("start_ip")?, get("end_ip")?);
    Ok(json!({
        "id": get("uuid")?,
        "forvirtualnetwork": true,
        "zoneid": zone_uuid,
        "vlan": get("vlan")?,
        "gateway": get("gateway")?,
        "netmask": get("netmask")?,
        "startip": start,
        "endip": end,
        "description": format!("{start}-{end}"),
        "forsystemvms": false,
    }))
}

const RANGE_COLUMNS: &str = "id, uuid, zone_id, vlan, gateway, netmask, start_ip, end_ip";

/// The most addresses one range may hold.
const MAX_RANGE: u32 = 65_536;

/// createVlanIpRange (root admins): a public range and one Free row per address.
pub(crate) async fn create_vlan_range(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    admin_only(caller)?;
    zone_param(app, p, "zoneid")?;
    if ["networkid", "account", "domainid"]
        .iter()
        .any(|n| given(p, n).is_some())
    {
        return Err(ApiError::invalid_parameter(
            "Public ranges here serve every guest network of the zone; they cannot be \
             dedicated to a network, an account or a domain",
        ));
    }
    if p.bool("forvirtualnetwork") == Some(false) {
        return Err(ApiError::invalid_parameter(
            "Public ranges here are for routed guest networks: forvirtualnetwork must be true",
        ));
    }
    let start = parse_ip("startip", required(p, "startip")?)?;
    let end = match given(p, "endip") {
        Some(e) => parse_ip("endip", e)?,
        None => start,
    };
    let first = sqlx::query(
        "SELECT gateway, netmask FROM vlan_ranges WHERE zone_id = $1 ORDER BY id LIMIT 1",
    )
    .bind(app.site.zone_id)
    .fetch_optional(app.db.pool())
    .await
    .map_err(internal)?;
    let existing = |c: &str| -> Option<String> { first.as_ref()?.try_get(c).ok() };
    let gateway_s = given(p, "gateway")
        .map(str::to_string)
        .or_else(|| existing("gateway"))
        .ok_or_else(|| ApiError::missing_parameter(p.spec().name, "gateway"))?;
    let netmask_s = given(p, "netmask")
        .map(str::to_string)
        .or_else(|| existing("netmask"))
        .ok_or_else(|| ApiError::missing_parameter(p.spec().name, "netmask"))?;
    let gateway = parse_ip("gateway", &gateway_s)?;
    let prefix = netmask_prefix(&netmask_s)?;
    let netmask = parse_ip("netmask", &netmask_s)?;
    if !(8..=30).contains(&prefix) {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid netmask {netmask_s}: a public segment is a /8 to a /30"
        )));
    }
    let subnet = Ipv4Net::new(gateway, prefix).map_err(internal)?.trunc();
    if !is_host(gateway, subnet) {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid gateway {gateway}: not a host address of {subnet}"
        )));
    }
    let (s, e) = (u32::from(start), u32::from(end));
    if s > e {
        return Err(ApiError::invalid_parameter(format!(
            "startip {start} is greater than endip {end}"
        )));
    }
    if e - s >= MAX_RANGE {
        return Err(ApiError::invalid_parameter(format!(
            "The range {start}-{end} holds {} addresses; at most {MAX_RANGE} are allowed",
            u64::from(e - s) + 1
        )));
    }
    for ip in [start, end] {
        if !is_host(ip, subnet) {
            return Err(ApiError::invalid_parameter(format!(
                "The range {start}-{end} is not inside the segment {subnet} of gateway {gateway}"
            )));
        }
    }
    if (s..=e).contains(&u32::from(gateway)) {
        return Err(ApiError::invalid_parameter(format!(
            "The range {start}-{end} contains its gateway {gateway}"
        )));
    }
    let vlan = given(p, "vlan").unwrap_or("untagged").to_string();
    let range_id = {
        let _w = app.db.write_lock().await;
        let mut tx = begin(app).await?;
        for (os, oe) in all_ranges(&mut tx).await? {
            if s <= u32::from(oe) && u32::from(os) <= e {
                return Err(ApiError::invalid_parameter(format!(
                    "The range {start}-{end} overlaps the existing range {os}-{oe}"
                )));
            }
        }
        for (_, net) in all_cidrs(&mut tx).await? {
            if net_meets_range(&net, start, end) {
                return Err(ApiError::invalid_parameter(format!(
                    "The range {start}-{end} overlaps the guest network {net}"
                )));
            }
        }
        let range = PublicRange {
            vlan,
            gateway,
            netmask,
            start,
            end,
        };
        let (range_id, range_uuid) = insert_public_range(&mut tx, app.site.zone_id, &range)
            .await
            .map_err(internal)?;
        store::events::event(
            &mut tx,
            caller.account_id,
            caller.user_id,
            "VLAN.IP.RANGE.CREATE",
            "INFO",
            "Completed",
            &format!("Created public range {start}-{end}"),
            Some(&range_uuid),
            None,
        )
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        range_id
    };
    let row = sqlx::query(&format!(
        "SELECT {RANGE_COLUMNS} FROM vlan_ranges WHERE id = $1"
    ))
    .bind(range_id)
    .fetch_one(app.db.pool())
    .await
    .map_err(internal)?;
    Ok(resp::wrap("vlan", range_json(&row, &app.site.zone_uuid)?))
}

/// listVlanIpRanges (root admins).
pub(crate) async fn list_vlan_ranges(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    admin_only(caller)?;
    zone_param(app, p, "zoneid")?;
    // No range is dedicated to a network: a (visible) network filter matches nothing.
    if network_filter(app, caller, p, "networkid").await?.is_some() {
        return Ok(page("vlaniprange", Vec::new(), p.paging()));
    }
    let rows = sqlx::query(&format!(
        "SELECT {RANGE_COLUMNS} FROM vlan_ranges ORDER BY id"
    ))
    .fetch_all(app.db.pool())
    .await
    .map_err(internal)?;
    let kw = keyword(p);
    let mut items = Vec::new();
    for r in &rows {
        let item = range_json(r, &app.site.zone_uuid)?;
        if given(p, "id").is_some_and(|id| item["id"] != id) {
            continue;
        }
        if let Some(k) = kw.as_deref() {
            let hay = format!("{} {}", item["vlan"], item["description"]);
            if !contains(&hay, k) {
                continue;
            }
        }
        items.push(item);
    }
    Ok(page("vlaniprange", items, p.paging()))
}

// ------------------------------------------------------------------------------------------
// Virtual machines.

const VM_SELECT: &str = "SELECT v.id, v.uuid, v.name, v.display_name, v.account_id, \
     v.network_id, v.nic_uuid, v.ip, v.state, v.created, n.uuid AS net_uuid, \
     n.name AS net_name, n.cidr, n.gateway, s.uuid AS so_uuid, s.name AS so_name, \
     s.cpu_number, s.cpu_speed, s.memory, t.uuid AS t_uuid, t.name AS t_name, \
     t.display_text AS t_display \
     FROM vms v JOIN networks n ON n.id = v.network_id \
     JOIN service_offerings s ON s.id = v.service_offering_id \
     JOIN templates t ON t.id = v.template_id";

/// A VM with what its response shows.
struct VmRow {
    id: i64,
    uuid: String,
    name: String,
    display_name: String,
    account_id: i64,
    network_id: i64,
    nic_uuid: String,
    ip: String,
    state: String,
    created: i64,
    net_uuid: String,
    net_name: String,
    cidr: String,
    gateway: String,
    so_uuid: String,
    so_name: String,
    cpu_number: i64,
    cpu_speed: i64,
    memory: i64,
    t_uuid: String,
    t_name: String,
    t_display: String,
}

impl VmRow {
    fn from_row(r: &AnyRow) -> Result<VmRow, sqlx::Error> {
        Ok(VmRow {
            id: r.try_get("id")?,
            uuid: r.try_get("uuid")?,
            name: r.try_get("name")?,
            display_name: r.try_get("display_name")?,
            account_id: r.try_get("account_id")?,
            network_id: r.try_get("network_id")?,
            nic_uuid: r.try_get("nic_uuid")?,
            ip: r.try_get("ip")?,
            state: r.try_get("state")?,
            created: r.try_get("created")?,
            net_uuid: r.try_get("net_uuid")?,
            net_name: r.try_get("net_name")?,
            cidr: r.try_get("cidr")?,
            gateway: r.try_get("gateway")?,
            so_uuid: r.try_get("so_uuid")?,
            so_name: r.try_get("so_name")?,
            cpu_number: r.try_get("cpu_number")?,
            cpu_speed: r.try_get("cpu_speed")?,
            memory: r.try_get("memory")?,
            t_uuid: r.try_get("t_uuid")?,
            t_name: r.try_get("t_name")?,
            t_display: r.try_get("t_display")?,
        })
    }
}

/// A VM in UserVmResponse's shape (the fields that apply to a lab VM).
fn vm_json(app: &App, vm: &VmRow, owner: &Owner, state: &str) -> Value {
    let netmask = vm
        .cidr
        .parse::<Ipv4Net>()
        .map(|c| c.netmask().to_string())
        .unwrap_or_default();
    let mac = vm.ip.parse().map(mac_of).unwrap_or_default();
    let mut m = Map::new();
    m.insert("id".into(), json!(vm.uuid));
    m.insert("name".into(), json!(vm.name));
    m.insert("displayname".into(), json!(vm.display_name));
    m.insert("account".into(), json!(owner.account));
    m.insert("domainid".into(), json!(owner.domain_id));
    m.insert("domain".into(), json!(owner.domain));
    m.insert("domainpath".into(), json!(owner.domain_path));
    m.insert("created".into(), json!(date(vm.created)));
    m.insert("state".into(), json!(state));
    m.insert("haenable".into(), json!(false));
    m.insert("zoneid".into(), json!(app.site.zone_uuid));
    m.insert("zonename".into(), json!(app.site.zone_name));
    m.insert("templateid".into(), json!(vm.t_uuid));
    m.insert("templatename".into(), json!(vm.t_name));
    m.insert("templatedisplaytext".into(), json!(vm.t_display));
    m.insert("passwordenabled".into(), json!(false));
    m.insert("serviceofferingid".into(), json!(vm.so_uuid));
    m.insert("serviceofferingname".into(), json!(vm.so_name));
    m.insert("cpunumber".into(), json!(vm.cpu_number));
    m.insert("cpuspeed".into(), json!(vm.cpu_speed));
    m.insert("memory".into(), json!(vm.memory));
    m.insert("hypervisor".into(), json!("Lab"));
    m.insert(
        "nic".into(),
        json!([{
            "id": vm.nic_uuid,
            "networkid": vm.net_uuid,
            "networkname": vm.net_name,
            "ipaddress": vm.ip,
            "netmask": netmask,
            "gateway": vm.gateway,
            "isdefault": true,
            "type": "Isolated",
            "traffictype": "Guest",
            "macaddress": mac,
            "deviceid": "0",
        }]),
    );
    m.insert("isdynamicallyscalable".into(), json!(false));
    m.insert("tags".into(), json!([]));
    Value::Object(m)
}

async fn vm_by_id(app: &App, id: i64) -> ApiResult<Option<VmRow>> {
    sqlx::query(&format!("{VM_SELECT} WHERE v.id = $1"))
        .bind(id)
        .fetch_optional(app.db.pool())
        .await
        .map_err(internal)?
        .map(|r| VmRow::from_row(&r))
        .transpose()
        .map_err(internal)
}

/// The `jobresult` of deployVirtualMachine: `{"virtualmachine": {...}}`.
pub(crate) async fn vm_result(app: &App, id: i64) -> ApiResult<Value> {
    let vm = vm_by_id(app, id)
        .await?
        .ok_or_else(|| ApiError::internal(format!("virtual machine {id} is gone")))?;
    let own = owner(app, vm.account_id).await?;
    Ok(resp::wrap(
        "virtualmachine",
        vm_json(app, &vm, &own, &vm.state),
    ))
}

/// Whether a name is a VM name (letters, digits, '-' and '_', as host names allow).
fn good_vm_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// The VM's default name: `VM-` and the first 29 hex digits of its id (32 characters).
fn default_vm_name(uuid: &uuid::Uuid) -> String {
    let simple = uuid.simple().to_string();
    format!("VM-{}", simple.get(..29).unwrap_or(&simple))
}

/// The lowest host address of `cidr` that is neither the gateway nor in `used`.
fn lowest_free(cidr: Ipv4Net, gateway: Ipv4Addr, used: &[Ipv4Addr]) -> Option<Ipv4Addr> {
    cidr.hosts()
        .find(|ip| *ip != gateway && !used.contains(ip) && is_host(*ip, cidr))
}

/// deployVirtualMachine (async create): the VM row now (Starting); the runner makes its lab
/// namespace and sets it Running.
pub(crate) async fn deploy_vm(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    zone_param(app, p, "zoneid")?;
    let so_id: i64 = sqlx::query("SELECT id FROM service_offerings WHERE uuid = $1")
        .bind(required(p, "serviceofferingid")?)
        .fetch_optional(app.db.pool())
        .await
        .map_err(internal)?
        .ok_or_else(|| unknown(p, "serviceofferingid"))?
        .try_get("id")
        .map_err(internal)?;
    let template_id: i64 = sqlx::query("SELECT id FROM templates WHERE uuid = $1")
        .bind(required(p, "templateid")?)
        .fetch_optional(app.db.pool())
        .await
        .map_err(internal)?
        .ok_or_else(|| unknown(p, "templateid"))?
        .try_get("id")
        .map_err(internal)?;
    let ids = p.list("networkids").unwrap_or_default();
    let net_uuid = match ids.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(ApiError::invalid_parameter(
                "networkids is required: give the guest network the VM is to sit on",
            ))
        }
        _ => {
            return Err(ApiError::invalid_parameter(
                "guestnet VMs have one NIC: give one network id",
            ))
        }
    };
    let net = super::network_by_uuid(app, &net_uuid)
        .await?
        .filter(|n| caller.may_touch(n.account_id))
        .ok_or_else(|| unknown(p, "networkids"))?;
    usable_network(app, &net).await?;
    if given(p, "account").is_some() && acting_for(app, caller, p).await? != net.account_id {
        return Err(ApiError::invalid_parameter(format!(
            "Network {} does not belong to account {}",
            net.uuid,
            given(p, "account").unwrap_or_default()
        )));
    }
    let vm_uuid = uuid::Uuid::new_v4();
    let name = match given(p, "name") {
        Some(n) if good_vm_name(n) => n.to_string(),
        Some(n) => {
            return Err(ApiError::invalid_parameter(format!(
                "Invalid name {n}: a VM name is 1 to 32 characters of letters, digits, '-' and \
                 '_'"
            )))
        }
        None => default_vm_name(&vm_uuid),
    };
    let display = given(p, "displayname").unwrap_or(&name).to_string();
    let wanted = match given(p, "ipaddress") {
        Some(s) => {
            let ip = parse_ip("ipaddress", s)?;
            if !is_host(ip, net.cidr) || ip == net.gateway {
                return Err(ApiError::invalid_parameter(format!(
                    "Invalid ipaddress {ip}: not a free host address of network {} ({}, \
                     gateway {})",
                    net.name, net.cidr, net.gateway
                )));
            }
            Some(ip)
        }
        None => None,
    };
    let vm_uuid = vm_uuid.to_string();
    let job_uuid = {
        let _w = app.db.write_lock().await;
        let mut tx = begin(app).await?;
        app.db
            .lock_network(&mut tx, net.id)
            .await
            .map_err(internal)?;
        // A deleteNetwork that committed while this call waited for the lock wins.
        usable_network(app, &net).await?;
        // A VM's name is unique among its account's VMs (CloudStack keeps host names unique in
        // a network domain, which is the account's by default); other accounts' names are
        // never looked at, so the answer tells nothing about them. The account's row is locked
        // so that two deploys on two of its networks cannot both take one name.
        if app.db.dialect() == Dialect::Postgres {
            sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR UPDATE")
                .bind(net.account_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(internal)?;
        }
        let clash = sqlx::query("SELECT id FROM vms WHERE name = $1 AND account_id = $2")
            .bind(&name)
            .bind(net.account_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(internal)?;
        if clash.is_some() {
            return Err(ApiError::invalid_parameter(format!(
                "The name {name} is already used by another VM of this account"
            )));
        }
        let used: Vec<Ipv4Addr> = sqlx::query("SELECT ip FROM vms WHERE network_id = $1")
            .bind(net.id)
            .fetch_all(&mut *tx)
            .await
            .map_err(internal)?
            .iter()
            .filter_map(|r| r.try_get::<String, _>("ip").ok()?.parse().ok())
            .collect();
        let ip = match wanted {
            Some(ip) if used.contains(&ip) => {
                return Err(ApiError::invalid_parameter(format!(
                    "Invalid ipaddress {ip}: another VM of network {} has it",
                    net.name
                )))
            }
            Some(ip) => ip,
            None => lowest_free(net.cidr, net.gateway, &used).ok_or_else(|| {
                ApiError::insufficient_address_capacity(format!(
                    "Insufficient address capacity: network {} ({}) has no free address",
                    net.name, net.cidr
                ))
            })?,
        };
        limits::take(app, &mut tx, net.account_id, &[(Resource::UserVm, 1)]).await?;
        let vm_id: i64 = sqlx::query(
            "INSERT INTO vms (uuid, name, display_name, account_id, zone_id, network_id, \
             service_offering_id, template_id, nic_uuid, ip, state, created) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'Starting', $11) RETURNING id",
        )
        .bind(&vm_uuid)
        .bind(&name)
        .bind(&display)
        .bind(net.account_id)
        .bind(app.site.zone_id)
        .bind(net.id)
        .bind(so_id)
        .bind(template_id)
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(ip.to_string())
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await
        .map_err(internal)?
        .try_get("id")
        .map_err(internal)?;
        let (_, job_uuid) = store::jobs::insert(
            &mut tx,
            caller,
            NewJob {
                command: "deployVirtualMachine",
                kind: Kind::DeployVm,
                network_id: Some(net.id.into()),
                payload: payload(
                    Outcome::Vm { id: vm_id },
                    "VM.CREATE",
                    format!("deploying VM {name}"),
                    "Failed to deploy VM",
                ),
                instance_type: Some("VirtualMachine"),
                instance_uuid: Some(&vm_uuid),
            },
        )
        .await
        .map_err(internal)?;
        store::events::scheduled(
            &mut tx,
            caller,
            "VM.CREATE",
            &format!("deploying VM {name} ({ip}) on network {}", net.uuid),
            Some(&vm_uuid),
            &job_uuid,
        )
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        job_uuid
    };
    app.doorbell.ring_network(net.id);
    Ok(accepted(&vm_uuid, &job_uuid))
}

/// listVirtualMachines.
pub(crate) async fn list_vms(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    zone_param(app, p, "zoneid")?;
    super::visible_filter(app, caller, p, "id", "vms").await?;
    let mut sel = Select::new(VM_SELECT);
    if let Some(id) = given(p, "id") {
        sel.and("v.uuid = $?", vec![Arg::Text(id.to_string())]);
    }
    if let Some(name) = given(p, "name") {
        sel.and("v.name = $?", vec![Arg::Text(name.to_string())]);
    }
    if let Some(n) = network_filter(app, caller, p, "networkid").await? {
        sel.and("v.network_id = $?", vec![Arg::Int(n)]);
    }
    let who = owners(app, caller, p, "v.account_id").await?;
    if !restrict(&mut sel, who) {
        return Ok(page("virtualmachine", Vec::new(), p.paging()));
    }
    let rows = sel.fetch(app, "v.id").await?;
    let kw = keyword(p);
    let state = given(p, "state");
    let mut cache = HashMap::new();
    let mut items = Vec::new();
    for r in &rows {
        let vm = VmRow::from_row(r).map_err(internal)?;
        if state.is_some_and(|s| !s.eq_ignore_ascii_case(&vm.state))
            || kw
                .as_deref()
                .is_some_and(|k| !contains(&vm.name, k) && !contains(&vm.display_name, k))
        {
            continue;
        }
        let own = owner_of(app, &mut cache, vm.account_id).await?;
        items.push(vm_json(app, &vm, &own, &vm.state));
    }
    Ok(page("virtualmachine", items, p.paging()))
}

/// destroyVirtualMachine (async): its forwards (with their opened firewall rules) and balancer
/// memberships are revoked by one job; the runner then removes the VM.
pub(crate) async fn destroy_vm(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    let uuid = required(p, "id")?;
    let row = sqlx::query(&format!("{VM_SELECT} WHERE v.uuid = $1"))
        .bind(uuid)
        .fetch_optional(app.db.pool())
        .await
        .map_err(internal)?
        .ok_or_else(|| unknown(p, "id"))?;
    let vm = VmRow::from_row(&row).map_err(internal)?;
    if !caller.may_touch(vm.account_id) {
        return Err(unknown(p, "id"));
    }
    match vm.state.as_str() {
        "Starting" => {
            return Err(ApiError::invalid_parameter(format!(
                "VM {} is still being deployed; destroy it once its deploy job has ended",
                vm.uuid
            )))
        }
        "Expunging" => {
            return Err(ApiError::invalid_parameter(format!(
                "VM {} is already being destroyed",
                vm.uuid
            )))
        }
        _ => {}
    }
    let own = owner(app, vm.account_id).await?;
    let gone = resp::wrap("virtualmachine", vm_json(app, &vm, &own, "Destroyed"));
    let job_uuid = {
        let _w = app.db.write_lock().await;
        let mut tx = begin(app).await?;
        app.db
            .lock_network(&mut tx, vm.network_id)
            .await
            .map_err(internal)?;
        let mut pl = payload(
            Outcome::Fixed { value: gone },
            "VM.DESTROY",
            format!("destroying VM {}", vm.name),
            "Failed to destroy vm",
        );
        pl.target = Some(vm.id);
        let (job_id, job_uuid) = store::jobs::insert(
            &mut tx,
            caller,
            NewJob {
                command: "destroyVirtualMachine",
                kind: Kind::DestroyVm,
                network_id: Some(vm.network_id.into()),
                payload: pl,
                instance_type: Some("VirtualMachine"),
                instance_uuid: Some(&vm.uuid),
            },
        )
        .await
        .map_err(internal)?;
        let job_id = job_id.get();
        for sql in [
            "UPDATE rules SET state = 'Revoke', job_id = $1 WHERE related_id IN \
             (SELECT id FROM rules WHERE purpose = 'PortForwarding' AND vm_id = $2)",
            "UPDATE rules SET state = 'Revoke', job_id = $1 \
             WHERE purpose = 'PortForwarding' AND vm_id = $2",
            "UPDATE lb_members SET state = 'Revoke', job_id = $1 WHERE vm_id = $2",
        ] {
            sqlx::query(sql)
                .bind(job_id)
                .bind(vm.id)
                .execute(&mut *tx)
                .await
                .map_err(internal)?;
        }
        sqlx::query("UPDATE vms SET state = 'Expunging' WHERE id = $1")
            .bind(vm.id)
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        store::events::scheduled(
            &mut tx,
            caller,
            "VM.DESTROY",
            &format!("destroying VM {} ({})", vm.name, vm.uuid),
            Some(&vm.uuid),
            &job_uuid,
        )
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        job_uuid
    };
    app.doorbell.ring_network(vm.network_id);
    Ok(queued(&job_uuid))
}

// ------------------------------------------------------------------------------------------
// Routers.

const ROUTER_SELECT: &str = "SELECT r.uuid, r.name, r.host, r.state, r.desired_generation, \
     r.applied_generation, r.applied_at, r.last_error, r.created, n.uuid AS net_uuid, \
     n.name AS net_name, n.gateway, n.cidr, n.account_id, p.address AS public_ip, \
     p.uuid AS public_ip_uuid, h.uuid AS host_uuid, h.driver AS host_driver \
     FROM routers r JOIN networks n ON n.id = r.network_id \
     LEFT JOIN hosts h ON h.name = r.host \
     LEFT JOIN public_ips p ON p.network_id = n.id AND p.source_nat = 1";

fn router_json(app: &App, r: &AnyRow, owner: &Owner) -> ApiResult<Value> {
    let s = |c: &str| r.try_get::<String, _>(c).map_err(internal);
    let o = |c: &str| r.try_get::<Option<String>, _>(c).map_err(internal);
    let host = s("host")?;
    let netmask = s("cidr")?
        .parse::<Ipv4Net>()
        .map(|c| c.netmask().to_string())
        .unwrap_or_default();
    let driver = o("host_driver")?;
    let mut m = Map::new();
    m.insert("id".into(), json!(s("uuid")?));
    m.insert("name".into(), json!(s("name")?));
    m.insert("zoneid".into(), json!(app.site.zone_uuid));
    m.insert("zonename".into(), json!(app.site.zone_name));
    m.insert("state".into(), json!(s("state")?));
    m.insert("host".into(), json!(host));
    m.insert("hostname".into(), json!(host));
    if let Some(id) = o("host_uuid")? {
        m.insert("hostid".into(), json!(id));
    }
    m.insert("guestipaddress".into(), json!(s("gateway")?));
    m.insert("guestnetmask".into(), json!(netmask));
    m.insert("guestnetworkid".into(), json!(s("net_uuid")?));
    m.insert("guestnetworkname".into(), json!(s("net_name")?));
    if let Some(ip) = o("public_ip")? {
        m.insert("publicip".into(), json!(ip));
    }
    if let Some(id) = o("public_ip_uuid")? {
        m.insert("publicipid".into(), json!(id));
    }
    m.insert("role".into(), json!("VIRTUAL_ROUTER"));
    m.insert("isredundantrouter".into(), json!(false));
    m.insert("redundantstate".into(), json!("UNKNOWN"));
    m.insert("requiresupgrade".into(), json!(false));
    m.insert("account".into(), json!(owner.account));
    m.insert("domainid".into(), json!(owner.domain_id));
    m.insert("domain".into(), json!(owner.domain));
    m.insert("domainpath".into(), json!(owner.domain_path));
    m.insert(
        "created".into(),
        json!(date(r.try_get("created").map_err(internal)?)),
    );
    if let Some(d) = &driver {
        m.insert("guestnetdriver".into(), json!(d));
    }
    m.insert("enforced".into(), json!(driver.as_deref() == Some("lab")));
    m.insert(
        "desiredgeneration".into(),
        json!(r
            .try_get::<i64, _>("desired_generation")
            .map_err(internal)?),
    );
    m.insert(
        "appliedgeneration".into(),
        json!(r
            .try_get::<i64, _>("applied_generation")
            .map_err(internal)?),
    );
    if let Some(at) = r
        .try_get::<Option<i64>, _>("applied_at")
        .map_err(internal)?
    {
        m.insert("appliedat".into(), json!(date(at)));
    }
    if let Some(e) = o("last_error")? {
        m.insert("lasterror".into(), json!(e));
    }
    Ok(Value::Object(m))
}

/// listRouters: admins see every router, users those of their own networks.
pub(crate) async fn list_routers(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    zone_param(app, p, "zoneid")?;
    let mut sel = Select::new(ROUTER_SELECT);
    if let Some(id) = given(p, "id") {
        sel.and("r.uuid = $?", vec![Arg::Text(id.to_string())]);
    }
    if let Some(name) = given(p, "name") {
        sel.and("r.name = $?", vec![Arg::Text(name.to_string())]);
    }
    if let Some(n) = network_filter(app, caller, p, "networkid").await? {
        sel.and("r.network_id = $?", vec![Arg::Int(n)]);
    }
    let who = owners(app, caller, p, "n.account_id").await?;
    if !restrict(&mut sel, who) {
        return Ok(page("router", Vec::new(), p.paging()));
    }
    let rows = sel.fetch(app, "r.id").await?;
    let kw = keyword(p);
    let state = given(p, "state");
    let mut cache = HashMap::new();
    let mut items = Vec::new();
    for r in &rows {
        let name: String = r.try_get("name").map_err(internal)?;
        let st: String = r.try_get("state").map_err(internal)?;
        if state.is_some_and(|s| !s.eq_ignore_ascii_case(&st))
            || kw.as_deref().is_some_and(|k| !contains(&name, k))
        {
            continue;
        }
        let account: i64 = r.try_get("account_id").map_err(internal)?;
        let own = owner_of(app, &mut cache, account).await?;
        items.push(router_json(app, r, &own)?);
    }
    Ok(page("router", items, p.paging()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    #[test]
    fn netmasks_must_be_contiguous() {
        assert_eq!(netmask_prefix("255.255.255.0").unwrap(), 24);
        assert_eq!(netmask_prefix("255.255.0.0").unwrap(), 16);
        assert_eq!(netmask_prefix("255.255.255.252").unwrap(), 30);
        assert!(netmask_prefix("255.0.255.0").is_err());
        assert!(netmask_prefix("not-a-mask").is_err());
    }

    #[test]
    fn the_lowest_unused_slash_24_is_picked() {
        let ranges = [(
            Ipv4Addr::new(203, 0, 113, 10),
            Ipv4Addr::new(203, 0, 113, 250),
        )];
        assert_eq!(
            pick_cidr(&[], &ranges),
            Some((net("10.1.0.0/24"), Ipv4Addr::new(10, 1, 0, 1)))
        );
        let used = [(1, net("10.1.0.0/24")), (2, net("10.1.1.0/25"))];
        assert_eq!(pick_cidr(&used, &ranges).unwrap().0, net("10.1.2.0/24"));
        let wide = [(1, net("10.1.0.0/16"))];
        assert_eq!(pick_cidr(&wide, &ranges), None);
    }

    #[test]
    fn host_addresses_and_overlaps() {
        let n = net("10.1.1.0/24");
        assert!(is_host(Ipv4Addr::new(10, 1, 1, 1), n));
        assert!(!is_host(Ipv4Addr::new(10, 1, 1, 0), n));
        assert!(!is_host(Ipv4Addr::new(10, 1, 1, 255), n));
        assert!(nets_overlap(&n, &net("10.1.0.0/16")));
        assert!(!nets_overlap(&n, &net("10.1.2.0/24")));
        assert!(net_meets_range(
            &n,
            Ipv4Addr::new(10, 1, 1, 200),
            Ipv4Addr::new(10, 1, 2, 5)
        ));
        assert!(is_private(&n));
        assert!(!is_private(&net("203.0.113.0/24")));
    }

    #[test]
    fn vm_names_and_addresses() {
        let u = uuid::Uuid::new_v4();
        let name = default_vm_name(&u);
        assert_eq!(name.len(), 32);
        assert!(good_vm_name(&name));
        assert!(!good_vm_name(""));
        assert!(!good_vm_name("has space"));
        assert!(!good_vm_name(&"x".repeat(33)));
        assert_eq!(mac_of(Ipv4Addr::new(10, 1, 1, 2)), "02:00:0a:01:01:02");
        let n = net("10.1.1.0/24");
        let gw = Ipv4Addr::new(10, 1, 1, 1);
        assert_eq!(lowest_free(n, gw, &[]), Some(Ipv4Addr::new(10, 1, 1, 2)));
        assert_eq!(
            lowest_free(n, gw, &[Ipv4Addr::new(10, 1, 1, 2)]),
            Some(Ipv4Addr::new(10, 1, 1, 3))
        );
        let tiny = net("10.1.1.0/30");
        assert_eq!(lowest_free(tiny, gw, &[Ipv4Addr::new(10, 1, 1, 2)]), None);
    }

    #[test]
    fn select_numbers_its_arguments() {
        let mut s = Select::new("SELECT x FROM t");
        s.and("a = $?", vec![Arg::Int(1)]);
        s.and(
            "b = $? OR c LIKE $?",
            vec![Arg::Int(2), Arg::Text("x%".into())],
        );
        s.and("d <> 'Free'", Vec::new());
        assert_eq!(
            s.sql,
            "SELECT x FROM t WHERE 1 = 1 AND (a = $1) AND (b = $2 OR c LIKE $3) AND (d <> 'Free')"
        );
        assert_eq!(s.args.len(), 3);
    }

    /// The handlers end to end on SQLite with the dry-run agent: a network, an address, a VM,
    /// the lists, and the deletes, each job run by the real job runner.
    mod flow {
        use sqlx::Row;

        use crate::app::App;
        use crate::testkit::{admin, app, call, on_postgres, try_call, user, wait};
        use domain::actor::Caller;

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn networks_addresses_and_vms() {
            let dir = tempfile::tempdir().unwrap();
            flow(&app(dir.path()).await).await;
        }

        /// The same on PostgreSQL: the server `GUESTNET_TEST_POSTGRES_URL` names (the test
        /// command sets it, starting a server if none answers), or the one on 127.0.0.1:5432.
        /// The test creates a database there and drops it; no server is a failure.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn networks_addresses_and_vms_on_postgres() {
            on_postgres("infra", flow).await;
        }

        async fn flow(app: &App) {
            let app = app.clone();
            let root = admin(&app).await;
            let alice = user(&app, &root, "alice").await;
            let zone = app.site.zone_uuid.clone();

            let zones = call(&app, &alice, "listZones", &[]).await;
            assert_eq!(zones["count"], 1);
            assert_eq!(zones["zone"][0]["networktype"], "Advanced");
            let offerings = call(&app, &alice, "listNetworkOfferings", &[]).await;
            assert_eq!(offerings["count"], 2);
            assert_eq!(
                offerings["networkoffering"][0]["egressdefaultpolicy"],
                false
            );
            assert_eq!(offerings["networkoffering"][1]["egressdefaultpolicy"], true);
            let offering = offerings["networkoffering"][0]["id"]
                .as_str()
                .unwrap()
                .to_string();
            let so = call(&app, &alice, "listServiceOfferings", &[]).await;
            let so = so["serviceoffering"][0]["id"].as_str().unwrap().to_string();
            let t = call(
                &app,
                &alice,
                "listTemplates",
                &[("templatefilter", "executable")],
            )
            .await;
            let template = t["template"][0]["id"].as_str().unwrap().to_string();
            let mine = call(&app, &alice, "listTemplates", &[("templatefilter", "self")]).await;
            assert_eq!(mine, serde_json::json!({}));

            // A network: router implemented, source NAT taken.
            let n = call(
                &app,
                &alice,
                "createNetwork",
                &[
                    ("name", "net1"),
                    ("networkofferingid", &offering),
                    ("zoneid", &zone),
                ],
            )
            .await;
            let net = n["network"]["id"].as_str().unwrap().to_string();
            assert_eq!(n["network"]["cidr"], "10.1.0.0/24");
            assert_eq!(n["network"]["state"], "Implemented");
            let n2 = call(
                &app,
                &alice,
                "createNetwork",
                &[
                    ("name", "net2"),
                    ("networkofferingid", &offering),
                    ("zoneid", &zone),
                ],
            )
            .await;
            assert_eq!(n2["network"]["cidr"], "10.1.1.0/24");
            let clash = try_call(
                &app,
                &alice,
                "createNetwork",
                &[
                    ("name", "net3"),
                    ("networkofferingid", &offering),
                    ("zoneid", &zone),
                    ("gateway", "10.1.0.129"),
                    ("netmask", "255.255.255.128"),
                ],
            )
            .await
            .unwrap_err();
            assert_eq!(clash.code.code(), 431, "{}", clash.text);
            // Another account may reuse the CIDR.
            call(
                &app,
                &root,
                "createNetwork",
                &[
                    ("name", "rootnet"),
                    ("networkofferingid", &offering),
                    ("zoneid", &zone),
                    ("gateway", "10.1.0.1"),
                    ("netmask", "255.255.255.0"),
                ],
            )
            .await;
            let routers = call(&app, &alice, "listRouters", &[]).await;
            assert_eq!(routers["count"], 2);
            assert_eq!(routers["router"][0]["state"], "Running");
            assert_eq!(routers["router"][0]["enforced"], false);
            assert_eq!(routers["router"][0]["publicip"], "203.0.113.10");
            let all = call(&app, &root, "listRouters", &[("listall", "true")]).await;
            assert_eq!(all["count"], 3);

            // An address.
            let a = call(&app, &alice, "associateIpAddress", &[("networkid", &net)]).await;
            let (status, result) = wait(&app, &a).await;
            assert_eq!(status, 1, "{result}");
            assert_eq!(result["ipaddress"]["ipaddress"], "203.0.113.13");
            assert_eq!(result["ipaddress"]["state"], "Allocated");
            let ips = call(&app, &alice, "listPublicIpAddresses", &[]).await;
            assert_eq!(ips["count"], 3);
            let snat = call(
                &app,
                &alice,
                "listPublicIpAddresses",
                &[("issourcenat", "true")],
            )
            .await;
            assert_eq!(snat["count"], 2);
            let snat_id = snat["publicipaddress"][0]["id"]
                .as_str()
                .unwrap()
                .to_string();
            let refused = try_call(&app, &alice, "disassociateIpAddress", &[("id", &snat_id)])
                .await
                .unwrap_err();
            assert_eq!(refused.code.code(), 431);
            let free = call(
                &app,
                &root,
                "listPublicIpAddresses",
                &[("allocatedonly", "false")],
            )
            .await;
            assert_eq!(
                free["count"],
                241 - 4 + 1,
                "root sees its own and the free ones"
            );
            let hidden = try_call(
                &app,
                &root,
                "disassociateIpAddress",
                &[("id", "00000000-0000-0000-0000-000000000000")],
            )
            .await
            .unwrap_err();
            assert_eq!(hidden.code.code(), 431);

            // A VM.
            let v = call(
                &app,
                &alice,
                "deployVirtualMachine",
                &[
                    ("zoneid", &zone),
                    ("serviceofferingid", &so),
                    ("templateid", &template),
                    ("networkids", &net),
                    ("name", "web-1"),
                ],
            )
            .await;
            let (status, result) = wait(&app, &v).await;
            assert_eq!(status, 1, "{result}");
            assert_eq!(result["virtualmachine"]["state"], "Running");
            assert_eq!(result["virtualmachine"]["nic"][0]["ipaddress"], "10.1.0.2");
            let dup = try_call(
                &app,
                &root,
                "deployVirtualMachine",
                &[
                    ("zoneid", &zone),
                    ("serviceofferingid", &so),
                    ("templateid", &template),
                    ("networkids", n2["network"]["id"].as_str().unwrap()),
                    ("name", "web-1"),
                ],
            )
            .await
            .unwrap_err();
            assert_eq!(dup.code.code(), 431, "{}", dup.text);
            let vms = call(&app, &alice, "listVirtualMachines", &[]).await;
            assert_eq!(vms["count"], 1);
            let not_root = call(&app, &root, "listVirtualMachines", &[]).await;
            assert_eq!(not_root, serde_json::json!({}));

            // Ranges are the admin's.
            let denied = try_call(&app, &alice, "listVlanIpRanges", &[])
                .await
                .unwrap_err();
            assert_eq!(denied.code.code(), 432);
            let r = call(
                &app,
                &root,
                "createVlanIpRange",
                &[
                    ("startip", "198.51.100.10"),
                    ("endip", "198.51.100.20"),
                    ("gateway", "198.51.100.1"),
                    ("netmask", "255.255.255.0"),
                ],
            )
            .await;
            assert_eq!(r["vlan"]["vlan"], "untagged");
            let overlap = try_call(
                &app,
                &root,
                "createVlanIpRange",
                &[("startip", "198.51.100.20"), ("endip", "198.51.100.30")],
            )
            .await
            .unwrap_err();
            assert_eq!(overlap.code.code(), 431);
            let ranges = call(&app, &root, "listVlanIpRanges", &[]).await;
            assert_eq!(ranges["count"], 2);

            // Rules on the address and the VM, then tear down.
            let vm_id = vms["virtualmachine"][0]["id"].as_str().unwrap().to_string();
            let ip_id = result_ip(&app, &alice).await;
            let pf = call(
                &app,
                &alice,
                "createPortForwardingRule",
                &[
                    ("ipaddressid", &ip_id),
                    ("protocol", "tcp"),
                    ("publicport", "2222"),
                    ("privateport", "22"),
                    ("virtualmachineid", &vm_id),
                ],
            )
            .await;
            assert_eq!(wait(&app, &pf).await.0, 1);
            let fw = call(
                &app,
                &alice,
                "createFirewallRule",
                &[
                    ("ipaddressid", &ip_id),
                    ("protocol", "tcp"),
                    ("startport", "80"),
                ],
            )
            .await;
            assert_eq!(wait(&app, &fw).await.0, 1);
            let eg = call(
                &app,
                &alice,
                "createEgressFirewallRule",
                &[
                    ("networkid", &net),
                    ("protocol", "tcp"),
                    ("startport", "443"),
                ],
            )
            .await;
            assert_eq!(wait(&app, &eg).await.0, 1);
            let fws = call(&app, &alice, "listFirewallRules", &[]).await;
            assert_eq!(fws["count"], 2, "{fws}");
            let ip_now = call(&app, &alice, "listPublicIpAddresses", &[("id", &ip_id)]).await;
            assert_eq!(ip_now["publicipaddress"][0]["hasrules"], true);

            let d = call(&app, &alice, "destroyVirtualMachine", &[("id", &vm_id)]).await;
            let (status, result) = wait(&app, &d).await;
            assert_eq!(status, 1, "{result}");
            assert_eq!(result["virtualmachine"]["state"], "Destroyed");
            let pfs = call(&app, &alice, "listPortForwardingRules", &[]).await;
            assert_eq!(pfs, serde_json::json!({}));
            let fws = call(&app, &alice, "listFirewallRules", &[]).await;
            assert_eq!(
                fws["count"], 1,
                "the opened rule went with its forward: {fws}"
            );
            let rel = call(&app, &alice, "disassociateIpAddress", &[("id", &ip_id)]).await;
            assert_eq!(wait(&app, &rel).await.0, 1);
            let fws = call(&app, &alice, "listFirewallRules", &[]).await;
            assert_eq!(fws, serde_json::json!({}));
            let del = call(&app, &alice, "deleteNetwork", &[("id", &net)]).await;
            let (status, result) = wait(&app, &del).await;
            assert_eq!(status, 1, "{result}");
            let left = call(&app, &alice, "listNetworks", &[]).await;
            assert_eq!(left["count"], 1);
            let ips = call(&app, &alice, "listPublicIpAddresses", &[]).await;
            assert_eq!(ips["count"], 1);
            let rules: i64 = sqlx::query("SELECT COUNT(*) AS n FROM rules")
                .fetch_one(app.db.pool())
                .await
                .unwrap()
                .try_get("n")
                .unwrap();
            assert_eq!(rules, 0);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn failed_checks_write_nothing() {
            let dir = tempfile::tempdir().unwrap();
            let app = app(dir.path()).await;
            let root = admin(&app).await;
            let zone = app.site.zone_uuid.clone();
            let offerings = call(&app, &root, "listNetworkOfferings", &[]).await;
            let offering = offerings["networkoffering"][0]["id"]
                .as_str()
                .unwrap()
                .to_string();
            for (gw, mask) in [
                ("10.1.0.0", "255.255.255.0"),
                ("10.1.0.1", "255.0.255.0"),
                ("8.8.8.1", "255.255.255.0"),
                ("203.0.113.1", "255.255.255.0"),
            ] {
                let e = try_call(
                    &app,
                    &root,
                    "createNetwork",
                    &[
                        ("name", "bad"),
                        ("networkofferingid", &offering),
                        ("zoneid", &zone),
                        ("gateway", gw),
                        ("netmask", mask),
                    ],
                )
                .await
                .unwrap_err();
                assert_eq!(e.code.code(), 431, "{gw}/{mask}: {}", e.text);
            }
            // Exhaust the public addresses: the next network gets 533 and leaves no row.
            sqlx::query("UPDATE public_ips SET state = 'Allocated'")
                .execute(app.db.pool())
                .await
                .unwrap();
            let e = try_call(
                &app,
                &root,
                "createNetwork",
                &[
                    ("name", "n"),
                    ("networkofferingid", &offering),
                    ("zoneid", &zone),
                ],
            )
            .await
            .unwrap_err();
            assert_eq!(e.code.code(), 533);
            let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM networks")
                .fetch_one(app.db.pool())
                .await
                .unwrap()
                .try_get("n")
                .unwrap();
            assert_eq!(n, 0);
        }

        async fn result_ip(app: &App, alice: &Caller) -> String {
            let ips = call(
                app,
                alice,
                "listPublicIpAddresses",
                &[("issourcenat", "false")],
            )
            .await;
            assert_eq!(ips["count"], 1);
            ips["publicipaddress"][0]["id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    }
}
