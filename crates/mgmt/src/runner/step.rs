//! A worker's loop and one step of it: what the router needs now (starting, a re-sync, the
//! pending jobs), and the work that is not a generation (a router's start, a VM's deploy).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use agent::proto::{Answer, GuestImage, GuestSpec, Op};
use api_types::error::ApiError;
use domain::ids::NetworkId;
use domain::job::Kind;
use domain::model::RouterState;
use domain::plan::Batch;
use ipnet::Ipv4Net;
use store::hosts::Fence;
use store::jobs::PendingJob;
use store::routers::RouterRow;
use tokio::sync::Notify;

use super::cache::Cache;
use super::push::{push, run_changes, PushError, Sent};
use super::record::record;
use super::{Doorbell, RunnerError, IDLE_CHECK, MAX_BATCH};
use crate::hosts::CallError;

/// What a step leaves the worker to do.
pub(super) enum Continue {
    /// Nothing to do until rung.
    Idle,
    /// Held: nothing done, the first-pass re-sync still to come.
    Held,
    /// Look again at once.
    More,
    /// The agent was lost or left: start over shortly.
    Again,
    /// The network is gone, or its host is not connected here: the worker ends.
    Gone,
}

pub(super) async fn worker(rt: Doorbell, network: NetworkId, bell: Arc<Notify>) {
    // A fresh worker makes sure its router and VMs exist and that the router holds the latest
    // config (a restart of either side, an agent that connected again).
    let mut fresh = true;
    let mut cache = Cache::default();
    let mut sent = Sent::default();
    // Whether the last step ended with more to look at (a generation recorded, mostly).
    let mut again = false;
    loop {
        if rt.take_reconnected(network) {
            fresh = true;
            cache.drop_copy();
        }
        if fresh {
            sent.forget();
        }
        let after_more = std::mem::take(&mut again);
        match step(&rt, network, fresh, after_more, &mut cache, &mut sent).await {
            Ok(Continue::Idle) => fresh = false,
            Ok(Continue::Held) => {}
            Ok(Continue::More) => {
                fresh = false;
                again = true;
                continue;
            }
            Ok(Continue::Again) => {
                // The agent went away mid-step: look again soon, from the start.
                fresh = true;
                cache.drop_copy();
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Ok(Continue::Gone) => {
                rt.forget(network);
                return;
            }
            Err(e) => {
                cache.drop_copy();
                fresh = true;
                tracing::warn!(network = %network, error = %crate::resp::error::chain(&e),
                    "job runner step failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        let _ = tokio::time::timeout(IDLE_CHECK, bell.notified()).await;
    }
}

pub(super) fn unavailable(e: CallError) -> Result<Continue, RunnerError> {
    tracing::info!(error = %e, "the router's agent is not reachable from here now");
    Ok(Continue::Again)
}

async fn step(
    rt: &Doorbell,
    network: NetworkId,
    fresh: bool,
    after_more: bool,
    cache: &mut Cache,
    sent: &mut Sent,
) -> Result<Continue, RunnerError> {
    if rt.is_held() {
        return Ok(Continue::Held);
    }
    let Some(router) = store::routers::router_of(&rt.db, network).await? else {
        return Ok(Continue::Gone);
    };
    let Some(epoch) = rt.hosts.epoch(&router.host) else {
        return Ok(Continue::Gone);
    };
    let fence = Fence::Owner {
        host: router.host.clone(),
        epoch,
        server_id: rt.hosts.server_id(),
    };
    match router.state {
        RouterState::Starting => {
            implement(rt, network, &router, &fence, sent).await?;
            return Ok(Continue::More);
        }
        // A router that could not start: createNetwork removes its network; nothing to do.
        RouterState::Error => return Ok(Continue::Idle),
        RouterState::Stopped => return stopped(rt, network, &router, &fence, cache, sent).await,
        RouterState::Running => {}
    }
    if fresh {
        if let Err(e) = ensure_host_objects(rt, network, &router).await {
            return match e {
                CallError::NotConnected(_) | CallError::Lost(_) => unavailable(e),
                e => Err(RunnerError::Call(e)),
            };
        }
    }
    let pending = store::jobs::pending(&rt.db, network).await?;
    if pending.is_empty() {
        // Just after this worker recorded the generation its router confirmed, the router
        // holds it: asking again is for the idle looks.
        let confirmed = sent
            .0
            .as_ref()
            .is_some_and(|b| i64::try_from(b.generation).is_ok_and(|g| g == router.applied));
        if after_more && !fresh && confirmed && router.last_error.is_none() {
            return Ok(Continue::Idle);
        }
        let held = match rt
            .hosts
            .call(
                &router.host,
                Op::Held {
                    router: router.name.clone(),
                },
            )
            .await
        {
            Ok(Answer::Held { generation }) => generation,
            Ok(other) => {
                return Err(RunnerError::Unexpected {
                    host: router.host.clone(),
                    request: "held",
                    answer: format!("{other:?}"),
                })
            }
            Err(e @ (CallError::NotConnected(_) | CallError::Lost(_))) => return unavailable(e),
            Err(e) => return Err(RunnerError::Call(e)),
        };
        let holds_latest =
            held.is_some_and(|g| i64::try_from(g).is_ok_and(|g| g == router.applied));
        if !holds_latest || router.last_error.is_some() {
            tracing::info!(network = %network, router = %router.name, ?held,
                applied = router.applied, last_error = ?router.last_error,
                "the router lacks the latest config; sending it again");
            cache.drop_copy();
            let view = cache.current(rt, network, &[]).await?;
            sent.forget();
            match push(rt, view.state, None, &Batch::default(), sent).await {
                Ok(pushed) => record(rt, &pushed, &fence, cache).await?,
                Err(PushError::Unavailable(r)) => {
                    tracing::info!(network = %network, reason = %r, "re-sync postponed");
                    return Ok(Continue::Again);
                }
                Err(e) => {
                    tracing::warn!(network = %network, error = %e, "re-sync of the router failed");
                }
            }
        }
        return Ok(Continue::Idle);
    }
    carry(rt, network, &router, pending, &fence, cache, sent).await
}

/// Carries the network's first pending jobs: the changes that go together, or a job that goes
/// on its own.
async fn carry(
    rt: &Doorbell,
    network: NetworkId,
    router: &RouterRow,
    pending: Vec<PendingJob>,
    fence: &Fence,
    cache: &mut Cache,
    sent: &mut Sent,
) -> Result<Continue, RunnerError> {
    let Some(first) = pending.first().cloned() else {
        return Ok(Continue::Idle);
    };
    match first.kind {
        Kind::Change => {
            let batch: Vec<PendingJob> = pending
                .iter()
                .take_while(|j| j.kind == Kind::Change)
                .take(MAX_BATCH)
                .cloned()
                .collect();
            run_changes(rt, network, &pending, batch, fence, cache, sent).await
        }
        // A deploy is a generation too: it carries the VM's lease, and the VM is started
        // once the router holds it (see `record::succeed`).
        Kind::Update | Kind::DeployVm | Kind::DestroyVm | Kind::DeleteNetwork => {
            run_changes(rt, network, &pending, vec![first], fence, cache, sent).await
        }
        Kind::RestartNetwork => {
            if first.payload.rebuild {
                if let Err(e) = rebuild(rt, network, router).await {
                    return match e {
                        CallError::NotConnected(_) | CallError::Lost(_) => unavailable(e),
                        CallError::Refused(reason)
                        | CallError::TimedOut(reason)
                        | CallError::Stale(reason) => {
                            // The router may be half made: the job fails, and the worker
                            // starts over, making sure the router and its VMs exist and
                            // sending it the whole config.
                            super::record::fail(rt, &first, &reason, fence).await?;
                            Ok(Continue::Again)
                        }
                    };
                }
            }
            // The whole config, never a delta: the router is told everything again.
            sent.forget();
            cache.drop_copy();
            run_changes(rt, network, &pending, vec![first], fence, cache, sent).await
        }
        Kind::StopRouter => stop(rt, network, router, &first, fence, cache, sent).await,
    }
}

/// stopRouter's job: the router goes from its host, and it is Stopped (its network's jobs end
/// without it until it starts again). The job's result is the router.
async fn stop(
    rt: &Doorbell,
    network: NetworkId,
    router: &RouterRow,
    job: &PendingJob,
    fence: &Fence,
    cache: &mut Cache,
    sent: &mut Sent,
) -> Result<Continue, RunnerError> {
    tracing::info!(network = %network, router = %router.name, "stopping the router");
    let op = Op::StopRouter {
        router: router.name.clone(),
    };
    match rt.hosts.call(&router.host, op).await {
        Ok(_) => {}
        Err(e @ (CallError::NotConnected(_) | CallError::Lost(_))) => return unavailable(e),
        Err(
            CallError::Refused(reason) | CallError::TimedOut(reason) | CallError::Stale(reason),
        ) => {
            // The router may be half gone: it stays Running, the job fails, and the worker
            // starts over, making the router again and sending it the whole config.
            store::routers::record_failure(&rt.db, network, &reason).await?;
            super::record::fail(rt, job, &reason, fence).await?;
            return Ok(Continue::Again);
        }
    }
    sent.forget();
    cache.drop_copy();
    set_state(rt, network, RouterState::Stopped, fence).await?;
    end_with_router(rt, job).await?;
    Ok(Continue::More)
}

/// A stopped router's step. Its network's jobs end in the database alone, checked as the
/// router would check them (see `push`), as CloudStack's router elements skip a stopped
/// router; startRouter and restartNetwork start it first, and so does a VM's deploy (as
/// CloudStack implements a network with a stopped router for a new VM): it is made again from
/// nothing and gets the whole config. A stop of a stopped router ends at once.
async fn stopped(
    rt: &Doorbell,
    network: NetworkId,
    router: &RouterRow,
    fence: &Fence,
    cache: &mut Cache,
    sent: &mut Sent,
) -> Result<Continue, RunnerError> {
    let pending = store::jobs::pending(&rt.db, network).await?;
    let Some(first) = pending.first().cloned() else {
        return Ok(Continue::Idle);
    };
    match first.kind {
        Kind::StopRouter => {
            end_with_router(rt, &first).await?;
            Ok(Continue::More)
        }
        Kind::RestartNetwork | Kind::DeployVm => {
            tracing::info!(network = %network, router = %router.name, "starting the router");
            if let Err(e) = rebuild(rt, network, router).await {
                return match e {
                    CallError::NotConnected(_) | CallError::Lost(_) => unavailable(e),
                    CallError::Refused(reason)
                    | CallError::TimedOut(reason)
                    | CallError::Stale(reason) => {
                        // Whatever was made goes again: the router stays Stopped, and the
                        // job fails with the reason.
                        let op = Op::StopRouter {
                            router: router.name.clone(),
                        };
                        if let Err(err) = rt.hosts.call(&router.host, op).await {
                            tracing::warn!(router = %router.name, error = %err,
                                "removing what a failed start made");
                        }
                        super::record::fail(rt, &first, &reason, fence).await?;
                        Ok(Continue::More)
                    }
                };
            }
            set_state(rt, network, RouterState::Running, fence).await?;
            sent.forget();
            cache.drop_copy();
            // Made from nothing already: a restart's job carries the whole config, without
            // making the router again.
            let mut job = first;
            job.payload.rebuild = false;
            let mut pending = pending;
            pending[0] = job;
            carry(rt, network, router, pending, fence, cache, sent).await
        }
        Kind::Change | Kind::Update | Kind::DestroyVm | Kind::DeleteNetwork => {
            carry(rt, network, router, pending, fence, cache, sent).await
        }
    }
}

/// Sets the router's state, fenced: only while this server still holds the host.
async fn set_state(
    rt: &Doorbell,
    network: NetworkId,
    state: RouterState,
    fence: &Fence,
) -> Result<(), RunnerError> {
    let mut change = rt.db.fenced(fence, None).await?;
    store::routers::set_state(change.conn(), network, state).await?;
    // The worker writing is the one a ring would wake.
    let _nobody_to_wake = change.commit().await?;
    Ok(())
}

/// Ends a job that succeeded with the router as it is now.
async fn end_with_router(rt: &Doorbell, job: &PendingJob) -> Result<(), RunnerError> {
    let result = crate::resp::job::job_result(&rt.db, &rt.site, &job.payload.outcome)
        .await
        .unwrap_or_else(|err| err.job_result());
    super::record::finish(rt, job, domain::job::JobStatus::Succeeded, 0, &result).await
}

/// Makes the router again from nothing, then makes sure the network's running VMs are on
/// its guest network (restartNetwork with clean-up).
async fn rebuild(rt: &Doorbell, network: NetworkId, router: &RouterRow) -> Result<(), CallError> {
    let (cidr, gateway, vlan) = wiring(rt, network).await?;
    tracing::info!(network = %network, router = %router.name, "rebuilding the router from nothing");
    rt.hosts
        .call(
            &router.host,
            Op::RebuildRouter {
                router: router.name.clone(),
                cidr,
                gateway,
                vlan,
            },
        )
        .await?;
    ensure_host_objects(rt, network, router).await
}

/// How the network's router is wired: its guest CIDR, gateway and VLAN.
async fn wiring(
    rt: &Doorbell,
    network: NetworkId,
) -> Result<(Ipv4Net, Ipv4Addr, Option<u16>), CallError> {
    let net = store::networks::by_id(&rt.db, network)
        .await
        .map_err(|e| CallError::Refused(crate::resp::error::chain(&e)))?
        .ok_or_else(|| CallError::Refused(format!("network {network} is gone")))?;
    Ok((net.cidr, net.gateway, net.vlan))
}

/// The network's router as the host's agent makes it.
pub(super) async fn ensure_router_op(
    rt: &Doorbell,
    network: NetworkId,
    router: &RouterRow,
) -> Result<Op, CallError> {
    let (cidr, gateway, vlan) = wiring(rt, network).await?;
    Ok(Op::EnsureRouter {
        router: router.name.clone(),
        cidr,
        gateway,
        vlan,
    })
}

/// Makes sure the router and the network's running VMs exist on the host (after a restart of
/// the host or the server).
async fn ensure_host_objects(
    rt: &Doorbell,
    network: NetworkId,
    router: &RouterRow,
) -> Result<(), CallError> {
    let op = ensure_router_op(rt, network, router).await?;
    rt.hosts.call(&router.host, op).await?;
    let vms = store::vms::running_vms(&rt.db, network.get())
        .await
        .map_err(|e| CallError::Refused(crate::resp::error::chain(&e)))?;
    for vm in vms {
        rt.hosts
            .call(&router.host, ensure_vm_op(&router.name, vm))
            .await?;
    }
    Ok(())
}

/// A VM as the host's agent makes it: on its network's VLAN, with its NIC's MAC.
pub(super) fn ensure_vm_op(router: &str, vm: store::vms::LabVm) -> Op {
    Op::EnsureVm {
        router: router.to_string(),
        vm: vm.key,
        ip: vm.ip,
        label: Some(lab::VmLabel {
            name: vm.name,
            account: vm.account,
            network: vm.network,
        }),
        mac: Some(vm.mac),
        vlan: vm.vlan,
        guest: vm.image.map(|image| GuestSpec {
            cpus: u32::try_from(vm.cpus).unwrap_or(1),
            memory_mib: u32::try_from(vm.memory).unwrap_or(512),
            image: match image.initrd {
                Some(initrd) => GuestImage::Kernel {
                    kernel: image.path.into(),
                    initrd: Some(initrd.into()),
                    cmdline: image.cmdline.unwrap_or_default(),
                },
                None => GuestImage::Disk {
                    path: image.path.into(),
                    format: image.format.to_ascii_lowercase(),
                },
            },
        }),
    }
}

/// How a router's start ended.
enum Started {
    /// It took its first config.
    Applied(Box<super::push::Pushed>),
    /// It could not start, for this reason.
    Failed(String),
}

/// Brings a new network's router up and gives it its first config; the router becomes Running,
/// or Error with the reason (createNetwork, waiting for either, then removes the network).
async fn implement(
    rt: &Doorbell,
    network: NetworkId,
    router: &RouterRow,
    fence: &Fence,
    sent: &mut Sent,
) -> Result<(), RunnerError> {
    let started = match ensure_host_objects(rt, network, router).await {
        // Not known either way: try again when the agent is back.
        Err(e @ (CallError::NotConnected(_) | CallError::Lost(_))) => {
            return Err(RunnerError::Call(e))
        }
        Err(e) => Started::Failed(e.to_string()),
        Ok(()) => {
            let state = store::state::read(&rt.db, network).await?;
            sent.forget();
            match push(rt, &state, None, &Batch::default(), sent).await {
                Ok(pushed) => Started::Applied(Box::new(pushed)),
                Err(PushError::Unavailable(r)) => return Err(RunnerError::Unreachable(r)),
                Err(e) => Started::Failed(e.to_string()),
            }
        }
    };
    match started {
        Started::Applied(pushed) => super::record::record_generation(rt, &pushed, fence).await,
        Started::Failed(reason) => {
            let op = Op::RemoveRouter {
                router: router.name.clone(),
            };
            if let Err(err) = rt.hosts.call(&router.host, op).await {
                tracing::warn!(router = %router.name, error = %err, "removing a router that failed to start");
            }
            store::routers::set_router_error(&rt.db, network, &reason).await?;
            Ok(())
        }
    }
}

/// A job's failure as its result shows it.
pub(super) fn failure(job: &PendingJob, reason: &str) -> ApiError {
    ApiError::internal(format!("{}: {reason}", job.payload.failure))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use agent::proto::{GuestImage, GuestSpec, Op};
    use domain::guest::MacAddr;
    use store::catalogue::TemplateImage;
    use store::vms::LabVm;

    use super::ensure_vm_op;

    fn vm(image: Option<TemplateImage>) -> LabVm {
        LabVm {
            key: "k".into(),
            ip: Ipv4Addr::new(10, 1, 1, 2),
            name: "web1".into(),
            account: "alice".into(),
            network: "web".into(),
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            vlan: Some(100),
            cpus: 2,
            memory: 1024,
            image,
        }
    }

    fn guest(op: Op) -> (Option<MacAddr>, Option<u16>, Option<GuestSpec>) {
        match op {
            Op::EnsureVm {
                mac, vlan, guest, ..
            } => (mac, vlan, guest),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_vm_is_ensured_with_its_mac_vlan_and_what_its_template_boots() {
        let (mac, vlan, spec) = guest(ensure_vm_op("r-1-VM", vm(None)));
        assert_eq!(mac, Some(MacAddr([2, 0, 0, 0, 0, 1])));
        assert_eq!(vlan, Some(100));
        assert_eq!(spec, None);

        let disk = TemplateImage {
            path: "/srv/guest.qcow2".into(),
            format: "QCOW2".into(),
            initrd: None,
            cmdline: None,
        };
        let (_, _, spec) = guest(ensure_vm_op("r-1-VM", vm(Some(disk))));
        assert_eq!(
            spec,
            Some(GuestSpec {
                cpus: 2,
                memory_mib: 1024,
                image: GuestImage::Disk {
                    path: "/srv/guest.qcow2".into(),
                    format: "qcow2".into(),
                },
            })
        );

        let kernel = TemplateImage {
            path: "/srv/vmlinuz".into(),
            format: "RAW".into(),
            initrd: Some("/srv/initrd.img".into()),
            cmdline: Some("console=ttyS0".into()),
        };
        let (_, _, spec) = guest(ensure_vm_op("r-1-VM", vm(Some(kernel))));
        assert_eq!(
            spec.map(|s| s.image),
            Some(GuestImage::Kernel {
                kernel: "/srv/vmlinuz".into(),
                initrd: Some("/srv/initrd.img".into()),
                cmdline: "console=ttyS0".into(),
            })
        );
    }
}
