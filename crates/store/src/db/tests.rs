//! SQLite writers queue and never fail with "database is locked".

use std::time::Duration;

use sqlx::Row;

use super::Db;

/// A write transaction that reads before it writes, while another connection holds SQLite's
/// write lock (here a second handle on the file, as another process or a dropped transaction
/// whose rollback has not run yet would): it waits for the lock instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_reads_first_waits_for_a_lock_held_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let db = Db::connect(&url).await.unwrap();
    sqlx::query("CREATE TABLE t (x BIGINT NOT NULL)")
        .execute(db.pool())
        .await
        .unwrap();
    let other = Db::connect(&url).await.unwrap();
    let mut held = other.change(None).await.unwrap();
    sqlx::query("INSERT INTO t (x) VALUES (1)")
        .execute(&mut **held.conn())
        .await
        .unwrap();
    // The other connection keeps the lock for a moment, then commits.
    let holder = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = held.commit().await.unwrap();
    });
    {
        let mut change = db.change(None).await.unwrap();
        let before: i64 = sqlx::query("SELECT COUNT(*) AS c FROM t")
            .fetch_one(&mut **change.conn())
            .await
            .unwrap()
            .try_get("c")
            .unwrap();
        sqlx::query("INSERT INTO t (x) VALUES ($1)")
            .bind(before + 10)
            .execute(&mut **change.conn())
            .await
            .expect("the writer waits for the lock");
        let _ = change.commit().await.unwrap();
    }
    holder.await.unwrap();
    let rows: Vec<i64> = sqlx::query("SELECT x FROM t ORDER BY x")
        .fetch_all(db.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get("x").unwrap())
        .collect();
    // The writer began after the other's commit: it saw its row.
    assert_eq!(rows, vec![1, 11]);
}
