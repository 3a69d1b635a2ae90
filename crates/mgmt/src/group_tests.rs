//! Group commit of rule creations through the real dispatcher, on SQLite and PostgreSQL with
//! the dry-run agent: requests held behind a network's lock are written as one group in
//! which each is answered as it would be alone (a conflict or a limit refuses only its own
//! request), racing creations accept every rule once, and queryAsyncJobResult answers a
//! pending job from memory without ever showing an ended job pending past its end here.

use std::time::{Duration, Instant};

use api_types::error::ApiError;
use serde_json::Value;

use crate::app::App;
use crate::testkit::{admin, app, app_on, call, on_postgres, postgres_database, try_call, user};
use domain::actor::Caller;
use domain::ids::NetworkId;
use domain::job::{JobStatus, Kind, NewJob, Outcome, Payload};
use store::db::Db;
use store::ChangeTx;

/// A network made by `who`: its internal id, its uuid and its source-NAT address's uuid.
async fn network(app: &App, who: &Caller, name: &str) -> (NetworkId, String, String) {
    let zone = app.site.zone_uuid.clone();
    let offerings = call(app, who, "listNetworkOfferings", &[]).await;
    let offering = offerings["networkoffering"][0]["id"].as_str().unwrap();
    let net = call(
        app,
        who,
        "createNetwork",
        &[
            ("name", name),
            ("displaytext", name),
            ("networkofferingid", offering),
            ("zoneid", &zone),
        ],
    )
    .await;
    let uuid = net["network"]["id"].as_str().unwrap().to_string();
    let ips = call(
        app,
        who,
        "listPublicIpAddresses",
        &[("associatednetworkid", &uuid)],
    )
    .await;
    let ip = ips["publicipaddress"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (id, _) = store::testing::network_router(&app.db, &uuid)
        .await
        .unwrap();
    (NetworkId::from(id), uuid, ip)
}

/// createFirewallRule of TCP `port` from `cidr` on `ip`.
async fn open(app: &App, who: &Caller, ip: &str, port: u16, cidr: &str) -> Result<Value, ApiError> {
    open_range(app, who, ip, (port, port), cidr).await
}

/// Holds `network`'s lock (and, on SQLite, the write lock) as a creation group would.
async fn hold(app: &App, network: NetworkId) -> ChangeTx {
    let mut change = app.db.change(Some(network)).await.unwrap();
    change.lock_network().await.unwrap();
    change
}

/// Waits until `n` requests wait for `network`'s writer.
async fn queued(app: &App, network: NetworkId, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = app.creations.queued(network);
        if now >= n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{now} of {n} requests queued after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sends `requests` (port, source) one after the other while `network`'s lock is held, each
/// only once the previous one is queued, then lets them go: they are written as one group.
/// Their answers, in the order sent.
async fn one_group(
    app: &App,
    who: &Caller,
    network: NetworkId,
    ip: &str,
    requests: &[(u16, &str)],
) -> Vec<Result<Value, ApiError>> {
    let groups = app.metrics.creation_groups.get();
    let held = hold(app, network).await;
    let mut tasks = Vec::new();
    for (i, (port, cidr)) in requests.iter().enumerate() {
        let (app2, who, ip) = (app.clone(), who.clone(), ip.to_string());
        let (port, cidr) = (*port, cidr.to_string());
        tasks.push(tokio::spawn(async move {
            open(&app2, &who, &ip, port, &cidr).await
        }));
        queued(app, network, i + 1).await;
    }
    drop(held);
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert_eq!(
        app.metrics.creation_groups.get(),
        groups + 1,
        "the held requests were not written as one group"
    );
    answers
}

fn jobid(v: &Value) -> String {
    v["jobid"].as_str().unwrap().to_string()
}

async fn a_conflict_fails_alone_in_its_group(app: &App) {
    let root = admin(app).await;
    let (net, _, ip) = network(app, &root, "group-conflict").await;
    let answers = one_group(
        app,
        &root,
        net,
        &ip,
        &[
            (100, "10.0.0.0/8"),
            (101, "10.0.0.0/8"),
            // The same rule as the first: refused against the group's own earlier request.
            (100, "10.0.0.0/8"),
            (102, "10.0.0.0/8"),
            // A different source: no conflict.
            (100, "192.0.2.0/24"),
        ],
    )
    .await;
    let in_group = answers[2].clone().unwrap_err();
    let mut jobs = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        if i != 2 {
            let v = a
                .as_ref()
                .unwrap_or_else(|e| panic!("request {i}: {}", e.text));
            jobs.push(jobid(v));
        }
    }
    let distinct: std::collections::BTreeSet<_> = jobs.iter().collect();
    assert_eq!(distinct.len(), 4, "each request has its own job: {jobs:?}");
    // The same request alone, now that the group is written, gets the same answer.
    let alone = open(app, &root, &ip, 100, "10.0.0.0/8").await.unwrap_err();
    assert_eq!(
        (in_group.code, in_group.cs_code, &in_group.text),
        (alone.code, alone.cs_code, &alone.text)
    );
    for job in &jobs {
        let (status, result) =
            crate::testkit::wait(app, &serde_json::json!({ "jobid": job })).await;
        assert_eq!(status, 1, "{result}");
    }
    let listed = call(
        app,
        &root,
        "listFirewallRules",
        &[("ipaddressid", &ip), ("pagesize", "-1")],
    )
    .await;
    assert_eq!(listed["count"], 4, "{listed}");
    eprintln!(
        "group: 5 requests in one group, 4 accepted, 1 refused with {} {}",
        in_group.code.code(),
        in_group.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conflicting_request_fails_alone_in_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    a_conflict_fails_alone_in_its_group(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_conflicting_request_fails_alone_in_its_group_on_postgres() {
    on_postgres("group_conflict", a_conflict_fails_alone_in_its_group).await;
}

async fn a_group_counts_against_the_limit(app: &App) {
    let root = admin(app).await;
    let tenant = user(app, &root, "grouper").await;
    let (net, _, ip) = network(app, &tenant, "group-limit").await;
    open(app, &tenant, &ip, 1, "10.0.0.0/8").await.unwrap();
    call(
        app,
        &root,
        "updateResourceLimit",
        &[
            ("account", "grouper"),
            ("domainid", &root.domain_uuid),
            ("resourcetype", "1000"),
            ("max", "4"),
        ],
    )
    .await;
    let requests: Vec<(u16, &str)> = (10..16).map(|p| (p, "10.0.0.0/8")).collect();
    let answers = one_group(app, &tenant, net, &ip, &requests).await;
    // One rule held and a limit of 4: the first three of the group are taken, the rest refused.
    for (i, a) in answers.iter().enumerate() {
        if i < 3 {
            assert!(a.is_ok(), "request {i}: {a:?}");
        } else {
            let e = a.as_ref().unwrap_err();
            assert_eq!(e.code.code(), 535, "request {i}: {}", e.text);
            assert!(
                e.text
                    .contains("type 'network_rule' for account name=grouper"),
                "{}",
                e.text
            );
        }
    }
    let listed = call(
        app,
        &tenant,
        "listFirewallRules",
        &[("ipaddressid", &ip), ("pagesize", "-1")],
    )
    .await;
    assert_eq!(listed["count"], 4, "{listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_takes_no_more_than_the_limit_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    a_group_counts_against_the_limit(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_takes_no_more_than_the_limit_leaves_on_postgres() {
    on_postgres("group_limit", a_group_counts_against_the_limit).await;
}

/// 96 creations from as many tasks, through `servers` in turn, of 24 distinct rules (each
/// asked four times): every rule is accepted exactly once, the other three get a conflict.
async fn racing_creations(servers: &[App]) {
    let app = &servers[0];
    let root = admin(app).await;
    let (_, _, ip) = network(app, &root, "group-race").await;
    let mut tasks = Vec::new();
    for i in 0..96u16 {
        let app = servers[usize::from(i) % servers.len()].clone();
        let (root, ip) = (root.clone(), ip.clone());
        tasks.push(tokio::spawn(async move {
            let port = 2000 + i % 24;
            (port, open(&app, &root, &ip, port, "10.0.0.0/8").await)
        }));
    }
    let mut accepted = std::collections::BTreeMap::new();
    let mut refused = 0;
    for task in tasks {
        let (port, answer) = task.await.unwrap();
        match answer {
            Ok(v) => {
                let earlier = accepted.insert(port, jobid(&v));
                assert!(earlier.is_none(), "port {port} accepted twice");
            }
            Err(e) => {
                assert_eq!(e.code.code(), 537, "port {port}: {}", e.text);
                refused += 1;
            }
        }
    }
    assert_eq!((accepted.len(), refused), (24, 72));
    let listed = call(
        app,
        &root,
        "listFirewallRules",
        &[("ipaddressid", &ip), ("pagesize", "-1")],
    )
    .await;
    assert_eq!(listed["count"], 24, "{listed}");
    let groups: u64 = servers
        .iter()
        .map(|s| s.metrics.creation_groups.get())
        .sum();
    eprintln!("racing creations: 96 requests, 24 accepted, 72 refused, in {groups} groups");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creations_accept_each_rule_once() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    racing_creations(&[app]).await;
}

/// Two servers on one PostgreSQL database, each with its own pool and its own creation
/// queues: only the database's row lock orders their groups.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_creations_on_two_servers_accept_each_rule_once_on_postgres() {
    let pg = postgres_database("group_race").await;
    let dir = tempfile::tempdir().unwrap();
    let first = app_on(dir.path(), &pg.url).await;
    let mut second = first.clone();
    second.db = Db::connect(&pg.url).await.unwrap();
    second.creations = std::sync::Arc::default();
    second.metrics = std::sync::Arc::new(crate::metrics::Metrics::new());
    racing_creations(&[first.clone(), second.clone()]).await;
    second.db.pool().close().await;
    first.db.pool().close().await;
    pg.drop().await;
}

/// queryAsyncJobResult: a pending job as its owner sees it (twice: the second answer comes
/// from memory), as another account sees it (unknown), and once it ended on this server,
/// ended at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pending_job_is_answered_from_memory_to_its_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let root = admin(&app).await;
    let tenant = user(&app, &root, "poller").await;
    let other = user(&app, &root, "stranger").await;
    // A job of no network: no worker ends it, so it stays pending until the test ends it.
    let mut change = app.db.change(None).await.unwrap();
    let (job_id, job) = change
        .job(
            &tenant,
            NewJob {
                command: "createFirewallRule",
                kind: Kind::Change,
                network_id: None,
                payload: Payload::new(Outcome::Success, "NET.RULEADD", "testing".into(), "failed"),
                instance_type: None,
                instance_uuid: None,
            },
            None,
        )
        .await
        .unwrap();
    let _no_network = change.commit().await.unwrap();
    let query = |who: &Caller| {
        let (app, who, job) = (app.clone(), who.clone(), job.clone());
        async move { try_call(&app, &who, "queryAsyncJobResult", &[("jobid", &job)]).await }
    };
    let first = query(&tenant).await.unwrap();
    assert_eq!(first["jobstatus"], 0, "{first}");
    let second = query(&tenant).await.unwrap();
    assert_eq!(first, second);
    let e = query(&other).await.unwrap_err();
    assert_eq!(e.code.code(), 431);
    assert_eq!(e.text, format!("Unable to find a job by id {job}"));
    let mut change = app.db.change(None).await.unwrap();
    let ended = change
        .finish_job(
            job_id,
            JobStatus::Succeeded,
            0,
            &serde_json::json!({"ok": true}),
        )
        .await
        .unwrap();
    assert!(ended);
    let _no_network = change.commit().await.unwrap();
    // Ended on this server: no poll shows it pending any more.
    let after = query(&tenant).await.unwrap();
    assert_eq!(after["jobstatus"], 1, "{after}");
    assert_eq!(after["jobresult"]["ok"], true, "{after}");
    let e = query(&other).await.unwrap_err();
    assert_eq!(e.code.code(), 431);
}

/// Counts the statements sent from inside a creation group's span (`creation_group`), for the
/// whole test process: a tracing subscriber that sees the database library's event for each
/// statement (on PostgreSQL, sent from the task that runs the statement; SQLite's are sent
/// from its own thread, outside the span, so the count is taken on PostgreSQL).
mod statements {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock};

    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    #[derive(Default)]
    pub(super) struct Counter {
        next: AtomicU64,
        groups: Mutex<HashMap<u64, bool>>,
        statements: AtomicU64,
    }

    thread_local! {
        static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
    }

    impl Counter {
        /// The process's counter, installed as the global subscriber on first use.
        pub(super) fn get() -> &'static Counter {
            static COUNTER: OnceLock<&'static Counter> = OnceLock::new();
            COUNTER.get_or_init(|| {
                let counter: &'static Counter = Box::leak(Box::default());
                tracing::subscriber::set_global_default(Handle(counter))
                    .expect("no other global subscriber in this test process");
                counter
            })
        }

        /// The statements sent inside creation groups so far.
        pub(super) fn statements(&self) -> u64 {
            self.statements.load(Ordering::SeqCst)
        }

        fn in_group(&self) -> bool {
            let groups = self.groups.lock().unwrap();
            ENTERED.with(|e| e.borrow().iter().any(|id| groups.get(id) == Some(&true)))
        }
    }

    struct Handle(&'static Counter);

    impl Subscriber for Handle {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }

        fn new_span(&self, span: &Attributes<'_>) -> Id {
            let id = self.0.next.fetch_add(1, Ordering::SeqCst) + 1;
            self.0
                .groups
                .lock()
                .unwrap()
                .insert(id, span.metadata().name() == "creation_group");
            Id::from_u64(id)
        }

        fn record(&self, _: &Id, _: &Record<'_>) {}

        fn record_follows_from(&self, _: &Id, _: &Id) {}

        fn event(&self, event: &Event<'_>) {
            if event.metadata().target() == store::db::STATEMENT_EVENT_TARGET && self.0.in_group() {
                self.0.statements.fetch_add(1, Ordering::SeqCst);
            }
        }

        fn enter(&self, span: &Id) {
            ENTERED.with(|e| e.borrow_mut().push(span.into_u64()));
        }

        fn exit(&self, span: &Id) {
            let id = span.into_u64();
            ENTERED.with(|e| {
                let mut e = e.borrow_mut();
                if let Some(at) = e.iter().rposition(|x| *x == id) {
                    e.remove(at);
                }
            });
        }
    }
}

/// Groups of 2 and of 24 creations by a limited account send the same number of statements:
/// the group reads its neighbours and the account's limits once and writes each table once.
async fn a_group_costs_statements_independent_of_its_size(app: &App) {
    let counter = statements::Counter::get();
    let root = admin(app).await;
    let tenant = user(app, &root, "counted").await;
    let (net, _, ip) = network(app, &tenant, "group-count").await;
    call(
        app,
        &root,
        "updateResourceLimit",
        &[
            ("account", "counted"),
            ("domainid", &root.domain_uuid),
            ("resourcetype", "1000"),
            ("max", "1000"),
        ],
    )
    .await;
    let mut counts = Vec::new();
    for (size, base) in [(2u16, 100u16), (24, 200)] {
        let before = counter.statements();
        let requests: Vec<(u16, &str)> = (base..base + size).map(|p| (p, "10.0.0.0/8")).collect();
        let answers = one_group(app, &tenant, net, &ip, &requests).await;
        for (i, a) in answers.iter().enumerate() {
            assert!(a.is_ok(), "request {i}: {a:?}");
        }
        counts.push((size, counter.statements() - before));
    }
    eprintln!("group: statements per group of (requests, statements): {counts:?}");
    assert!(counts[0].1 > 0, "no statement was counted: {counts:?}");
    assert_eq!(
        counts[0].1, counts[1].1,
        "a group's statements grow with its size: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_group_costs_statements_independent_of_its_size_on_postgres() {
    statements::Counter::get();
    on_postgres(
        "group_count",
        a_group_costs_statements_independent_of_its_size,
    )
    .await;
}

/// createFirewallRule of TCP `start`-`end` from `cidr` on `ip`.
async fn open_range(
    app: &App,
    who: &Caller,
    ip: &str,
    (start, end): (u16, u16),
    cidr: &str,
) -> Result<Value, ApiError> {
    let (start, end) = (start.to_string(), end.to_string());
    try_call(
        app,
        who,
        "createFirewallRule",
        &[
            ("ipaddressid", ip),
            ("protocol", "tcp"),
            ("startport", &start),
            ("endport", &end),
            ("cidrlist", cidr),
        ],
    )
    .await
}

async fn a_wide_rule_is_met_far_above_its_start(app: &App) {
    let root = admin(app).await;
    let (_, _, ip) = network(app, &root, "group-wide").await;
    let cidr = "10.0.0.0/8";
    // Rules starting above the wide one's start, so an index walk from the new rule's end
    // downwards meets them first.
    for ports in [(1000, 5000), (6000, 6000), (7000, 7100), (4000, 4000)] {
        if ports == (4000, 4000) {
            let e = open_range(app, &root, &ip, ports, cidr).await.unwrap_err();
            assert!(e.text.contains("1000-5000"), "{}", e.text);
            continue;
        }
        open_range(app, &root, &ip, ports, cidr)
            .await
            .unwrap_or_else(|e| panic!("{ports:?}: {}", e.text));
    }
    // Met: the wide rule's ends, its inside, ranges reaching into it from either side.
    for ports in [
        (5000, 5000),
        (1000, 1000),
        (4999, 5999),
        (1, 1000),
        (2000, 2001),
    ] {
        let e = open_range(app, &root, &ip, ports, cidr).await.unwrap_err();
        assert!(e.text.contains("1000-5000"), "{ports:?}: {}", e.text);
    }
    assert!(open_range(app, &root, &ip, (7050, 7050), cidr)
        .await
        .is_err());
    // Not met: just outside it, between the others, and another source.
    for (ports, from) in [
        ((999, 999), cidr),
        ((5001, 5999), cidr),
        ((6001, 6999), cidr),
        ((1000, 5000), "192.0.2.0/24"),
    ] {
        open_range(app, &root, &ip, ports, from)
            .await
            .unwrap_or_else(|e| panic!("{ports:?} from {from}: {}", e.text));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wide_rule_conflicts_with_a_new_one_far_above_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    a_wide_rule_is_met_far_above_its_start(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wide_rule_conflicts_with_a_new_one_far_above_its_start_on_postgres() {
    on_postgres("group_wide", a_wide_rule_is_met_far_above_its_start).await;
}
