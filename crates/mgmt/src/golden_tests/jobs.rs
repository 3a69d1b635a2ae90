//! Async jobs: queryAsyncJobResult and listAsyncJobs, as the owner, another account and the
//! admin.

use super::{check, inner, Session, UNKNOWN};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs() {
    check("jobs").await;
}

pub(super) async fn script(s: &mut Session) {
    let sh = s.shared().await;
    s.account("alice").await;
    s.account("bob").await;
    let net = s.network("alice", &sh, &sh.offering, "alice-net").await;
    let reply = s
        .call("alice", "associateIpAddress", &[("networkid", &net)])
        .await;
    let job = inner(&reply)["jobid"].as_str().unwrap().to_string();
    s.call("alice", "queryAsyncJobResult", &[("jobid", &job)])
        .await;
    s.call("alice", "listAsyncJobs", &[]).await;
    s.call(
        "alice",
        "listAsyncJobs",
        &[("startdate", "2000-01-01T00:00:00+0000")],
    )
    .await;
    s.call("alice", "queryAsyncJobResult", &[]).await;
    s.call("alice", "queryAsyncJobResult", &[("jobid", UNKNOWN)])
        .await;
    s.call("alice", "queryAsyncJobResult", &[("jobid", "not-a-uuid")])
        .await;
    s.call("bob", "queryAsyncJobResult", &[("jobid", &job)])
        .await;
    s.call("bob", "listAsyncJobs", &[]).await;
    s.call("admin", "listAsyncJobs", &[("listall", "true")])
        .await;
}
