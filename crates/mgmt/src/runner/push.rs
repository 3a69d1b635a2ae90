//! A generation: planned, sent to the router (as a delta when the router's config is known),
//! and the retries of a batch the router refuses.

use std::collections::BTreeSet;
use std::time::Instant;

use agent::proto::{Answer, Applied, Op};
use domain::ids::{JobId, NetworkId};
use domain::job::Kind;
use domain::plan::{self, Batch, NetworkState, Planned, Touched};
use router_config::{RouterConfig, RouterDelta};
use store::hosts::Fence;
use store::jobs::PendingJob;

use super::cache::{copy_differs, Cache};
use super::record::{fail, record, succeed};
use super::step::Continue;
use super::{Doorbell, RunnerError};
use crate::hosts::CallError;
use crate::metrics::{ApplyLabels, RouterLabels};
use crate::resp::error::chain;

/// Why a generation was not applied.
#[derive(Debug)]
pub(super) enum PushError {
    /// The router refused the config.
    Refused(String),
    /// The router did not answer in time.
    TimedOut(String),
    /// The agent is not connected (any more), or the router holds something newer: nothing is
    /// known about this generation, and it is sent again later.
    Unavailable(String),
}

impl std::fmt::Display for PushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PushError::Refused(r) | PushError::TimedOut(r) | PushError::Unavailable(r) => {
                f.write_str(r)
            }
        }
    }
}

/// The config the router confirmed last, as far as this worker knows, each rule's wire form
/// kept by id: the base of the next generation's delta. Forgotten whenever what the router
/// holds is in doubt.
#[derive(Default)]
pub(super) struct Sent(pub(super) Option<Planned>);

impl Sent {
    pub(super) fn forget(&mut self) {
        self.0 = None;
    }
}

/// A generation the router confirmed, and what recording it changes.
pub(super) struct Pushed {
    pub(super) commit: plan::Commit,
    pub(super) network: NetworkId,
    pub(super) generation: u64,
    /// Set when the copy is checked and the config the router now holds, as the worker keeps
    /// it, differs from the whole plan of the rows: what the router holds and what it should.
    pub(super) planned_differs: Option<(RouterConfig, RouterConfig)>,
    /// The router is stopped: the generation was checked as the router would check it, and
    /// nothing was sent; it is recorded without moving what the router confirmed.
    pub(super) stopped: bool,
}

/// Plans the generation of `batch`, has the router's agent apply it — as a delta against the
/// config the router confirmed last when that is known, complete otherwise — and returns what
/// to record. The delta is planned from the rows `touched` names when there are base and
/// rows to plan it from ([`plan::delta`]); otherwise, or when that declines, the whole config
/// is planned and compared with the base.
pub(super) async fn push(
    rt: &Doorbell,
    state: &NetworkState,
    touched: Option<&Touched>,
    batch: &Batch,
    sent: &mut Sent,
) -> Result<Pushed, PushError> {
    let network = state
        .network
        .as_ref()
        .ok_or_else(|| PushError::Unavailable("the network is gone".into()))?;
    let t0 = Instant::now();
    let taken = store::routers::next_generation(&rt.db, network.id)
        .await
        .map_err(|e| PushError::Unavailable(chain(&e)))?;
    let (router, host, generation) = (taken.router, taken.host, taken.generation);
    if taken.stopped {
        // As CloudStack's router elements do for a stopped router: nothing is sent, and the
        // jobs end; the router gets the whole config when it starts. What it would refuse is
        // refused here all the same, by the checks it runs.
        sent.forget();
        let (config, commit) = plan::desired(state, batch, generation);
        return match router_config::validate(config) {
            Ok(_) => Ok(Pushed {
                commit,
                network: network.id,
                generation,
                planned_differs: None,
                stopped: true,
            }),
            Err(problems) => Err(PushError::Refused(format!(
                "config of generation {generation} refused: {problems}"
            ))),
        };
    }
    let t1 = Instant::now();
    let base = sent.0.take();
    let rows = match (&base, touched) {
        (Some(base), Some(touched)) => plan::delta(base, state, batch, touched, generation),
        _ => None,
    };
    let from_rows = rows.is_some();
    let (mut delta, mut whole, commit) = match rows {
        Some((delta, commit)) => (Some(delta), None, commit),
        None => {
            let (config, commit) = plan::desired(state, batch, generation);
            let delta = base
                .as_ref()
                .map(|b| RouterDelta::between(&b.config(), &config));
            (delta, Some(Box::new(config)), commit)
        }
    };
    let started = Instant::now();
    let how = if from_rows { "rows" } else { "whole" };
    let delta_rules = delta.as_ref().map(RouterDelta::size);
    // A delta planned from the rows is kept, to move the base once the router took it; one
    // compared with the whole config goes as it is (the whole config becomes the base).
    let to_send = if from_rows {
        delta.clone()
    } else {
        delta.take()
    };
    let mut delta_taken = to_send.is_some();
    let mut outcome = match to_send {
        Some(delta) => {
            let op = Op::ApplyDelta {
                router: router.clone(),
                delta: Box::new(delta),
            };
            rt.hosts.call(&host, op).await
        }
        None => Err(CallError::Stale(String::new())),
    };
    if let Err(CallError::Stale(why)) = &outcome {
        if base.is_some() {
            tracing::info!(%router, reason = %why, "the router lacks the delta's base; sending the whole config");
        }
        delta_taken = false;
        let config =
            whole.get_or_insert_with(|| Box::new(plan::desired(state, batch, generation).0));
        let op = Op::Apply {
            router: router.clone(),
            config: config.clone(),
        };
        outcome = rt.hosts.call(&host, op).await;
    }
    let applied = started.elapsed();
    rt.metrics.apply_seconds.observe(applied.as_secs_f64());
    tracing::debug!(
        %router,
        generation,
        jobs = batch.included.len(),
        rules = state.rules.len(),
        delta = ?delta_rules,
        planned_from = how,
        counter_us = (t1 - t0).as_micros() as u64,
        plan_us = (started - t1).as_micros() as u64,
        apply_us = applied.as_micros() as u64,
        "pushed a generation"
    );
    let label = match &outcome {
        Ok(Answer::Applied {
            outcome: Applied::Generation(_),
        }) => "applied",
        Ok(Answer::Applied {
            outcome: Applied::Superseded(_),
        }) => "superseded",
        Err(CallError::Refused(_)) => "refused",
        Err(CallError::TimedOut(_)) => "timed_out",
        _ => "unavailable",
    };
    rt.metrics
        .applies
        .get_or_create(&ApplyLabels {
            result: label.into(),
        })
        .inc();
    let behind = rt
        .metrics
        .generations_behind
        .get_or_create(&RouterLabels {
            router: router.clone(),
        })
        .clone();
    match outcome {
        Ok(Answer::Applied {
            outcome: Applied::Generation(g),
        }) => {
            behind.set(0);
            // What the router holds now, as this worker keeps it: the base moved by the delta
            // it took, or the whole config it took.
            let held = match (
                base,
                delta.as_ref().filter(|_| delta_taken && from_rows),
                whole,
            ) {
                (Some(mut base), Some(delta), _) => base.apply(delta).ok().map(|()| base),
                (_, _, Some(config)) => Some(Planned::new(&config)),
                _ => None,
            }
            .filter(|held| held.generation == g);
            // Checked like the copy: a delta planned from the rows against the whole plan.
            let planned_differs = match &held {
                Some(held) if from_rows && delta_taken && rt.checks_copy() => {
                    let config = plan::desired(state, batch, generation).0;
                    (*held != Planned::new(&config)).then(|| (held.config(), config))
                }
                _ => None,
            };
            sent.0 = held.filter(|_| planned_differs.is_none());
            Ok(Pushed {
                commit,
                network: network.id,
                generation: g,
                planned_differs,
                stopped: false,
            })
        }
        Ok(Answer::Applied {
            outcome: Applied::Superseded(held),
        }) => {
            // The router holds a newer generation than this one: another server's, or one this
            // database forgot (a data directory restored from backup). Move the counter past
            // it; the next generation carries everything again.
            store::routers::bump_generation(&rt.db, network.id, held)
                .await
                .map_err(|e| PushError::Unavailable(chain(&e)))?;
            Err(PushError::Unavailable(format!(
                "router {router} holds generation {held}, newer than {generation}; will re-send"
            )))
        }
        Ok(other) => Err(PushError::Unavailable(format!(
            "the agent answered {other:?} to an apply"
        ))),
        Err(CallError::Refused(reason)) => {
            // The router keeps what it held: the base stays.
            sent.0 = base;
            store::routers::record_failure(&rt.db, network.id, &reason)
                .await
                .map_err(|e| PushError::Unavailable(chain(&e)))?;
            behind.inc();
            Err(PushError::Refused(reason))
        }
        Err(CallError::TimedOut(reason)) => {
            store::routers::record_failure(&rt.db, network.id, &reason)
                .await
                .map_err(|e| PushError::Unavailable(chain(&e)))?;
            behind.inc();
            Err(PushError::TimedOut(reason))
        }
        Err(e @ (CallError::NotConnected(_) | CallError::Lost(_) | CallError::Stale(_))) => {
            Err(PushError::Unavailable(e.to_string()))
        }
    }
}

/// Carries `jobs` (the first pending ones) in as few generations as the router takes: on a
/// refusal, without the newest job, down to a single job, which then fails on its own.
pub(super) async fn run_changes(
    rt: &Doorbell,
    network: NetworkId,
    pending: &[PendingJob],
    jobs: Vec<PendingJob>,
    fence: &Fence,
    cache: &mut Cache,
    sent: &mut Sent,
) -> Result<Continue, RunnerError> {
    let mut remaining = jobs;
    let mut pending: Vec<PendingJob> = pending.to_vec();
    let mut resync = false;
    while !remaining.is_empty() {
        let t = Instant::now();
        let view = cache.current(rt, network, &pending).await?;
        let (state, touched) = (view.state, view.touched);
        tracing::debug!(
            network = %network,
            read_us = t.elapsed().as_micros() as u64,
            "read the network's changed rows"
        );
        let pending_ids: BTreeSet<JobId> = pending.iter().map(|j| j.id).collect();
        let mut done = false;
        for m in (1..=remaining.len()).rev() {
            let batch = Batch {
                pending: pending_ids.clone(),
                included: remaining[..m].iter().map(|j| j.id).collect(),
            };
            match push(rt, state, touched, &batch, sent).await {
                Ok(pushed) => {
                    let carried: Vec<PendingJob> = remaining.drain(..m).collect();
                    let t = Instant::now();
                    let take_back = succeed(rt, network, &pushed, &carried, fence).await?;
                    tracing::debug!(
                        network = %network,
                        jobs = carried.len(),
                        record_us = t.elapsed().as_micros() as u64,
                        "recorded a generation"
                    );
                    cache.committed(&pushed.commit);
                    if let Some((held, whole)) = &pushed.planned_differs {
                        // The delta planned from the changed rows left the router with
                        // another config than the whole plan: never a panic; count it,
                        // forget the base, and send the whole config (as for a copy that
                        // differs, below).
                        rt.metrics.copy_mismatches.inc();
                        store::routers::record_failure(
                            &rt.db,
                            network,
                            "the generation's delta differed from the whole plan",
                        )
                        .await?;
                        tracing::error!(
                            network = %network,
                            ?held,
                            ?whole,
                            "the generation's delta differed from the whole plan; \
                             re-sending the router's config"
                        );
                        sent.forget();
                        cache.drop_copy();
                        resync = true;
                    }
                    if take_back {
                        // A VM that did not start: its lease goes in the next generation.
                        cache.drop_copy();
                        resync = true;
                    }
                    if rt.checks_copy() {
                        if let Some((copy, database)) = copy_differs(rt, network, cache).await? {
                            // Never a panic, and never another config planned from a wrong
                            // copy: count it, drop the copy, and send the router the config
                            // of a full read. The router's last error says so until then, so
                            // that an idle look re-sends it should this step end early.
                            rt.metrics.copy_mismatches.inc();
                            store::routers::record_failure(
                                &rt.db,
                                network,
                                "the worker's copy of the network differed from the database",
                            )
                            .await?;
                            tracing::error!(
                                network = %network,
                                ?copy,
                                ?database,
                                "the worker's copy of the network differed from the database; \
                                 reading everything again and re-sending the router's config"
                            );
                            cache.drop_copy();
                            resync = true;
                        }
                    }
                    pending.retain(|p| !carried.iter().any(|c| c.id == p.id));
                    done = true;
                    break;
                }
                Err(PushError::Unavailable(reason)) => {
                    // Nothing known: the jobs stay pending for whoever reaches the router next.
                    tracing::info!(network = %network, %reason, "generation not applied; jobs wait");
                    return Ok(Continue::Again);
                }
                Err(PushError::TimedOut(reason)) => {
                    // The router did not answer: the batch's jobs fail with that reason, and
                    // the next apply (after the undo) brings the router in line.
                    let carried: Vec<PendingJob> = remaining.drain(..m).collect();
                    for job in &carried {
                        fail(rt, job, &reason, fence).await?;
                    }
                    cache.drop_copy();
                    return Ok(Continue::More);
                }
                Err(PushError::Refused(reason)) if m == 1 => {
                    let job = remaining.remove(0);
                    pending.retain(|p| p.id != job.id);
                    fail(rt, &job, &reason, fence).await?;
                    cache.drop_copy();
                    // An update writes its values in place, so a generation made for an
                    // earlier job may already carry them; after the undo, the router gets the
                    // old values back.
                    resync |= job.kind == Kind::Update;
                    done = true;
                    break;
                }
                Err(PushError::Refused(reason)) => {
                    tracing::info!(network = %network, jobs = m, %reason,
                        "router refused a coalesced generation; retrying without the newest job");
                }
            }
        }
        if !done {
            break;
        }
    }
    if resync {
        let view = cache.current(rt, network, &pending).await?;
        let batch = Batch {
            pending: pending.iter().map(|j| j.id).collect(),
            included: BTreeSet::new(),
        };
        match push(rt, view.state, view.touched, &batch, sent).await {
            Ok(pushed) => record(rt, &pushed, fence, cache).await?,
            Err(reason) => {
                tracing::warn!(network = %network, %reason, "re-sync after a refused update failed");
            }
        }
    }
    Ok(Continue::More)
}
