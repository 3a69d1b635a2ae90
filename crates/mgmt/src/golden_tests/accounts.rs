//! Accounts, users and their keys; the domain they live in.

use super::{check, id, inner, Session, UNKNOWN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts() {
    check("accounts").await;
}

pub(super) async fn script(s: &mut Session) {
    let created = s
        .call(
            "admin",
            "createAccount",
            &[
                ("accounttype", "0"),
                ("email", "carol@example.org"),
                ("firstname", "Carol"),
                ("lastname", "Golden"),
                ("username", "carol"),
                ("password", "carol-password"),
            ],
        )
        .await;
    let account = inner(&created)["account"].clone();
    let user = id(&account["user"][0]);
    let domain = account["domainid"].as_str().unwrap().to_string();
    s.call("admin", "registerUserKeys", &[("id", &user)]).await;
    s.account("alice").await;

    s.call("admin", "listAccounts", &[]).await;
    s.call("admin", "listAccounts", &[("listall", "true")])
        .await;
    s.call(
        "admin",
        "listAccounts",
        &[("name", "carol"), ("listall", "true")],
    )
    .await;
    s.call(
        "admin",
        "listAccounts",
        &[("domainid", &domain), ("listall", "true")],
    )
    .await;
    s.call("admin", "listUsers", &[("listall", "true")]).await;
    s.call("admin", "listUsers", &[("id", &user)]).await;
    s.call("alice", "listAccounts", &[]).await;
    s.call("alice", "listUsers", &[]).await;

    s.call("admin", "createAccount", &[("username", "dave")])
        .await;
    s.call(
        "admin",
        "createAccount",
        &[
            ("accounttype", "0"),
            ("email", "carol@example.org"),
            ("firstname", "Carol"),
            ("lastname", "Again"),
            ("username", "carol"),
            ("password", "carol-password"),
        ],
    )
    .await;
    s.call(
        "admin",
        "createAccount",
        &[
            ("email", "erin@example.org"),
            ("firstname", "Erin"),
            ("lastname", "Golden"),
            ("username", "erin"),
            ("password", "erin-password"),
            ("domainid", UNKNOWN),
        ],
    )
    .await;
    s.call(
        "alice",
        "createAccount",
        &[
            ("email", "eve@example.org"),
            ("firstname", "Eve"),
            ("lastname", "Golden"),
            ("username", "eve"),
            ("password", "eve-password"),
        ],
    )
    .await;
    s.call("alice", "registerUserKeys", &[("id", &user)]).await;
    s.call("alice", "listUsers", &[("id", &user)]).await;
    s.call("alice", "listAccounts", &[("id", &id(&account))])
        .await;
    s.call("admin", "registerUserKeys", &[("id", UNKNOWN)])
        .await;

    // Domains: a user sees its own; details=min leaves the counts out; an unknown detail,
    // or another domain's id, is refused.
    s.call("admin", "listDomains", &[("listall", "true")]).await;
    s.call("admin", "listDomains", &[("details", "min")]).await;
    s.call("alice", "listDomains", &[]).await;
    s.call("alice", "listDomains", &[("details", "everything")])
        .await;
    s.call("admin", "listDomains", &[("id", UNKNOWN)]).await;
    s.call("admin", "listDomains", &[("level", "1")]).await;
    // No projects exist; what clients read about the cloud and its protocols.
    s.call("alice", "listProjects", &[]).await;
    s.call("alice", "listProjects", &[("id", UNKNOWN)]).await;
    s.call("alice", "listCapabilities", &[]).await;
    s.call(
        "alice",
        "listNetworkProtocols",
        &[("option", "protocolnumber")],
    )
    .await;
    s.call("alice", "listNetworkProtocols", &[("option", "IcmpType")])
        .await;
    s.call("alice", "listNetworkProtocols", &[("option", "ports")])
        .await;
}
