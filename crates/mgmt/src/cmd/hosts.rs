//! Hosts and the tokens their agents connect with: createAgentToken, listAgentTokens,
//! revokeAgentToken and listHosts, all for root admins only.
//!
//! - A token is shown once, in createAgentToken's answer; the database keeps only its SHA-256
//!   digest, and no list, event or log shows the token again.
//! - Revoking a token refuses its next connection; an agent already connected with it stays
//!   connected until its connection ends. Revoking a revoked token succeeds and keeps the
//!   first revocation's time.
//! - listHosts shows a host Up while its agent is connected to a server that is alive (one
//!   that heartbeated within [`crate::hosts::SERVER_DEAD_AFTER`]); otherwise Disconnected.
//!   Every host is of type Routing: it runs guest networks' routers.

use std::time::Duration;

use api_types::error::ApiError;
use api_types::params::Params;
use serde_json::{json, Map, Value};
use sqlx::Row;

use super::infra::{admin_only, contains, given, keyword, zone_param};
use super::{begin, page, required, unknown};
use crate::app::{internal, ApiResult, App};
use crate::resp::{self, date};
use domain::actor::Caller;
use store::db::{now_ms, opt_str};

/// The longest host name.
const MAX_HOST_NAME: usize = 64;

/// A host name is 1–64 characters of `[A-Za-z0-9._-]`.
///
/// # Errors
/// 431 naming what is wrong with it.
fn check_host_name(name: &str) -> ApiResult<()> {
    if name.is_empty() {
        return Err(ApiError::invalid_parameter(
            "Invalid host name: it is empty; a host name has 1 to 64 characters",
        ));
    }
    let length = name.chars().count();
    if length > MAX_HOST_NAME {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid host name: it has {length} characters; a host name has at most \
             {MAX_HOST_NAME}"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(ApiError::invalid_parameter(format!(
            "Invalid host name {name:?}: the character {c:?} is not allowed; a host name \
             consists of letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// Appends ` AND <cond>` to `sql`, where `$?` in `cond` stands for `value`'s placeholder.
fn and_text(sql: &mut String, binds: &mut Vec<String>, cond: &str, value: &str) {
    binds.push(value.to_string());
    sql.push_str(" AND ");
    sql.push_str(&cond.replace("$?", &format!("${}", binds.len())));
}

// ------------------------------------------------------------------------------------------
// Agent tokens.

/// createAgentToken: a new token for the agent of host `host` (made if it does not exist yet).
/// The answer holds the token; only its digest is stored.
pub(crate) async fn create_token(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    admin_only(caller)?;
    let host = required(p, "host")?;
    check_host_name(host)?;
    // Outside the transaction below: ensure_host takes the write lock itself. A host row left
    // without a token, should the rest fail, is harmless (listHosts shows it Disconnected).
    let host_id = crate::hosts::ensure_host(&app.db, host)
        .await
        .map_err(internal)?;
    let token = crate::hosts::mint().map_err(internal)?;
    let token_uuid = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    let host_uuid: String = {
        let _w = app.db.write_lock().await;
        let mut tx = begin(app).await?;
        sqlx::query(
            "INSERT INTO agent_tokens (uuid, host_id, digest, created) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_uuid.as_str())
        .bind(host_id)
        .bind(crate::hosts::digest(&token))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(internal)?;
        let host_uuid: String = sqlx::query("SELECT uuid FROM hosts WHERE id = $1")
            .bind(host_id)
            .fetch_one(&mut *tx)
            .await
            .and_then(|r| r.try_get("uuid"))
            .map_err(internal)?;
        store::events::event(
            &mut tx,
            caller.account_id,
            caller.user_id,
            "AGENT.TOKEN.CREATE",
            "INFO",
            "Completed",
            &format!("Created agent token {token_uuid} for host {host}"),
            Some(&token_uuid),
            None,
        )
        .await
        .map_err(internal)?;
        tx.commit().await.map_err(internal)?;
        host_uuid
    };
    Ok(resp::wrap(
        "agenttoken",
        json!({
            "id": token_uuid,
            "host": host,
            "hostid": host_uuid,
            "token": token,
            "created": date(now),
        }),
    ))
}

/// listAgentTokens: every token's row, without the token or its digest, oldest first.
pub(crate) async fn list_tokens(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    admin_only(caller)?;
    let mut sql = String::from(
        "SELECT t.uuid, t.created, t.revoked, t.last_used, h.name AS host_name, \
         h.uuid AS host_uuid FROM agent_tokens t JOIN hosts h ON h.id = t.host_id WHERE 1 = 1",
    );
    let mut binds = Vec::new();
    if let Some(id) = given(p, "id") {
        and_text(&mut sql, &mut binds, "t.uuid = $?", id);
    }
    if let Some(host) = given(p, "host") {
        and_text(&mut sql, &mut binds, "h.name = $?", host);
    }
    sql.push_str(" ORDER BY t.id");
    let mut q = sqlx::query(&sql);
    for b in &binds {
        q = q.bind(b.as_str());
    }
    let rows = q.fetch_all(app.db.pool()).await.map_err(internal)?;
    let kw = keyword(p);
    let mut items = Vec::with_capacity(rows.len());
    for r in &rows {
        let host: String = r.try_get("host_name").map_err(internal)?;
        if kw.as_deref().is_some_and(|k| !contains(&host, k)) {
            continue;
        }
        let revoked: Option<i64> = r.try_get("revoked").map_err(internal)?;
        let last_used: Option<i64> = r.try_get("last_used").map_err(internal)?;
        let mut m = Map::new();
        m.insert(
            "id".into(),
            json!(r.try_get::<String, _>("uuid").map_err(internal)?),
        );
        m.insert("host".into(), json!(host));
        m.insert(
            "hostid".into(),
            json!(r.try_get::<String, _>("host_uuid").map_err(internal)?),
        );
        m.insert(
            "created".into(),
            json!(date(r.try_get("created").map_err(internal)?)),
        );
        if let Some(at) = revoked {
            m.insert("revoked".into(), json!(date(at)));
        }
        if let Some(at) = last_used {
            m.insert("lastused".into(), json!(date(at)));
        }
        let state = if revoked.is_some() {
            "Revoked"
        } else {
            "Active"
        };
        m.insert("state".into(), json!(state));
        items.push(Value::Object(m));
    }
    Ok(page("agenttoken", items, p.paging()))
}

/// revokeAgentToken: the token no longer lets an agent connect. A connection made with it
/// before stays until it ends. Revoking it again succeeds and changes nothing (nor records
/// another event).
pub(crate) async fn revoke_token(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    admin_only(caller)?;
    let uuid = required(p, "id")?;
    let _w = app.db.write_lock().await;
    let mut tx = begin(app).await?;
    let row = sqlx::query(
        "SELECT t.id, h.name FROM agent_tokens t JOIN hosts h ON h.id = t.host_id \
         WHERE t.uuid = $1",
    )
    .bind(uuid)
    .fetch_optional(&mut *tx)
    .await
    .map_err(internal)?
    .ok_or_else(|| unknown(p, "id"))?;
    let id: i64 = row.try_get("id").map_err(internal)?;
    let host: String = row.try_get("name").map_err(internal)?;
    let changed =
        sqlx::query("UPDATE agent_tokens SET revoked = $1 WHERE id = $2 AND revoked IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(internal)?
            .rows_affected();
    if changed > 0 {
        store::events::event(
            &mut tx,
            caller.account_id,
            caller.user_id,
            "AGENT.TOKEN.REVOKE",
            "INFO",
            "Completed",
            &format!("Revoked agent token {uuid} of host {host}"),
            Some(uuid),
            None,
        )
        .await
        .map_err(internal)?;
    }
    tx.commit().await.map_err(internal)?;
    Ok(json!({"success": true}))
}

// ------------------------------------------------------------------------------------------
// Hosts.

/// listHosts: the hosts that run routers, with their agent's state and the server holding it.
pub(crate) async fn list_hosts(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    admin_only(caller)?;
    zone_param(app, p, "zoneid")?;
    if given(p, "type").is_some_and(|t| !t.eq_ignore_ascii_case("Routing")) {
        return Ok(page("host", Vec::new(), p.paging()));
    }
    let mut sql = String::from(
        "SELECT h.uuid, h.name, h.driver, h.epoch, h.connected, h.seen, h.created, \
         s.name AS server_name, s.address AS server_address, s.heartbeat, \
         (SELECT COUNT(*) FROM routers r WHERE r.host = h.name) AS routers \
         FROM hosts h LEFT JOIN servers s ON s.id = h.server_id WHERE 1 = 1",
    );
    let mut binds = Vec::new();
    if let Some(id) = given(p, "id") {
        and_text(&mut sql, &mut binds, "h.uuid = $?", id);
    }
    if let Some(name) = given(p, "name") {
        and_text(&mut sql, &mut binds, "h.name = $?", name);
    }
    sql.push_str(" ORDER BY h.id");
    let mut q = sqlx::query(&sql);
    for b in &binds {
        q = q.bind(b.as_str());
    }
    let rows = q.fetch_all(app.db.pool()).await.map_err(internal)?;
    let alive_since = now_ms().saturating_sub(millis(crate::hosts::SERVER_DEAD_AFTER));
    let kw = keyword(p);
    let wanted_state = given(p, "state");
    let mut items = Vec::with_capacity(rows.len());
    for r in &rows {
        let name: String = r.try_get("name").map_err(internal)?;
        let connected: i64 = r.try_get("connected").map_err(internal)?;
        let heartbeat: Option<i64> = r.try_get("heartbeat").map_err(internal)?;
        let up = connected == 1 && heartbeat.is_some_and(|hb| hb > alive_since);
        let state = if up { "Up" } else { "Disconnected" };
        if wanted_state.is_some_and(|s| !s.eq_ignore_ascii_case(state))
            || kw.as_deref().is_some_and(|k| !contains(&name, k))
        {
            continue;
        }
        let mut m = Map::new();
        m.insert(
            "id".into(),
            json!(r.try_get::<String, _>("uuid").map_err(internal)?),
        );
        m.insert("name".into(), json!(name));
        m.insert("state".into(), json!(state));
        m.insert("type".into(), json!("Routing"));
        m.insert("zoneid".into(), json!(app.site.zone_uuid));
        m.insert("zonename".into(), json!(app.site.zone_name));
        if let Some(server) = opt_str(r, "server_name").map_err(internal)? {
            m.insert("managementserverid".into(), json!(server));
        }
        if let Some(address) = opt_str(r, "server_address").map_err(internal)? {
            m.insert("managementserveraddress".into(), json!(address));
        }
        if let Some(seen) = r.try_get::<Option<i64>, _>("seen").map_err(internal)? {
            m.insert("lastpinged".into(), json!(date(seen)));
        }
        m.insert(
            "created".into(),
            json!(date(r.try_get("created").map_err(internal)?)),
        );
        if let Some(driver) = opt_str(r, "driver").map_err(internal)? {
            m.insert("agentdriver".into(), json!(driver));
        }
        m.insert(
            "routers".into(),
            json!(r.try_get::<i64, _>("routers").map_err(internal)?),
        );
        m.insert(
            "epoch".into(),
            json!(r.try_get::<i64, _>("epoch").map_err(internal)?),
        );
        items.push(Value::Object(m));
    }
    Ok(page("host", items, p.paging()))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use sqlx::Row;

    use super::check_host_name;
    use crate::app::App;
    use crate::testkit::{admin, app, call, try_call};
    use domain::actor::Caller;
    use store::db::now_ms;

    /// A user account made through createAccount, as a caller.
    async fn user(app: &App, root: &Caller) -> Caller {
        call(
            app,
            root,
            "createAccount",
            &[
                ("username", "bob"),
                ("password", "Not-the-admin-1"),
                ("email", "bob@example.org"),
                ("firstname", "Bob"),
                ("lastname", "User"),
            ],
        )
        .await;
        let r = sqlx::query(
            "SELECT u.id AS uid, u.uuid AS uuuid, a.id AS aid, a.uuid AS auuid \
             FROM users u JOIN accounts a ON a.id = u.account_id WHERE u.username = 'bob'",
        )
        .fetch_one(app.db.pool())
        .await
        .unwrap();
        Caller {
            user_id: r.try_get("uid").unwrap(),
            user_uuid: r.try_get("uuuid").unwrap(),
            account_id: r.try_get("aid").unwrap(),
            account_uuid: r.try_get("auuid").unwrap(),
            account_name: "bob".into(),
            admin: false,
            ..root.clone()
        }
    }

    async fn event_count(app: &App, event_type: &str) -> i64 {
        sqlx::query("SELECT COUNT(*) AS n FROM events WHERE event_type = $1")
            .bind(event_type)
            .fetch_one(app.db.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap()
    }

    /// The one token listed under `id`.
    async fn listed_token(app: &App, root: &Caller, id: &str) -> Value {
        let list = call(app, root, "listAgentTokens", &[("id", id)]).await;
        assert_eq!(list["count"], 1, "{list}");
        let item = list["agenttoken"][0].clone();
        let object = item.as_object().unwrap();
        assert!(!object.contains_key("token"), "{item}");
        assert!(!object.contains_key("digest"), "{item}");
        item
    }

    /// The servers' heartbeats, as housekeeping (not running in tests) would keep them.
    async fn heartbeat(app: &App, at: i64) {
        sqlx::query("UPDATE servers SET heartbeat = $1")
            .bind(at)
            .execute(app.db.pool())
            .await
            .unwrap();
    }

    fn host_named<'a>(list: &'a Value, name: &str) -> &'a Value {
        list["host"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == name)
            .unwrap_or_else(|| panic!("no host {name} in {list}"))
    }

    #[test]
    fn host_names() {
        for good in ["local", "edge-1", "a", "rack_2.dc-1", &"x".repeat(64)] {
            assert!(check_host_name(good).is_ok(), "{good}");
        }
        for bad in ["", "has space", "a/b", "ü", "semi;colon", &"x".repeat(65)] {
            let e = check_host_name(bad).unwrap_err();
            assert_eq!(e.code.code(), 431, "{bad}");
            assert!(e.text.contains("host name"), "{}", e.text);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_token_is_shown_once_stored_as_a_digest_and_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path()).await;
        let root = admin(&app).await;

        let created = call(&app, &root, "createAgentToken", &[("host", "edge-1")]).await;
        let t = &created["agenttoken"];
        let token = t["token"].as_str().unwrap().to_string();
        let id = t["id"].as_str().unwrap().to_string();
        assert_eq!(t["host"], "edge-1");
        assert!(t["created"].is_string());
        let host_uuid: String = sqlx::query("SELECT uuid FROM hosts WHERE name = 'edge-1'")
            .fetch_one(app.db.pool())
            .await
            .unwrap()
            .try_get("uuid")
            .unwrap();
        assert_eq!(t["hostid"], host_uuid.as_str());

        // Only the digest is stored: no column of the row, and no event, holds the token.
        let row = sqlx::query(
            "SELECT uuid, host_id, digest, created, revoked, last_used FROM agent_tokens",
        )
        .fetch_one(app.db.pool())
        .await
        .unwrap();
        let digest: String = row.try_get("digest").unwrap();
        assert_eq!(digest, crate::hosts::digest(&token));
        assert_ne!(digest, token);
        assert_eq!(row.try_get::<String, _>("uuid").unwrap(), id);
        assert_eq!(row.try_get::<Option<i64>, _>("revoked").unwrap(), None);
        assert_eq!(row.try_get::<Option<i64>, _>("last_used").unwrap(), None);
        let leaked: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM events WHERE description LIKE $1 OR resource_uuid = $2",
        )
        .bind(format!("%{token}%"))
        .bind(&token)
        .fetch_one(app.db.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
        assert_eq!(leaked, 0);
        // Nor do the database's files, write-ahead log included.
        for file in ["t.db", "t.db-wal"] {
            if let Ok(bytes) = std::fs::read(dir.path().join(file)) {
                assert!(
                    !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
                    "{file} holds the token"
                );
            }
        }
        assert_eq!(event_count(&app, "AGENT.TOKEN.CREATE").await, 1);

        let item = listed_token(&app, &root, &id).await;
        assert_eq!(item["state"], "Active");
        assert_eq!(item["host"], "edge-1");
        assert_eq!(item["hostid"], host_uuid.as_str());
        assert!(item.get("revoked").is_none() && item.get("lastused").is_none());

        // The token admits its host's agent, and records that it was used.
        assert_eq!(
            crate::hosts::authenticate(&app.db, &token).await.unwrap(),
            Some("edge-1".to_string())
        );
        assert!(listed_token(&app, &root, &id).await["lastused"].is_string());

        let done = call(&app, &root, "revokeAgentToken", &[("id", &id)]).await;
        assert_eq!(done, serde_json::json!({"success": true}));
        let item = listed_token(&app, &root, &id).await;
        assert_eq!(item["state"], "Revoked");
        assert!(item["revoked"].is_string());
        assert_eq!(
            crate::hosts::authenticate(&app.db, &token).await.unwrap(),
            None
        );

        // Revoking again succeeds and keeps the first time.
        let revoked_at = |app: &App| {
            let pool = app.db.pool().clone();
            async move {
                sqlx::query("SELECT revoked FROM agent_tokens")
                    .fetch_one(&pool)
                    .await
                    .unwrap()
                    .try_get::<Option<i64>, _>("revoked")
                    .unwrap()
            }
        };
        let first = revoked_at(&app).await;
        assert!(first.is_some());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let again = call(&app, &root, "revokeAgentToken", &[("id", &id)]).await;
        assert_eq!(again, serde_json::json!({"success": true}));
        assert_eq!(revoked_at(&app).await, first);
        assert_eq!(event_count(&app, "AGENT.TOKEN.REVOKE").await, 1);

        // An unknown token is an unknown id.
        let missing = uuid::Uuid::new_v4().to_string();
        let e = try_call(&app, &root, "revokeAgentToken", &[("id", &missing)])
            .await
            .unwrap_err();
        assert_eq!(e.code.code(), 431);
        assert!(e.text.contains("Invalid parameter id"), "{}", e.text);

        // A second token of the same host; the filters.
        call(&app, &root, "createAgentToken", &[("host", "edge-1")]).await;
        call(&app, &root, "createAgentToken", &[("host", "edge-2")]).await;
        let all = call(&app, &root, "listAgentTokens", &[]).await;
        assert_eq!(all["count"], 3);
        for item in all["agenttoken"].as_array().unwrap() {
            assert!(item.get("token").is_none(), "{item}");
        }
        let of_one = call(&app, &root, "listAgentTokens", &[("host", "edge-1")]).await;
        assert_eq!(of_one["count"], 2);
        let states: Vec<&str> = of_one["agenttoken"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["Revoked", "Active"]);
        let none = call(&app, &root, "listAgentTokens", &[("host", "nowhere")]).await;
        assert_eq!(none, serde_json::json!({}));
        let paged = call(
            &app,
            &root,
            "listAgentTokens",
            &[("page", "2"), ("pagesize", "2")],
        )
        .await;
        assert_eq!(paged["count"], 3);
        assert_eq!(paged["agenttoken"].as_array().unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn only_admins_may_use_them() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path()).await;
        let root = admin(&app).await;
        let bob = user(&app, &root).await;
        let created = call(&app, &root, "createAgentToken", &[("host", "edge-1")]).await;
        let id = created["agenttoken"]["id"].as_str().unwrap().to_string();

        // The answer other admin-only commands give.
        let reference = try_call(&app, &bob, "listVlanIpRanges", &[])
            .await
            .unwrap_err();
        assert_eq!(reference.code.code(), 432);
        let calls: [(&str, Vec<(&str, &str)>); 4] = [
            ("createAgentToken", vec![("host", "edge-2")]),
            ("listAgentTokens", vec![]),
            ("revokeAgentToken", vec![("id", id.as_str())]),
            ("listHosts", vec![]),
        ];
        for (cmd, args) in calls {
            let e = try_call(&app, &bob, cmd, &args).await.unwrap_err();
            assert_eq!(e.code.code(), reference.code.code(), "{cmd}");
            assert_eq!(e.text, reference.text, "{cmd}");
        }
        // Nothing was done for him.
        let hosts: i64 = sqlx::query("SELECT COUNT(*) AS n FROM hosts WHERE name = 'edge-2'")
            .fetch_one(app.db.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        assert_eq!(hosts, 0);
        assert_eq!(listed_token(&app, &root, &id).await["state"], "Active");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bad_host_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path()).await;
        let root = admin(&app).await;
        let long = "h".repeat(65);
        for bad in ["", "two words", "a/b", "émile", "x;y", long.as_str()] {
            let e = try_call(&app, &root, "createAgentToken", &[("host", bad)])
                .await
                .unwrap_err();
            assert_eq!(e.code.code(), 431, "{bad:?}: {}", e.text);
        }
        let e = try_call(&app, &root, "createAgentToken", &[("host", "a b")])
            .await
            .unwrap_err();
        assert!(e.text.contains("' '"), "{}", e.text);
        let e = try_call(&app, &root, "createAgentToken", &[("host", &long)])
            .await
            .unwrap_err();
        assert!(e.text.contains("65 characters"), "{}", e.text);
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM agent_tokens")
            .fetch_one(app.db.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
        assert_eq!(n, 0);
        let longest = "h".repeat(64);
        call(&app, &root, "createAgentToken", &[("host", &longest)]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hosts_are_listed_with_their_state_and_routers() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path()).await;
        let root = admin(&app).await;
        let zone = app.site.zone_uuid.clone();
        heartbeat(&app, now_ms()).await;

        let list = call(&app, &root, "listHosts", &[]).await;
        assert_eq!(list["count"], 1, "{list}");
        let local = host_named(&list, "local");
        assert_eq!(local["state"], "Up");
        assert_eq!(local["type"], "Routing");
        assert_eq!(local["zoneid"], zone.as_str());
        assert_eq!(local["zonename"], app.site.zone_name.as_str());
        assert_eq!(local["managementserverid"], "test");
        assert_eq!(local["managementserveraddress"], "http://127.0.0.1:0");
        assert!(local["agentdriver"].is_string(), "{local}");
        assert!(local["lastpinged"].is_string() && local["created"].is_string());
        assert_eq!(local["routers"], 0);
        assert!(local["epoch"].as_i64().unwrap() >= 1);

        let offerings = call(&app, &root, "listNetworkOfferings", &[]).await;
        let offering = offerings["networkoffering"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        call(
            &app,
            &root,
            "createNetwork",
            &[
                ("name", "n1"),
                ("networkofferingid", &offering),
                ("zoneid", &zone),
            ],
        )
        .await;
        call(&app, &root, "createAgentToken", &[("host", "edge-1")]).await;
        heartbeat(&app, now_ms()).await;

        let list = call(&app, &root, "listHosts", &[]).await;
        assert_eq!(list["count"], 2, "{list}");
        let local = host_named(&list, "local");
        assert_eq!(local["state"], "Up");
        assert_eq!(local["routers"], 1);
        let edge = host_named(&list, "edge-1");
        assert_eq!(edge["state"], "Disconnected");
        assert_eq!(edge["routers"], 0);
        assert_eq!(edge["epoch"], 0);
        let edge = edge.as_object().unwrap();
        for absent in [
            "agentdriver",
            "lastpinged",
            "managementserverid",
            "managementserveraddress",
        ] {
            assert!(!edge.contains_key(absent), "{absent}");
        }
        let edge_id = edge["id"].as_str().unwrap().to_string();

        // Filters.
        let up = call(&app, &root, "listHosts", &[("state", "Up")]).await;
        assert_eq!(up["count"], 1);
        assert_eq!(up["host"][0]["name"], "local");
        let down = call(&app, &root, "listHosts", &[("state", "disconnected")]).await;
        assert_eq!(down["count"], 1);
        assert_eq!(down["host"][0]["name"], "edge-1");
        let by_id = call(&app, &root, "listHosts", &[("id", &edge_id)]).await;
        assert_eq!(by_id["host"][0]["name"], "edge-1");
        let by_name = call(&app, &root, "listHosts", &[("name", "local")]).await;
        assert_eq!(by_name["count"], 1);
        let by_word = call(&app, &root, "listHosts", &[("keyword", "EDGE")]).await;
        assert_eq!(by_word["host"][0]["name"], "edge-1");
        let routing = call(&app, &root, "listHosts", &[("type", "Routing")]).await;
        assert_eq!(routing["count"], 2);
        let storage = call(&app, &root, "listHosts", &[("type", "Storage")]).await;
        assert_eq!(storage, serde_json::json!({}));
        let in_zone = call(&app, &root, "listHosts", &[("zoneid", &zone)]).await;
        assert_eq!(in_zone["count"], 2);
        let other = uuid::Uuid::new_v4().to_string();
        let e = try_call(&app, &root, "listHosts", &[("zoneid", &other)])
            .await
            .unwrap_err();
        assert_eq!(e.code.code(), 431);
        let paged = call(
            &app,
            &root,
            "listHosts",
            &[("page", "2"), ("pagesize", "1")],
        )
        .await;
        assert_eq!(paged["count"], 2);
        assert_eq!(paged["host"][0]["name"], "edge-1");

        // A host whose server stopped heartbeating is not Up, though still marked connected.
        heartbeat(&app, now_ms() - 60_000).await;
        let list = call(&app, &root, "listHosts", &[("name", "local")]).await;
        assert_eq!(list["host"][0]["state"], "Disconnected");
    }
}
