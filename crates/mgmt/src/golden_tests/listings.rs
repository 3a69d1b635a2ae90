//! What every account may list: zones, network and service offerings, templates.

use super::{check, Session, UNKNOWN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings() {
    check("listings").await;
}

pub(super) async fn script(s: &mut Session) {
    s.account("alice").await;
    for who in ["admin", "alice"] {
        s.call(who, "listZones", &[]).await;
        s.call(who, "listNetworkOfferings", &[]).await;
        s.call(who, "listServiceOfferings", &[]).await;
        s.call(who, "listTemplates", &[("templatefilter", "featured")])
            .await;
    }
    s.call(
        "alice",
        "listZones",
        &[("available", "true"), ("showcapacities", "true")],
    )
    .await;
    s.call("alice", "listZones", &[("id", UNKNOWN)]).await;
    s.call(
        "alice",
        "listTags",
        &[("resourcetype", "Network"), ("key", "env")],
    )
    .await;
    s.call("admin", "listTags", &[("account", "nobody")]).await;
    s.call("alice", "listZones", &[("name", "nowhere")]).await;
    s.call(
        "alice",
        "listNetworkOfferings",
        &[("guestiptype", "Shared")],
    )
    .await;
    s.call(
        "alice",
        "listNetworkOfferings",
        &[("page", "2"), ("pagesize", "1")],
    )
    .await;
    s.call("alice", "listServiceOfferings", &[("id", UNKNOWN)])
        .await;
    // The routers' system offering: root admins only.
    s.call("admin", "listServiceOfferings", &[("issystem", "true")])
        .await;
    s.call(
        "admin",
        "listServiceOfferings",
        &[("systemvmtype", "domainrouter")],
    )
    .await;
    s.call("alice", "listServiceOfferings", &[("issystem", "true")])
        .await;
    s.call(
        "admin",
        "listServiceOfferings",
        &[("systemvmtype", "toaster")],
    )
    .await;
    s.call("alice", "listTemplates", &[]).await;
    s.call("alice", "listTemplates", &[("templatefilter", "self")])
        .await;
    s.call("alice", "listTemplates", &[("templatefilter", "sideways")])
        .await;
    s.call("alice", "listZones", &[("pagesize", "600")]).await;
}
