//! What a worker records: a generation the router confirmed and the jobs it carried, a job's
//! undo and failure, a job's end.

use agent::proto::Op;
use domain::ids::{JobId, NetworkId, VmId};
use domain::job::{JobStatus, Kind, Outcome};
use serde_json::Value;
use store::db::now_ms;
use store::events::NewEvent;
use store::hosts::Fence;
use store::jobs::{Ending, ForsakenJob, PendingJob};
use store::{ChangeTx, StoreError};

use super::cache::Cache;
use super::push::Pushed;
use super::{Doorbell, RunnerError};
use crate::hosts::CallError;
use crate::metrics::JobLabels;
use crate::resp::error::chain;
use crate::resp::job::{job_result, job_result_in};

/// Records a generation that carried no job (a re-sync).
pub(super) async fn record(
    rt: &Doorbell,
    pushed: &Pushed,
    fence: &Fence,
    cache: &mut Cache,
) -> Result<(), RunnerError> {
    record_generation(rt, pushed, fence).await?;
    cache.committed(&pushed.commit);
    Ok(())
}

/// Records what a generation the router confirmed holds, and the generation.
pub(super) async fn record_generation(
    rt: &Doorbell,
    pushed: &Pushed,
    fence: &Fence,
) -> Result<(), RunnerError> {
    // Fenced: written only while this server still holds the host. The receipt is empty: the
    // worker writing is the one a ring would wake.
    let mut change = rt.db.fenced(fence, None).await?;
    let tx = change.conn();
    store::routers::apply_commit(tx, &pushed.commit).await?;
    if !pushed.stopped {
        store::routers::set_applied(tx, pushed.network, pushed.generation).await?;
    }
    let _nobody_to_wake = change.commit().await?;
    Ok(())
}

/// Records a generation that carried jobs, and ends them (starting a deployed VM, whose lease
/// the router now holds, or removing the objects of a destroyed VM or a deleted network from
/// the host first). True when a job failed after the generation, which the router must be
/// brought back from (a VM whose start the host refused: its lease is to go again).
pub(super) async fn succeed(
    rt: &Doorbell,
    network: NetworkId,
    pushed: &Pushed,
    carried: &[PendingJob],
    fence: &Fence,
) -> Result<bool, RunnerError> {
    let Fence::Owner { host, .. } = fence else {
        return Err(RunnerError::NotOwner);
    };
    // Fenced: written only while this server still holds the host. The receipt is
    // empty: the worker writing is the one a ring would wake.
    let mut change = rt.db.fenced(fence, None).await?;
    let tx = change.conn();
    store::routers::apply_commit(tx, &pushed.commit).await?;
    if !pushed.stopped {
        store::routers::set_applied(tx, network, pushed.generation).await?;
    }
    let deleting_network = carried.iter().any(|j| j.kind == Kind::DeleteNetwork);
    let doomed_vms = if deleting_network {
        store::vms::network_vms(tx, network.get()).await?
    } else {
        Vec::new()
    };
    // Jobs with nothing to do after the commit and a result the transaction can render end in
    // it: one commit for the generation and its jobs.
    let mut results = Vec::new();
    for job in carried.iter().filter(|j| j.kind == Kind::Change) {
        if let Some(result) = job_result_in(&mut change, &job.payload.outcome).await? {
            results.push((job, result));
        }
    }
    let ended = finish_all_in(&mut change, &results).await?;
    let _nobody_to_wake = change.commit().await?;
    // Every job this step rendered a result for is done with (ended here, or already ended
    // elsewhere); the others end below.
    let handled: Vec<JobId> = results.iter().map(|(j, _)| j.id).collect();
    for job in carried.iter().filter(|j| ended.contains(&j.id)) {
        observe_end(rt, job, JobStatus::Succeeded);
    }
    let ended = handled;
    let router = if deleting_network {
        store::routers::router_name_of(&rt.db, network).await?
    } else {
        None
    };
    let mut take_back = false;
    for job in carried.iter().filter(|j| !ended.contains(&j.id)) {
        if let (Kind::DeployVm, Outcome::Vm { id }) = (job.kind, &job.payload.outcome) {
            match start_vm(rt, network, *id).await {
                Ok(()) => store::vms::set_vm_state(&rt.db, *id, "Running").await?,
                // Nothing known: the job stays pending, and its next generation starts it.
                Err(e @ (CallError::NotConnected(_) | CallError::Lost(_))) => {
                    return Err(RunnerError::Call(e))
                }
                Err(
                    CallError::Refused(reason)
                    | CallError::TimedOut(reason)
                    | CallError::Stale(reason),
                ) => {
                    fail(rt, job, &reason, fence).await?;
                    take_back = true;
                    continue;
                }
            }
        }
        match (job.kind, job.payload.target) {
            (Kind::DestroyVm, Some(vm_id)) => {
                if let Some(name) = store::vms::vm_lab_key(&rt.db, vm_id).await? {
                    if let Err(err) = rt.hosts.call(host, Op::RemoveVm { vm: name.clone() }).await {
                        tracing::warn!(vm = %name, error = %err, "removing the VM failed");
                    }
                }
                store::vms::delete_vm(&rt.db, vm_id).await?;
            }
            (Kind::DeleteNetwork, _) => {
                for (_, name) in &doomed_vms {
                    if let Err(err) = rt.hosts.call(host, Op::RemoveVm { vm: name.clone() }).await {
                        tracing::warn!(vm = %name, error = %err, "removing the VM failed");
                    }
                }
                if let Some(router) = &router {
                    let op = Op::RemoveRouter {
                        router: router.clone(),
                    };
                    if let Err(err) = rt.hosts.call(host, op).await {
                        tracing::warn!(%router, error = %err, "removing the router failed");
                    }
                }
                store::networks::delete_network(&rt.db, network.get()).await?;
            }
            _ => {}
        }
        let result = job_result(&rt.db, &rt.site, &job.payload.outcome)
            .await
            .unwrap_or_else(|err| err.job_result());
        finish(rt, job, JobStatus::Succeeded, 0, &result).await?;
    }
    Ok(take_back)
}

/// Makes sure a deployed VM's router is on its host and starts the VM there (its lease is on
/// the router already).
async fn start_vm(rt: &Doorbell, network: NetworkId, vm: VmId) -> Result<(), CallError> {
    let refused = |e: StoreError| CallError::Refused(chain(&e));
    let Some(router) = store::routers::router_of(&rt.db, network)
        .await
        .map_err(refused)?
    else {
        return Err(CallError::Refused(format!("network {network} is gone")));
    };
    let Some(lab_vm) = store::vms::vm_for_deploy(&rt.db, vm)
        .await
        .map_err(refused)?
    else {
        return Err(CallError::Refused("the VM is gone".to_string()));
    };
    let router_op = super::step::ensure_router_op(rt, network, &router).await?;
    rt.hosts.call(&router.host, router_op).await?;
    rt.hosts
        .call(
            &router.host,
            super::step::ensure_vm_op(&router.name, lab_vm),
        )
        .await?;
    Ok(())
}

/// Undoes a job and fails it with 530 and `reason`.
pub(super) async fn fail(
    rt: &Doorbell,
    job: &PendingJob,
    reason: &str,
    fence: &Fence,
) -> Result<(), RunnerError> {
    {
        // Fenced: written only while this server still holds the host. The receipt is
        // empty: the worker writing is the one a ring would wake.
        let mut change = rt.db.fenced(fence, None).await?;
        let dialect = change.dialect();
        let tx = change.conn();
        if let (Kind::DeployVm, Outcome::Vm { id }) = (job.kind, &job.payload.outcome) {
            store::vms::delete_vm_in(tx, *id).await?;
        } else {
            store::jobs::rollback_job(tx, job.id, job.payload.undo.as_ref()).await?;
            if let Some(undo) = &job.payload.undo {
                store::rules::json::store_json(&mut **tx, dialect, undo.rule_id).await?;
            }
        }
        let _nobody_to_wake = change.commit().await?;
    }
    let err = super::step::failure(job, reason);
    finish(rt, job, JobStatus::Failed, 530, &err.job_result()).await
}

/// Ends a job in a change of its own.
pub(super) async fn finish(
    rt: &Doorbell,
    job: &PendingJob,
    status: JobStatus,
    code: i64,
    result: &Value,
) -> Result<(), RunnerError> {
    let mut change = rt.db.change(None).await?;
    let ended = finish_in(&mut change, job, status, code, result).await?;
    // A job's end wakes nobody: its network's worker is the one ending it.
    let _nobody_to_wake = change.commit().await?;
    if ended {
        observe_end(rt, job, status);
    }
    Ok(())
}

/// Ends a pending job and records its end event, in the caller's transaction; false when it
/// had ended already (housekeeping on two servers), and then nothing is written.
async fn finish_in(
    change: &mut ChangeTx,
    job: &PendingJob,
    status: JobStatus,
    code: i64,
    result: &Value,
) -> Result<bool, StoreError> {
    if !change.finish_job(job.id, status, code, result).await? {
        return Ok(false);
    }
    let tx = change.conn();
    let ok = status == JobStatus::Succeeded;
    store::events::event(
        tx,
        job.account_id.get(),
        job.user_id,
        &job.payload.event,
        if ok { "INFO" } else { "ERROR" },
        "Completed",
        &if ok {
            format!("Successfully completed {}", job.payload.what)
        } else {
            format!(
                "Error while {}: {}",
                job.payload.what,
                result["errortext"].as_str().unwrap_or("")
            )
        },
        None,
        None,
    )
    .await?;
    Ok(true)
}

/// Ends jobs that succeeded with their results and records their end events, in the
/// caller's transaction: one statement for the jobs and one for the events, whatever their
/// number. Returns the jobs that were still pending (only those get an event).
async fn finish_all_in(
    change: &mut ChangeTx,
    succeeded: &[(&PendingJob, Value)],
) -> Result<Vec<JobId>, StoreError> {
    if succeeded.is_empty() {
        return Ok(Vec::new());
    }
    let endings: Vec<Ending<'_>> = succeeded
        .iter()
        .map(|(job, result)| Ending {
            job: job.id,
            status: JobStatus::Succeeded,
            code: 0,
            result,
        })
        .collect();
    let ended = change.finish_jobs(&endings).await?;
    let descriptions: Vec<(&PendingJob, String)> = succeeded
        .iter()
        .filter(|(job, _)| ended.contains(&job.id))
        .map(|(job, _)| (*job, format!("Successfully completed {}", job.payload.what)))
        .collect();
    let events: Vec<NewEvent<'_>> = descriptions
        .iter()
        .map(|(job, description)| NewEvent {
            account_id: job.account_id.get(),
            user_id: job.user_id,
            event_type: &job.payload.event,
            level: "INFO",
            state: "Completed",
            description,
        })
        .collect();
    if !events.is_empty() {
        store::events::events(change.conn(), &events).await?;
    }
    Ok(ended)
}

/// The job-duration metric of a job that ended.
fn observe_end(rt: &Doorbell, job: &PendingJob, status: JobStatus) {
    let secs = (now_ms() - job.created).max(0) as f64 / 1000.0;
    rt.metrics
        .job_seconds
        .get_or_create(&JobLabels {
            command: job.command.clone(),
            result: if status == JobStatus::Succeeded {
                "succeeded".into()
            } else {
                "failed".into()
            },
        })
        .observe(secs);
}

/// Fails the jobs left pending on hosts that have had no agent anywhere since `before`
/// (housekeeping), each undone and failed with that reason, fenced so that an agent connecting
/// meanwhile keeps them.
///
/// # Errors
/// [`RunnerError::Store`] when the jobs cannot be read.
pub(super) async fn fail_forsaken(rt: &Doorbell, before: i64) -> Result<(), RunnerError> {
    for forsaken in store::jobs::forsaken(&rt.db, before).await? {
        let ForsakenJob { job, host, epoch } = forsaken;
        let reason = format!(
            "host {host} has had no connected agent for {} s",
            rt.hosts.apply_timeout().as_secs()
        );
        tracing::warn!(job = %job.id, %host, "failing a job its host's agent never took");
        match fail(rt, &job, &reason, &Fence::Forsaken { host, epoch }).await {
            Ok(()) => {}
            // An agent connected meanwhile: the job is its server's now.
            Err(e) => tracing::info!(job = %job.id, error = %chain(&e), "left the job to its host"),
        }
    }
    Ok(())
}
