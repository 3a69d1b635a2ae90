//! The unit of work: it holds the writer for exactly its length, rolls back when dropped,
//! writes the job with its event, names what to ring, and refuses a broken fence.

use std::time::Duration;

use domain::actor::Caller;
use domain::ids::NetworkId;
use domain::job::{Kind, NewJob, Outcome, Payload};
use sqlx::Row;

use crate::db::Db;
use crate::error::StoreError;
use crate::hosts::Fence;
use crate::work::Scheduled;

async fn db() -> (tempfile::TempDir, Db) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("w.db").display());
    let db = Db::connect(&url).await.unwrap();
    (dir, db)
}

async fn zones(db: &Db) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM zones")
        .fetch_one(db.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

async fn add_zone(tx: &mut crate::work::ChangeTx, name: &str) {
    sqlx::query("INSERT INTO zones (uuid, name, created) VALUES ($1, $1, 0)")
        .bind(name)
        .execute(&mut **tx.conn())
        .await
        .unwrap();
}

/// A second change waits for the first to end, then goes ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_holds_the_writer_until_it_commits() {
    let (_dir, db) = db().await;
    let mut first = db.change(None).await.unwrap();
    add_zone(&mut first, "a").await;
    let waiting = tokio::spawn({
        let db = db.clone();
        async move {
            let mut second = db.change(None).await.unwrap();
            add_zone(&mut second, "b").await;
            second.commit().await.unwrap()
        }
    });
    // The second cannot begin while the first holds the writer.
    let blocked = tokio::time::timeout(Duration::from_millis(300), db.change(None)).await;
    assert!(
        blocked.is_err(),
        "a third change began while the first was open"
    );
    let receipt = first.commit().await.unwrap();
    assert!(receipt.networks.is_empty());
    let second = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the second change goes ahead once the first commits")
        .unwrap();
    assert!(second.networks.is_empty());
    assert_eq!(zones(&db).await, 2);
}

/// A change dropped without a commit writes nothing and frees the writer.
#[tokio::test]
async fn a_dropped_change_rolls_back_and_frees_the_writer() {
    let (_dir, db) = db().await;
    {
        let mut change = db.change(None).await.unwrap();
        add_zone(&mut change, "gone").await;
    }
    let next = tokio::time::timeout(Duration::from_secs(10), db.change(None))
        .await
        .expect("the writer is free again")
        .unwrap();
    drop(next);
    assert_eq!(zones(&db).await, 0);
}

async fn caller(db: &Db) -> Caller {
    let mut c = db.change(None).await.unwrap();
    for sql in [
        "INSERT INTO domains (uuid, name, path, created) VALUES ('d', 'ROOT', 'ROOT', 0)",
        "INSERT INTO accounts (uuid, name, domain_id, account_type, state, created) \
         VALUES ('a', 'admin', 1, 1, 'enabled', 0)",
        "INSERT INTO users (uuid, account_id, username, password_hash, email, firstname, \
         lastname, state, created) VALUES ('u', 1, 'admin', '', '', '', '', 'enabled', 0)",
    ] {
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

/// The job and its scheduled event are written together; the receipt names the network to
/// ring and the job.
#[tokio::test]
async fn a_committed_change_names_its_network_and_job() {
    let (_dir, db) = db().await;
    let caller = caller(&db).await;
    let network = NetworkId::from(7);
    let mut change = db.change(Some(network)).await.unwrap();
    change.lock_network().await.unwrap();
    let (job_id, uuid) = change
        .job(
            &caller,
            NewJob {
                command: "createFirewallRule",
                kind: Kind::Change,
                network_id: Some(network),
                payload: Payload::new(Outcome::Success, "NET.RULEADD", "x".into(), "failed"),
                instance_type: None,
                instance_uuid: None,
            },
            Some(Scheduled {
                event_type: "NET.RULEADD",
                description: "createFirewallRule",
                resource_uuid: None,
            }),
        )
        .await
        .unwrap();
    change.ring(NetworkId::from(8));
    let receipt = change.commit().await.unwrap();
    assert_eq!(receipt.networks, vec![network, NetworkId::from(8)]);
    assert_eq!(receipt.job_uuid.as_deref(), Some(uuid.as_str()));
    let job = crate::jobs::by_uuid(&db, &uuid).await.unwrap().unwrap();
    assert_eq!(job.id, job_id);
    assert_eq!(job.status, domain::job::JobStatus::Pending);
    let events: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM events WHERE job_uuid = $1 AND state = 'Scheduled'")
            .bind(&uuid)
            .fetch_one(db.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
    assert_eq!(events, 1);
}

/// A fenced change for a host this server does not hold fails before writing, and frees the
/// writer.
#[tokio::test]
async fn a_broken_fence_fails_the_change() {
    let (_dir, db) = db().await;
    let fence = Fence::Owner {
        host: "h1".into(),
        epoch: 3,
        server_id: 1,
    };
    match db.fenced(&fence, None).await {
        Err(StoreError::Fenced { host, epoch }) => {
            assert_eq!((host.as_str(), epoch), ("h1", 3));
        }
        Err(e) => panic!("expected Fenced, got {e}"),
        Ok(_) => panic!("a broken fence held"),
    }
    let mut c = db.change(None).await.unwrap();
    sqlx::query(
        "INSERT INTO hosts (uuid, name, server_id, epoch, connected, created) \
         VALUES ('h', 'h1', 1, 3, 1, 0)",
    )
    .execute(&mut **c.conn())
    .await
    .unwrap();
    let _ = c.commit().await.unwrap();
    let held = db.fenced(&fence, None).await.expect("the fence holds now");
    drop(held);
}

/// A pending job read once is answered from memory (no round trip: the pool is closed),
/// forgotten at once when a change of this process ends it, and, when another process
/// (another `Db`) ends it, shown pending for at most `PENDING_MEMORY` after it was read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_job_is_remembered_until_it_ends_or_for_a_bounded_time() {
    use crate::jobs::{poll, PENDING_MEMORY};
    use domain::job::JobStatus;

    let (dir, db) = db().await;
    let caller = caller(&db).await;
    let new_job = |db: &Db| {
        let (db, caller) = (db.clone(), caller.clone());
        async move {
            let mut c = db.change(None).await.unwrap();
            let (id, uuid) = c
                .job(
                    &caller,
                    NewJob {
                        command: "createFirewallRule",
                        kind: Kind::Change,
                        network_id: None,
                        payload: Payload::new(Outcome::Success, "E", "testing".into(), "f"),
                        instance_type: None,
                        instance_uuid: None,
                    },
                    None,
                )
                .await
                .unwrap();
            let _ = c.commit().await.unwrap();
            (id, uuid)
        }
    };
    let end = |db: &Db, id| {
        let db = db.clone();
        async move {
            let mut c = db.change(None).await.unwrap();
            assert!(c
                .finish_job(id, JobStatus::Succeeded, 0, &serde_json::json!({}))
                .await
                .unwrap());
            let _ = c.commit().await.unwrap();
        }
    };

    // Ended here: forgotten at once.
    let (id, uuid) = new_job(&db).await;
    assert_eq!(
        poll(&db, &uuid).await.unwrap().unwrap().status,
        JobStatus::Pending
    );
    end(&db, id).await;
    assert_eq!(
        poll(&db, &uuid).await.unwrap().unwrap().status,
        JobStatus::Succeeded
    );

    // Ended with others in one statement (a generation's jobs): forgotten at once too.
    let (a, a_uuid) = new_job(&db).await;
    let (b, b_uuid) = new_job(&db).await;
    for uuid in [&a_uuid, &b_uuid] {
        assert_eq!(
            poll(&db, uuid).await.unwrap().unwrap().status,
            JobStatus::Pending
        );
    }
    let result = serde_json::json!({});
    let endings: Vec<crate::jobs::Ending<'_>> = [a, b]
        .into_iter()
        .map(|job| crate::jobs::Ending {
            job,
            status: JobStatus::Succeeded,
            code: 0,
            result: &result,
        })
        .collect();
    let mut c = db.change(None).await.unwrap();
    assert_eq!(c.finish_jobs(&endings).await.unwrap().len(), 2);
    let _ = c.commit().await.unwrap();
    for uuid in [&a_uuid, &b_uuid] {
        assert_eq!(
            poll(&db, uuid).await.unwrap().unwrap().status,
            JobStatus::Succeeded
        );
    }

    // Ended by another process: pending from memory for at most PENDING_MEMORY after the
    // read, never longer.
    let url = format!("sqlite://{}", dir.path().join("w.db").display());
    let other = Db::connect(&url).await.unwrap();
    let (id, uuid) = new_job(&db).await;
    let read_at = std::time::Instant::now();
    assert_eq!(
        poll(&db, &uuid).await.unwrap().unwrap().status,
        JobStatus::Pending
    );
    end(&other, id).await;
    tokio::time::sleep_until((read_at + PENDING_MEMORY).into()).await;
    assert_eq!(
        poll(&db, &uuid).await.unwrap().unwrap().status,
        JobStatus::Succeeded
    );

    // No round trip: with the pool closed, a job read pending a moment ago is still answered.
    // A read that took longer than the memory lasts is tried again, until a deadline.
    let (_, uuid) = new_job(&db).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let probe = Db::connect(&url).await.unwrap();
        let read_at = std::time::Instant::now();
        assert_eq!(
            poll(&probe, &uuid).await.unwrap().unwrap().status,
            JobStatus::Pending
        );
        probe.pool().close().await;
        let answer = poll(&probe, &uuid).await;
        if read_at.elapsed() < PENDING_MEMORY {
            assert_eq!(answer.unwrap().unwrap().status, JobStatus::Pending);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "every try outlasted the memory"
        );
    }
}
