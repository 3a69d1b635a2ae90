//! The rule statements on both databases: a listing's filters, pages and counts; a rule's
//! object stored and rendered whole; the job still carrying a rule; a forward's new values.

use domain::actor::Caller;
use domain::ids::{AccountId, IpId, NetworkId, RuleId, VmId};
use domain::job::{JobStatus, Kind, NewJob, Outcome, Payload};
use domain::model::{NewRule, Purpose, Traffic};
use serde_json::Value;

use super::forwards::{self, ForwardChange};
use super::list::{self, RuleQuery};
use super::{insert, object_json, store_json};
use crate::db::Db;

const SEED: [&str; 8] = [
    "INSERT INTO domains (uuid, name, path, created) VALUES ('d', 'ROOT', 'ROOT', 0)",
    "INSERT INTO accounts (uuid, name, domain_id, account_type, state, created) \
     VALUES ('a', 'admin', 1, 1, 'enabled', 0)",
    "INSERT INTO users (uuid, account_id, username, password_hash, email, firstname, \
     lastname, state, created) VALUES ('u', 1, 'admin', '', '', '', '', 'enabled', 0)",
    "INSERT INTO zones (uuid, name, created) VALUES ('z', 'z', 0)",
    "INSERT INTO network_offerings (uuid, name, display_text, egress_default_allow, \
     is_default, created) VALUES ('o', 'o', 'o', 0, 1, 0)",
    "INSERT INTO networks (uuid, name, display_text, account_id, zone_id, offering_id, cidr, \
     gateway, state, created) VALUES ('net', 'n', 'n', 1, 1, 1, '10.1.1.0/24', '10.1.1.1', \
     'Implemented', 0)",
    "INSERT INTO vlan_ranges (uuid, zone_id, vlan, gateway, netmask, start_ip, end_ip, created) \
     VALUES ('v', 1, 'untagged', '192.0.2.1', '255.255.255.0', '192.0.2.10', '192.0.2.20', 0)",
    "INSERT INTO public_ips (uuid, address, address_num, state, account_id, network_id, \
     source_nat, applied, vlan_range_id, zone_id) VALUES ('ip', '192.0.2.10', 3221225994, \
     'Allocated', 1, 1, 0, 1, 1, 1)",
];

async fn seed(db: &Db) -> Caller {
    let mut c = db.change(None).await.unwrap();
    for sql in SEED {
        sqlx::query(sql).execute(&mut **c.conn()).await.unwrap();
    }
    let _ = c.commit().await.unwrap();
    Caller {
        user_id: 1,
        user_uuid: "u".into(),
        account_id: 1,
        account_uuid: "a".into(),
        account_name: "admin".into(),
        domain_id: 1,
        domain_uuid: "d".into(),
        domain_name: "ROOT".into(),
        domain_path: "ROOT".into(),
        admin: true,
    }
}

fn rule(uuid: &str, traffic: Traffic, protocol: &str, port: i64) -> NewRule {
    NewRule {
        uuid: uuid.into(),
        purpose: Purpose::Firewall,
        traffic: Some(traffic),
        network_id: NetworkId::from(1),
        ip_id: (traffic == Traffic::Ingress).then_some(IpId::from(1)),
        account_id: AccountId::from(1),
        protocol: protocol.into(),
        ports: Some((port, port)),
        icmp: None,
        sources: vec!["0.0.0.0/0".parse().unwrap()],
        dests: Vec::new(),
        related_id: None,
        display: true,
        vm_id: None,
        vm_ip: None,
        private: None,
        name: None,
        description: None,
        algorithm: None,
        lb_protocol: None,
    }
}

fn query(traffic: Traffic) -> RuleQuery<'static> {
    RuleQuery {
        purpose: Purpose::Firewall,
        traffic: Some(traffic),
        uuid: None,
        ip_uuid: None,
        network_uuid: None,
        vm_uuid: None,
        tags: None,
        account: None,
        display: None,
        keyword: None,
        admin: true,
        limit: None,
        offset: 0,
    }
}

fn ids(page: &list::RulePage) -> Vec<String> {
    let v: Value = serde_json::from_str(&format!("[{}]", page.items)).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_string())
        .collect()
}

async fn listings_filter_page_and_count(db: &Db) {
    seed(db).await;
    let mut c = db.change(Some(NetworkId::from(1))).await.unwrap();
    for (uuid, traffic, proto, port) in [
        ("r1", Traffic::Ingress, "tcp", 22),
        ("r2", Traffic::Ingress, "udp", 53),
        ("r3", Traffic::Ingress, "tcp", 80),
        ("e1", Traffic::Egress, "tcp", 443),
    ] {
        insert(c.conn(), &rule(uuid, traffic, proto, port), None)
            .await
            .unwrap();
    }
    let _ = c.commit().await.unwrap();

    let all = list::list(db, &query(Traffic::Ingress)).await.unwrap();
    assert_eq!(
        (ids(&all), all.total),
        (vec!["r3".into(), "r2".into(), "r1".into()], 3)
    );

    let page = list::list(
        db,
        &RuleQuery {
            limit: Some(2),
            offset: 2,
            ..query(Traffic::Ingress)
        },
    )
    .await
    .unwrap();
    assert_eq!((ids(&page), page.total), (vec!["r1".into()], 3));

    let egress = list::list(db, &query(Traffic::Egress)).await.unwrap();
    assert_eq!((ids(&egress), egress.total), (vec!["e1".into()], 1));

    let keyword = list::list(
        db,
        &RuleQuery {
            keyword: Some("UDP"),
            ..query(Traffic::Ingress)
        },
    )
    .await
    .unwrap();
    assert_eq!(ids(&keyword), vec!["r2".to_string()]);

    let by_ip_and_uuid = list::list(
        db,
        &RuleQuery {
            ip_uuid: Some("ip"),
            network_uuid: Some("net"),
            uuid: Some("r1"),
            account: Some(AccountId::from(1)),
            display: Some(true),
            ..query(Traffic::Ingress)
        },
    )
    .await
    .unwrap();
    assert_eq!(ids(&by_ip_and_uuid), vec!["r1".to_string()]);

    let nobody = list::list(
        db,
        &RuleQuery {
            account: Some(AccountId::from(2)),
            ..query(Traffic::Ingress)
        },
    )
    .await
    .unwrap();
    assert_eq!(nobody.total, 0);
    assert!(nobody.items.is_empty());

    let hidden = list::list(
        db,
        &RuleQuery {
            display: Some(false),
            ..query(Traffic::Ingress)
        },
    )
    .await
    .unwrap();
    assert_eq!(hidden.total, 0);
}

async fn a_rules_object_is_stored_and_rendered_whole(db: &Db) {
    seed(db).await;
    let mut c = db.change(Some(NetworkId::from(1))).await.unwrap();
    let id = insert(c.conn(), &rule("r1", Traffic::Ingress, "tcp", 22), None)
        .await
        .unwrap();
    let d = c.dialect();
    store_json(&mut **c.conn(), d, id).await.unwrap();
    let _ = c.commit().await.unwrap();

    let whole = object_json(db.pool(), db.dialect(), id, Purpose::Firewall)
        .await
        .unwrap();
    assert_eq!(whole["id"], "r1");
    assert_eq!(whole["startport"], 22);
    assert_eq!(whole["ipaddress"], "192.0.2.10");
    assert_eq!(whole["networkid"], "net");
    assert_eq!(whole["traffictype"], "Ingress");
    assert_eq!(whole["state"], "Add");
    assert_eq!(whole["fordisplay"], true);

    // The listing reads the stored part and renders the same object.
    let listed = list::list(db, &query(Traffic::Ingress)).await.unwrap();
    let listed: Value = serde_json::from_str(&listed.items).unwrap();
    assert_eq!(listed, whole);

    let missing = object_json(db.pool(), db.dialect(), RuleId::from(99), Purpose::Firewall).await;
    assert!(matches!(
        missing,
        Err(crate::StoreError::NotFound { id: 99, .. })
    ));
}

async fn a_pending_job_holds_its_rule_until_it_ends(db: &Db) {
    let caller = seed(db).await;
    let network = NetworkId::from(1);
    let mut c = db.change(Some(network)).await.unwrap();
    let (job, job_uuid) = c
        .job(
            &caller,
            NewJob {
                command: "createFirewallRule",
                kind: Kind::Change,
                network_id: Some(network),
                payload: Payload::new(Outcome::Success, "FIREWALL.OPEN", "x".into(), "failed"),
                instance_type: None,
                instance_uuid: None,
            },
            None,
        )
        .await
        .unwrap();
    let id = insert(
        c.conn(),
        &rule("r1", Traffic::Ingress, "tcp", 22),
        Some(job),
    )
    .await
    .unwrap();
    assert_eq!(
        forwards::pending_job(c.conn(), id).await.unwrap(),
        Some(job_uuid)
    );
    crate::jobs::finish(c.conn(), job, JobStatus::Succeeded, 0, &Value::Null)
        .await
        .unwrap();
    assert_eq!(forwards::pending_job(c.conn(), id).await.unwrap(), None);
    let _ = c.commit().await.unwrap();
}

async fn a_forward_takes_its_new_values(db: &Db) {
    let caller = seed(db).await;
    let network = NetworkId::from(1);
    let mut c = db.change(Some(network)).await.unwrap();
    for sql in [
        "INSERT INTO service_offerings (uuid, name, display_text, cpu_number, cpu_speed, \
         memory, created) VALUES ('so', 'so', 'so', 1, 1, 1, 0)",
        "INSERT INTO templates (uuid, name, display_text, os_type, created) \
         VALUES ('t', 't', 't', 'linux', 0)",
        "INSERT INTO vms (uuid, name, display_name, account_id, zone_id, network_id, \
         service_offering_id, template_id, nic_uuid, ip, state, created) \
         VALUES ('vm', 'vm1', 'vm1', 1, 1, 1, 1, 1, 'nic', '10.1.1.5', 'Running', 0)",
    ] {
        sqlx::query(sql).execute(&mut **c.conn()).await.unwrap();
    }
    let mut fwd = rule("f1", Traffic::Ingress, "tcp", 2222);
    fwd.purpose = Purpose::PortForwarding;
    fwd.traffic = None;
    fwd.private = Some((22, 22));
    let id = insert(c.conn(), &fwd, None).await.unwrap();
    let (job, _) = c
        .job(
            &caller,
            NewJob {
                command: "updatePortForwardingRule",
                kind: Kind::Update,
                network_id: Some(network),
                payload: Payload::new(Outcome::Success, "NET.RULEMODIFY", "x".into(), "failed"),
                instance_type: None,
                instance_uuid: None,
            },
            None,
        )
        .await
        .unwrap();
    let vm = forwards::forward_vm(db, "vm").await.unwrap();
    assert_eq!(vm, None, "the VM is not committed yet");
    let d = c.dialect();
    forwards::set_forward(
        c.conn(),
        d,
        id,
        &ForwardChange {
            private: (2200, 2200),
            vm_id: Some(VmId::from(1)),
            vm_ip: Some("10.1.1.5".into()),
            sources: vec!["192.0.2.0/24".parse().unwrap()],
            display: false,
        },
        job,
    )
    .await
    .unwrap();
    let _ = c.commit().await.unwrap();

    let vm = forwards::forward_vm(db, "vm").await.unwrap().unwrap();
    assert_eq!(
        (vm.id, vm.ip.as_str(), vm.network_id, vm.account_id),
        (1, "10.1.1.5", 1, 1)
    );
    assert_eq!(forwards::forward_vm(db, "nothing").await.unwrap(), None);

    let o = object_json(db.pool(), db.dialect(), id, Purpose::PortForwarding)
        .await
        .unwrap();
    assert_eq!(o["privateport"], "2200");
    assert_eq!(o["publicport"], "2222");
    assert_eq!(o["virtualmachineid"], "vm");
    assert_eq!(o["vmguestip"], "10.1.1.5");
    assert_eq!(o["cidrlist"], "192.0.2.0/24");
    assert_eq!(o["fordisplay"], false);
}

/// Several jobs end in one statement, each with its own result; a job that ended already is
/// left as it was and not named; their events go in one statement too.
async fn jobs_end_together_with_their_events(db: &Db) {
    let caller = seed(db).await;
    let network = NetworkId::from(1);
    let mut c = db.change(Some(network)).await.unwrap();
    let mut jobs = Vec::new();
    for _ in 0..3 {
        let (job, _) = c
            .job(
                &caller,
                NewJob {
                    command: "createFirewallRule",
                    kind: Kind::Change,
                    network_id: Some(network),
                    payload: Payload::new(Outcome::Success, "FIREWALL.OPEN", "x".into(), "failed"),
                    instance_type: None,
                    instance_uuid: None,
                },
                None,
            )
            .await
            .unwrap();
        jobs.push(job);
    }
    crate::jobs::finish(c.conn(), jobs[1], JobStatus::Failed, 530, &Value::Null)
        .await
        .unwrap();
    let results: Vec<Value> = (0..3).map(|i| serde_json::json!({ "n": i })).collect();
    let endings: Vec<crate::jobs::Ending<'_>> = jobs
        .iter()
        .zip(&results)
        .map(|(job, result)| crate::jobs::Ending {
            job: *job,
            status: JobStatus::Succeeded,
            code: 0,
            result,
        })
        .collect();
    let mut ended = c.finish_jobs(&endings).await.unwrap();
    ended.sort();
    assert_eq!(ended, vec![jobs[0], jobs[2]]);
    let events = [
        crate::events::NewEvent {
            account_id: 1,
            user_id: 1,
            event_type: "FIREWALL.OPEN",
            level: "INFO",
            state: "Completed",
            description: "first",
        },
        crate::events::NewEvent {
            account_id: 1,
            user_id: 1,
            event_type: "FIREWALL.OPEN",
            level: "INFO",
            state: "Completed",
            description: "third",
        },
    ];
    crate::events::events(c.conn(), &events).await.unwrap();
    let _ = c.commit().await.unwrap();
    let mut rows = Vec::new();
    for job in &jobs {
        let r = sqlx::query("SELECT status, result_code, result FROM jobs WHERE id = $1")
            .bind(job.get())
            .fetch_one(db.pool())
            .await
            .unwrap();
        use sqlx::Row;
        rows.push((
            r.try_get::<i64, _>("status").unwrap(),
            r.try_get::<i64, _>("result_code").unwrap(),
            r.try_get::<Option<String>, _>("result").unwrap(),
        ));
    }
    assert_eq!(rows[0], (1, 0, Some(r#"{"n":0}"#.to_string())));
    assert_eq!(rows[1], (2, 530, Some("null".to_string())));
    assert_eq!(rows[2], (1, 0, Some(r#"{"n":2}"#.to_string())));
    assert_eq!(
        crate::testing::event_count(db, "FIREWALL.OPEN")
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        crate::testing::events_mentioning(db, "third")
            .await
            .unwrap(),
        1
    );
}

async fn sqlite() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    let db = Db::connect(&url).await.unwrap();
    (dir, db)
}

macro_rules! on_both {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let (_dir, db) = super::sqlite().await;
                    super::$case(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let pg = crate::testing::PgDatabase::create("store_rules").await;
                    let db = crate::db::Db::connect(&pg.url).await.unwrap();
                    super::$case(&db).await;
                    db.pool().close().await;
                    pg.drop().await;
                }
            )*
        }
    };
}

on_both!(
    listings_filter_page_and_count,
    a_rules_object_is_stored_and_rendered_whole,
    a_pending_job_holds_its_rule_until_it_ends,
    a_forward_takes_its_new_values,
    jobs_end_together_with_their_events,
);
