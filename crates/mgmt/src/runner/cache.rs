//! A worker's copy of its network's rows, and the check of the copy against a full read.

use std::collections::BTreeSet;

use domain::ids::{IpId, JobId, MemberId, NetworkId, PolicyId, RuleId, VmId};
use domain::model::{IpRow, MemberRow, PolicyRow, Rule, VmNic};
use domain::plan::{self, Batch, NetworkState, Touched};
use router_config::RouterConfig;
use store::jobs::PendingJob;
use store::StoreError;

use super::Doorbell;

/// A worker's copy of its network's rows, kept current without reading every row for every
/// generation: only the rows the pending jobs changed are read again, and what the worker
/// itself records is applied to the copy as it is written.
///
/// Every write a router sees carries its job in the row's `job_id`: rule, member, policy and IP
/// rows written by creations, deletions and updates alike (an update marks the rule it
/// rewrites). So the rows of the pending jobs are all a step needs to read. Writes that are
/// not marked change nothing a config is planned from (names, descriptions, display flags).
/// Anything unexpected (a refused job, an error, a copy check that found a difference) drops
/// the copy, and the next step reads everything.
///
/// Beside the rows it keeps the ids of those whose job is pending ([`Touched`]): the rows a
/// generation's delta plans again ([`plan::delta`]). They are the rows read for the pending
/// jobs, plus those named before whose job is still pending in the copy (a row the database
/// has since marked with a job this step does not know yet keeps its earlier version here).
#[derive(Default)]
pub(super) struct Cache {
    state: Option<NetworkState>,
    touched: Touched,
    /// Whether the state `current` gave last is the copy kept from earlier generations (not
    /// read whole): only then does a delta from the rows it touched hold.
    kept: bool,
}

/// The network's rows for a step, and the rows of its pending jobs when the copy was kept.
pub(super) struct View<'a> {
    /// The rows.
    pub(super) state: &'a NetworkState,
    /// The rows a delta plans again; `None` when the rows were read whole.
    pub(super) touched: Option<&'a Touched>,
}

impl Cache {
    /// The network's state: read whole when there is no copy, otherwise the copy with the
    /// rows of the pending jobs read again.
    pub(super) async fn current(
        &mut self,
        rt: &Doorbell,
        network: NetworkId,
        pending: &[PendingJob],
    ) -> Result<View<'_>, StoreError> {
        let jobs: Vec<JobId> = pending.iter().map(|j| j.id).collect();
        let busy: BTreeSet<JobId> = jobs.iter().copied().collect();
        let state = match self.state.take() {
            None => {
                let state = store::state::read(&rt.db, network).await?;
                self.touched = Touched::of(&state, &busy);
                self.kept = false;
                state
            }
            Some(mut state) => {
                let fresh = store::state::rows(&rt.db, network, Some(&jobs)).await?;
                let rules: Vec<RuleId> = fresh.rules.iter().map(|r| r.id).collect();
                let members: Vec<MemberId> = fresh.members.iter().map(|m| m.id).collect();
                let policies: Vec<PolicyId> = fresh.policies.iter().map(|p| p.id).collect();
                merge(&mut state.ips, fresh.ips, |r| r.id);
                merge(&mut state.rules, fresh.rules, |r| r.id);
                merge(&mut state.members, fresh.members, |r| r.id);
                merge(&mut state.policies, fresh.policies, |r| r.id);
                merge(&mut state.vms, fresh.vms, |r| r.vm_id);
                // The zone's DNS servers change without a job of the network: read each time.
                if let Some(n) = &state.network {
                    state.dns = store::zones::dns(&rt.db, n.zone_id.get()).await?;
                }
                self.touched.keep_pending(&state, &busy);
                self.touched.rules.extend(rules);
                self.touched.members.extend(members);
                self.touched.policies.extend(policies);
                self.kept = true;
                state
            }
        };
        let state = self.state.insert(state);
        Ok(View {
            state,
            touched: self.kept.then_some(&self.touched),
        })
    }

    pub(super) fn committed(&mut self, commit: &plan::Commit) {
        if let Some(state) = &mut self.state {
            plan::apply_commit(state, commit);
        }
    }

    pub(super) fn drop_copy(&mut self) {
        self.state = None;
        self.touched = Touched::default();
        self.kept = false;
    }
}

/// Compares the worker's copy with a full read of every row: the configs planned from both
/// must be equal, leaving out rows of jobs still pending (which the copy reads when it takes
/// them up). Returns both configs when they differ.
pub(super) async fn copy_differs(
    rt: &Doorbell,
    network: NetworkId,
    cache: &Cache,
) -> Result<Option<(RouterConfig, RouterConfig)>, StoreError> {
    let Some(copy) = &cache.state else {
        return Ok(None);
    };
    let full = store::state::read(&rt.db, network).await?;
    if full.network.is_none() {
        // Deleted with this batch: the worker ends.
        return Ok(None);
    }
    let pending: BTreeSet<JobId> = store::jobs::pending(&rt.db, network)
        .await?
        .iter()
        .map(|j| j.id)
        .collect();
    let busy = |job: Option<JobId>| job.is_some_and(|j| pending.contains(&j));
    // Rows a pending job wrote, by id as the database has them now: the copy may still hold
    // their earlier version, which the check leaves out too.
    fn busy_ids<T, K: Ord>(
        rows: &[T],
        key: fn(&T) -> (K, Option<JobId>),
        busy: &dyn Fn(Option<JobId>) -> bool,
    ) -> BTreeSet<K> {
        rows.iter()
            .map(key)
            .filter(|(_, job)| busy(*job))
            .map(|(id, _)| id)
            .collect()
    }
    fn settle<T, K: Ord>(
        rows: &mut Vec<T>,
        skip: &BTreeSet<K>,
        key: fn(&T) -> (K, Option<JobId>),
        busy: &dyn Fn(Option<JobId>) -> bool,
    ) {
        rows.retain(|r| {
            let (id, job) = key(r);
            !skip.contains(&id) && !busy(job)
        });
    }
    let rule_key: fn(&Rule) -> (RuleId, Option<JobId>) = |r| (r.id, r.job_id);
    let member_key: fn(&MemberRow) -> (MemberId, Option<JobId>) = |r| (r.id, r.job_id);
    let policy_key: fn(&PolicyRow) -> (PolicyId, Option<JobId>) = |r| (r.id, r.job_id);
    let ip_key: fn(&IpRow) -> (IpId, Option<JobId>) = |r| (r.id, r.job_id);
    let skip_rules = busy_ids(&full.rules, rule_key, &busy);
    let skip_members = busy_ids(&full.members, member_key, &busy);
    let skip_policies = busy_ids(&full.policies, policy_key, &busy);
    let skip_ips = busy_ids(&full.ips, ip_key, &busy);
    let vm_key: fn(&VmNic) -> (VmId, Option<JobId>) = |r| (r.vm_id, r.job_id);
    let skip_vms = busy_ids(&full.vms, vm_key, &busy);
    let settled = |s: &NetworkState| {
        let mut s = s.clone();
        settle(&mut s.rules, &skip_rules, rule_key, &busy);
        settle(&mut s.members, &skip_members, member_key, &busy);
        settle(&mut s.policies, &skip_policies, policy_key, &busy);
        settle(&mut s.ips, &skip_ips, ip_key, &busy);
        settle(&mut s.vms, &skip_vms, vm_key, &busy);
        plan::desired(&s, &Batch::default(), 0).0
    };
    let (mine, theirs) = (settled(copy), settled(&full));
    Ok((mine != theirs).then_some((mine, theirs)))
}

/// Replaces rows of `old` by id with `fresh` ones (adding new ones), keeping id order; each
/// row is found by binary search, so a step costs what changed, not what the network holds.
fn merge<T, K: Eq + Ord + std::hash::Hash>(old: &mut Vec<T>, fresh: Vec<T>, id: impl Fn(&T) -> K) {
    for r in fresh {
        let key = id(&r);
        match old.binary_search_by_key(&key, &id) {
            Ok(i) => old[i] = r,
            Err(i) => old.insert(i, r),
        }
    }
}
