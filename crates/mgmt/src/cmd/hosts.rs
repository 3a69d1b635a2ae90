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
use serde_json::{json, Value};

use super::infra::{admin_only, contains, given, keyword, zone_param};
use super::{page, required, unknown};
use crate::app::{internal, store_error, ApiResult, App};
use crate::resp::{self, accounts as shape};
use domain::actor::Caller;
use store::db::now_ms;

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

// ------------------------------------------------------------------------------------------
// Agent tokens.

/// createAgentToken: a new token for the agent of host `host` (made if it does not exist yet).
/// The answer holds the token; only its digest is stored.
pub(crate) async fn create_token(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    admin_only(caller)?;
    let host = required(p, "host")?;
    check_host_name(host)?;
    let token = crate::password::agent_token().map_err(internal)?;
    let token_uuid = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    // The host's row, the token's and the event in one change.
    let mut change = app.db.change(None).await.map_err(store_error)?;
    let (host_id, host_uuid) = store::tokens::ensure_host(change.conn(), host, now)
        .await
        .map_err(store_error)?;
    store::tokens::insert(
        change.conn(),
        &token_uuid,
        host_id,
        &crate::hosts::digest(&token),
        now,
    )
    .await
    .map_err(store_error)?;
    store::events::event(
        change.conn(),
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
    .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(resp::wrap(
        "agenttoken",
        shape::new_token(&token_uuid, host, &host_uuid, &token, now),
    ))
}

/// listAgentTokens: every token's row, without the token or its digest, oldest first.
pub(crate) async fn list_tokens(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    admin_only(caller)?;
    let tokens = store::tokens::list(&app.db, given(p, "id"), given(p, "host"))
        .await
        .map_err(store_error)?;
    let kw = keyword(p);
    let items = tokens
        .iter()
        .filter(|t| kw.as_deref().is_none_or(|k| contains(&t.host_name, k)))
        .map(shape::token)
        .collect();
    Ok(page("agenttoken", items, p.paging()))
}

/// revokeAgentToken: the token no longer lets an agent connect. A connection made with it
/// before stays until it ends. Revoking it again succeeds and changes nothing (nor records
/// another event).
pub(crate) async fn revoke_token(app: &App, caller: &Caller, p: &Params) -> ApiResult<Value> {
    admin_only(caller)?;
    let uuid = required(p, "id")?;
    let mut change = app.db.change(None).await.map_err(store_error)?;
    let (id, host) = store::tokens::by_uuid(change.conn(), uuid)
        .await
        .map_err(store_error)?
        .ok_or_else(|| unknown(p, "id"))?;
    let changed = store::tokens::revoke(change.conn(), id, now_ms())
        .await
        .map_err(store_error)?;
    if changed {
        store::events::event(
            change.conn(),
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
        .map_err(store_error)?;
    }
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
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
    let hosts = store::tokens::hosts(&app.db, given(p, "id"), given(p, "name"))
        .await
        .map_err(store_error)?;
    let alive_since = now_ms().saturating_sub(millis(crate::hosts::SERVER_DEAD_AFTER));
    let kw = keyword(p);
    let wanted_state = given(p, "state");
    let zone = (app.site.zone_uuid.as_str(), app.site.zone_name.as_str());
    let mut items = Vec::with_capacity(hosts.len());
    for h in &hosts {
        let up = h.connected && h.heartbeat.is_some_and(|hb| hb > alive_since);
        let state = if up { "Up" } else { "Disconnected" };
        if wanted_state.is_some_and(|s| !s.eq_ignore_ascii_case(state))
            || kw.as_deref().is_some_and(|k| !contains(&h.name, k))
        {
            continue;
        }
        items.push(shape::host(h, state, zone));
    }
    Ok(page("host", items, p.paging()))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

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
        let ids = store::testing::user_ids(&app.db, "bob").await.unwrap();
        Caller {
            user_id: ids.user_id,
            user_uuid: ids.user_uuid,
            account_id: ids.account_id,
            account_uuid: ids.account_uuid,
            account_name: "bob".into(),
            admin: false,
            ..root.clone()
        }
    }

    async fn event_count(app: &App, event_type: &str) -> i64 {
        store::testing::event_count(&app.db, event_type)
            .await
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
        store::testing::set_server_heartbeats(&app.db, at)
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
        let host_uuid = store::testing::host_uuid(&app.db, "edge-1").await.unwrap();
        assert_eq!(t["hostid"], host_uuid.as_str());

        // Only the digest is stored: no column of the row, and no event, holds the token.
        let row = store::testing::agent_tokens(&app.db)
            .await
            .unwrap()
            .remove(0);
        let digest = row.digest;
        assert_eq!(digest, crate::hosts::digest(&token));
        assert_ne!(digest, token);
        assert_eq!(row.uuid, id);
        assert_eq!(row.revoked, None);
        assert_eq!(row.last_used, None);
        let leaked = store::testing::events_mentioning(&app.db, &token)
            .await
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
            let db = app.db.clone();
            async move { store::testing::agent_tokens(&db).await.unwrap()[0].revoked }
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
        let hosts = store::testing::host_count(&app.db, "edge-2").await.unwrap();
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
        let n = store::testing::agent_tokens(&app.db).await.unwrap().len();
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
