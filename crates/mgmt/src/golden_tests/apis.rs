//! listApis: one command described, an unknown name, and the whole catalogue.

use super::{check, Session};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apis() {
    check("apis").await;
}

pub(super) async fn script(s: &mut Session) {
    s.account("alice").await;
    s.call("alice", "listApis", &[("name", "createFirewallRule")])
        .await;
    s.call("alice", "listApis", &[("name", "listZones")]).await;
    s.call("alice", "listApis", &[("name", "noSuchCommand")])
        .await;
    s.call("alice", "noSuchCommand", &[]).await;
}
