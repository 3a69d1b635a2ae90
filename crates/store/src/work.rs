//! The unit of work: one change to the database, from the write lock to the receipt.
//!
//! A [`ChangeTx`] owns everything a write needs, for exactly as long as it needs it: SQLite's
//! write guard (taken before the transaction begins, released when the transaction ends), the
//! transaction itself (`BEGIN IMMEDIATE` on SQLite), the network's row lock on PostgreSQL once
//! asked for ([`ChangeTx::lock_network`]), and the job it writes ([`ChangeTx::job`]). Its
//! [`ChangeTx::commit`] returns a [`Receipt`] naming the networks whose runners must look
//! again, which the caller hands to the runner's doorbell.
//!
//! Dropping a `ChangeTx` without committing rolls the transaction back and releases the guard.

use domain::actor::Caller;
use domain::ids::{JobId, NetworkId};
use domain::job::NewJob;
use sqlx::{Any, Transaction};
use tokio::sync::OwnedMutexGuard;

use crate::db::{Db, Dialect};
use crate::error::StoreError;
use crate::hosts::Fence;

/// What a committed change leaves the caller to do: ring the runners of these networks.
#[must_use = "a committed change must be handed to the runner's doorbell"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The networks whose job runners must look again.
    pub networks: Vec<NetworkId>,
    /// The uuid of the job the change wrote, if it wrote one.
    pub job_uuid: Option<String>,
}

/// The scheduled event recorded with a job: what listEvents shows until the job ends.
#[derive(Debug, Clone, Copy)]
pub struct Scheduled<'a> {
    /// The event type, e.g. `NET.RULEADD`.
    pub event_type: &'a str,
    /// Words for the event.
    pub description: &'a str,
    /// The resource the request is about.
    pub resource_uuid: Option<&'a str>,
}

/// One write transaction with its SQLite write guard, its network and its job. See the
/// module's documentation.
pub struct ChangeTx {
    // Field order matters: the transaction ends (rolls back if not committed) before the
    // guard is released, so that the next writer never meets a transaction still open.
    tx: Transaction<'static, Any>,
    _writer: Option<OwnedMutexGuard<()>>,
    dialect: Dialect,
    network: Option<NetworkId>,
    ring: Vec<NetworkId>,
    job_uuid: Option<String>,
    /// Jobs this change ends, forgotten by `pending` once it commits.
    ended: Vec<JobId>,
    pending: std::sync::Arc<crate::jobs::PendingJobs>,
}

impl Db {
    /// Opens a change of `network` (or of no network's router, e.g. an account): waits for
    /// SQLite's write lock, then begins the transaction.
    ///
    /// # Errors
    /// [`StoreError::Db`] when the transaction cannot begin.
    pub async fn change(&self, network: Option<NetworkId>) -> Result<ChangeTx, StoreError> {
        let writer = self.writer().await;
        let tx = self
            .begin_write()
            .await
            .map_err(StoreError::db("beginning a change"))?;
        Ok(ChangeTx {
            tx,
            _writer: writer,
            dialect: self.dialect,
            network,
            ring: network.into_iter().collect(),
            job_uuid: None,
            ended: Vec::new(),
            pending: self.pending.clone(),
        })
    }

    /// Opens a change that holds only while `fence` does: the job runner's records of what a
    /// router applied, and the failures of a forsaken host's jobs. The fence is checked (and,
    /// on PostgreSQL, the host's row locked) before anything else is written.
    ///
    /// # Errors
    /// [`StoreError::Fenced`] when the fence no longer holds; [`StoreError::Db`].
    pub async fn fenced(
        &self,
        fence: &Fence,
        network: Option<NetworkId>,
    ) -> Result<ChangeTx, StoreError> {
        let mut change = self.change(network).await?;
        if !crate::hosts::fence(change.conn(), fence).await? {
            let (host, epoch) = fence.host_epoch();
            return Err(StoreError::Fenced {
                host: host.to_string(),
                epoch,
            });
        }
        Ok(change)
    }
}

impl ChangeTx {
    /// The transaction, for statements not yet moved into the store's modules.
    pub fn conn(&mut self) -> &mut Transaction<'static, Any> {
        &mut self.tx
    }

    /// The back end.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The network this change is about.
    pub fn network(&self) -> Option<NetworkId> {
        self.network
    }

    /// Locks the change's network row until the commit (PostgreSQL), so that changes of one
    /// network from any server are checked for conflicts one at a time; SQLite's write lock
    /// already serialises writers. Nothing without a network.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub async fn lock_network(&mut self) -> Result<(), StoreError> {
        if let (Dialect::Postgres, Some(network)) = (self.dialect, self.network) {
            sqlx::query("SELECT id FROM networks WHERE id = $1 FOR UPDATE")
                .bind(network.get())
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(StoreError::db("locking a network"))?;
        }
        Ok(())
    }

    /// Writes a pending job for the caller and, when given, the event that says it was
    /// scheduled (commands that record none, as updatePortForwardingRule, pass `None`);
    /// returns the job's id and uuid. Write the job before taking the network's lock where the
    /// command allows, so that the lock is held only for the checks, the rows and the commit.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub async fn job(
        &mut self,
        caller: &Caller,
        job: NewJob<'_>,
        scheduled: Option<Scheduled<'_>>,
    ) -> Result<(JobId, String), StoreError> {
        let (id, uuid) = crate::jobs::insert(&mut self.tx, caller, job).await?;
        if let Some(s) = scheduled {
            crate::events::scheduled(
                &mut self.tx,
                caller,
                s.event_type,
                s.description,
                s.resource_uuid,
                &uuid,
            )
            .await?;
        }
        self.job_uuid = Some(uuid.clone());
        Ok((id, uuid))
    }

    /// Writes pending jobs for several requests, each with the event that says it was
    /// scheduled, as [`ChangeTx::job`] writes one, in one statement per table; returns the
    /// jobs' ids and uuids in the order given.
    ///
    /// # Errors
    /// [`StoreError::Db`]; [`StoreError::Corrupt`] when a row written is not returned.
    pub async fn jobs(
        &mut self,
        jobs: Vec<(&Caller, NewJob<'_>, Scheduled<'_>)>,
    ) -> Result<Vec<(JobId, String)>, StoreError> {
        let (rows, scheduled): (Vec<_>, Vec<_>) =
            jobs.into_iter().map(|(c, j, s)| ((c, j), (c, s))).unzip();
        let ids = crate::jobs::insert_many(&mut self.tx, &rows).await?;
        let events: Vec<crate::events::ScheduledEvent<'_>> = scheduled
            .iter()
            .zip(&ids)
            .map(|((caller, s), (_, uuid))| crate::events::ScheduledEvent {
                caller,
                event_type: s.event_type,
                description: s.description,
                resource_uuid: s.resource_uuid,
                job_uuid: uuid,
            })
            .collect();
        crate::events::scheduled_many(&mut self.tx, &events).await?;
        if let Some((_, uuid)) = ids.last() {
            self.job_uuid = Some(uuid.clone());
        }
        Ok(ids)
    }

    /// Ends a pending job in this change; whether it was still pending (false: it had ended
    /// already, e.g. on another server). Once the change commits, this process no longer
    /// answers the job as pending from memory.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub async fn finish_job(
        &mut self,
        job: JobId,
        status: domain::job::JobStatus,
        code: i64,
        result: &serde_json::Value,
    ) -> Result<bool, StoreError> {
        let ended = crate::jobs::finish(&mut self.tx, job, status, code, result).await?;
        if ended {
            self.ended.push(job);
        }
        Ok(ended)
    }

    /// Ends, in this change, a job that has nothing for a router to do (it was written by
    /// [`ChangeTx::job`] with `scheduled`): succeeded with `result`, and the event CloudStack
    /// records when such a job completes (`Successfully completed <description>`).
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub async fn complete_job(
        &mut self,
        caller: &Caller,
        job: (JobId, &str),
        scheduled: &Scheduled<'_>,
        result: &serde_json::Value,
    ) -> Result<(), StoreError> {
        self.finish_job(job.0, domain::job::JobStatus::Succeeded, 0, result)
            .await?;
        crate::events::event(
            &mut self.tx,
            caller.account_id,
            caller.user_id,
            scheduled.event_type,
            "INFO",
            "Completed",
            &format!("Successfully completed {}", scheduled.description),
            scheduled.resource_uuid,
            Some(job.1),
        )
        .await
    }

    /// Ends several pending jobs in this change with one statement; returns those that were
    /// still pending (the others had ended already, e.g. on another server). Once the change
    /// commits, this process no longer answers them as pending from memory.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub async fn finish_jobs(
        &mut self,
        endings: &[crate::jobs::Ending<'_>],
    ) -> Result<Vec<JobId>, StoreError> {
        let ended = crate::jobs::finish_all(&mut self.tx, endings).await?;
        self.ended.extend(ended.iter().copied());
        Ok(ended)
    }

    /// Adds a network whose runner must look again after the commit.
    pub fn ring(&mut self, network: NetworkId) {
        if !self.ring.contains(&network) {
            self.ring.push(network);
        }
    }

    /// Commits; the receipt names the runners to wake.
    ///
    /// # Errors
    /// [`StoreError::Db`]: nothing was written.
    pub async fn commit(self) -> Result<Receipt, StoreError> {
        let ChangeTx {
            tx,
            _writer,
            ring,
            job_uuid,
            ended,
            pending,
            ..
        } = self;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a change"))?;
        drop(_writer);
        if !ended.is_empty() {
            pending.ended(&ended);
        }
        Ok(Receipt {
            networks: ring,
            job_uuid,
        })
    }
}

#[cfg(test)]
mod tests;
