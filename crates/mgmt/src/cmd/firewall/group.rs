//! Group commit of rule creations: the creations waiting for the same network's lock are
//! written together, in one transaction under one lock with one commit.
//!
//! Each network has at most one writer task at a time. A request that finds no writer for its
//! network queues itself and starts one; a request that finds one queues itself behind it.
//! The writer opens a change, takes the network's lock and only then takes every request
//! queued so far, so whatever arrived while the previous group held the lock goes in the next
//! group, and a request alone is written at once (there is no timer to wait for). Within a
//! group the requests are checked and written in arrival order, each against the rows and
//! against the requests of the group written before it (they are rows of the same transaction
//! by then), so each is accepted or refused exactly as it would be alone. A refused request
//! writes nothing (its checks come before its job, its event and its rows); a database error
//! or a failed commit answers every request of the group with that error, and nothing of the
//! group is written.
//!
//! The writer runs as a task of its own, so a client that goes away does not cancel a group
//! others wait for; its request is then written and never answered, like one whose answer is
//! lost on the way.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use api_types::error::{ApiError, ApiErrorCode};
use ipnet::Ipv4Net;
use serde_json::Value;
use tokio::sync::oneshot;
use tracing::Instrument;

use super::super::accepted;
use super::super::limits::{self, Resource};
use super::event_type;
use crate::app::{chain, internal, store_error, ApiResult, App};
use domain::actor::Caller;
use domain::checks::{self, Candidate};
use domain::ids::{IpId, NetworkId, RuleId, VmId};
use domain::job::{Kind, NewJob, Outcome, Payload};
use domain::model::{NewRule, Purpose, Traffic};
use store::db::Dialect;
use store::{ChangeTx, Scheduled};

/// A checked creation request: its own validation (parameters, rights, tenancy) is done.
pub(crate) struct Creation {
    /// Who asks.
    pub caller: Caller,
    /// The API command.
    pub command: &'static str,
    /// The rule to write.
    pub rule: NewRule,
    /// Whether the rule opens the firewall for its public port.
    pub open_firewall: bool,
    /// The job's payload.
    pub payload: Payload,
    /// The secondary address of a VM's NIC the rule sends to, if it does: checked again
    /// under the lock, since it may have been removed after the request's checks.
    pub secondary: Option<(VmId, Ipv4Addr)>,
}

/// A queued request and where its answer goes.
struct Waiting {
    creation: Creation,
    reply: oneshot::Sender<ApiResult<Value>>,
}

/// The creation queues, one per network that has a writer running.
#[derive(Default)]
pub(crate) struct Creations {
    queues: Mutex<HashMap<NetworkId, Vec<Waiting>>>,
}

impl Creations {
    /// How many requests wait for `network`'s writer to take them.
    #[cfg(test)]
    pub(crate) fn queued(&self, network: NetworkId) -> usize {
        self.queues
            .lock()
            .map(|q| q.get(&network).map_or(0, Vec::len))
            .unwrap_or(0)
    }
}

/// The largest group: a bound on how long one transaction holds the network's lock.
const MAX_GROUP: usize = 256;

/// Queues `creation` for its network's writer (starting one when there is none) and waits
/// for its own answer.
pub(crate) async fn submit(app: &App, creation: Creation) -> ApiResult<Value> {
    let network = creation.rule.network_id;
    let (reply, answer) = oneshot::channel();
    let start = {
        let mut queues = app
            .creations
            .queues
            .lock()
            .map_err(|_| internal("the creation queue's lock is poisoned"))?;
        match queues.get_mut(&network) {
            Some(queue) => {
                queue.push(Waiting { creation, reply });
                false
            }
            None => {
                queues.insert(network, vec![Waiting { creation, reply }]);
                true
            }
        }
    };
    if start {
        let writer = Writer {
            app: app.clone(),
            network,
            done: false,
        };
        tokio::spawn(writer.run());
    }
    answer
        .await
        .unwrap_or_else(|_| Err(internal("a rule creation's group ended without an answer")))
}

/// The one writer of a network's creations. Dropped without finishing (a panic), it removes
/// its queue, so the waiting requests are answered with an error and the next request starts
/// a new writer.
struct Writer {
    app: App,
    network: NetworkId,
    done: bool,
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.done {
            if let Ok(mut queues) = self.app.creations.queues.lock() {
                queues.remove(&self.network);
            }
        }
    }
}

impl Writer {
    async fn run(mut self) {
        loop {
            // The span lets a test count the statements of each group.
            self.group()
                .instrument(tracing::debug_span!("creation_group", network = %self.network))
                .await;
            let Ok(mut queues) = self.app.creations.queues.lock() else {
                return;
            };
            if queues.get(&self.network).is_none_or(Vec::is_empty) {
                queues.remove(&self.network);
                self.done = true;
                return;
            }
        }
    }

    /// Everything queued (up to [`MAX_GROUP`]), taken once the network's lock is held.
    fn take(&self) -> Vec<Waiting> {
        let Ok(mut queues) = self.app.creations.queues.lock() else {
            return Vec::new();
        };
        match queues.get_mut(&self.network) {
            Some(queue) if queue.len() > MAX_GROUP => queue.drain(..MAX_GROUP).collect(),
            Some(queue) => std::mem::take(queue),
            None => Vec::new(),
        }
    }

    /// One group: lock, take the queue, write each request, commit, answer.
    async fn group(&self) {
        let app = &self.app;
        let mut change = match app.db.change(Some(self.network)).await {
            Ok(change) => change,
            Err(e) => return answer_all(self.take(), &store_error(e)),
        };
        if let Err(e) = change.lock_network().await {
            return answer_all(self.take(), &store_error(e));
        }
        let group = self.take();
        if group.is_empty() {
            return;
        }
        let accounts: Vec<_> = group.iter().map(|w| w.creation.rule.account_id).collect();
        if let Err(e) = limits::lock_takers(&mut change, &accounts).await {
            return answer_all(group, &e);
        }
        let mut known = match Known::read(&mut change, &group).await {
            Ok(known) => known,
            Err(e) => return answer_all(group, &store_error(e)),
        };
        let mut takings = limits::GroupTakings::default();
        // In arrival order, each request is checked against the rows read and the group's
        // earlier requests; only then is everything accepted written, one statement per table.
        let mut checked = Vec::with_capacity(group.len());
        for waiting in &group {
            match check_one(&mut change, &mut known, &mut takings, &waiting.creation).await {
                Ok(accepted) => checked.push(Ok(accepted)),
                Err(Step::Refused(e)) => checked.push(Err(e)),
                Err(Step::Broken(e)) => return answer_all(group, &e),
            }
        }
        let outcomes = match write_accepted(&mut change, &group, checked).await {
            Ok(outcomes) => outcomes,
            Err(e) => return answer_all(group, &e),
        };
        let dialect = change.dialect();
        let receipt = match change.commit().await {
            Ok(receipt) => receipt,
            Err(e) => return answer_all(group, &store_error(e)),
        };
        app.doorbell.ring(receipt);
        app.metrics.creation_groups.inc();
        app.metrics.creations_grouped.inc_by(group.len() as u64);
        let mut stored = Vec::new();
        for (waiting, outcome) in group.into_iter().zip(outcomes) {
            let answer = outcome.map(|w| {
                stored.extend(w.rules);
                accepted(&w.uuid, &w.job_uuid)
            });
            // A client gone meanwhile has its rule written and no answer.
            let _ = waiting.reply.send(answer);
        }
        if dialect == Dialect::Postgres && !stored.is_empty() {
            // The rendered objects, after the commit and the answers, outside the network's
            // lock: until then a listing renders the rules themselves.
            let db = app.db.clone();
            tokio::spawn(async move {
                for id in stored {
                    if let Err(e) = store::rules::store_json(db.pool(), dialect, id).await {
                        tracing::warn!(rule = %id, error = %chain(&e), "storing a rule's rendered object failed");
                    }
                }
            });
        }
    }
}

/// Answers every request of a group that could not be written with the same error.
fn answer_all(group: Vec<Waiting>, e: &ApiError) {
    for waiting in group {
        let _ = waiting.reply.send(Err(e.clone()));
    }
}

/// What one request wrote.
struct Written {
    uuid: String,
    job_uuid: String,
    rules: Vec<RuleId>,
}

/// Why one request was not written.
enum Step {
    /// Its own answer (a conflict, a limit); nothing of it was written and the group goes on.
    Refused(ApiError),
    /// The transaction cannot go on: the whole group gets this answer.
    Broken(ApiError),
}

/// A refusal, unless it is the server's own failure (530), which ends the group.
fn refused(e: ApiError) -> Step {
    if e.code == ApiErrorCode::InternalError {
        Step::Broken(e)
    } else {
        Step::Refused(e)
    }
}

/// The live rules the group's requests could conflict with, read once per group (after the
/// network's lock, so nothing else adds to them meanwhile), with each accepted request's rules
/// added as it is written: what the reads of each request alone would find.
struct Known {
    /// The rules on the public IPs of the group's requests, at the ports they ask for.
    on_ips: Vec<store::rules::Neighbour>,
    /// The network's egress rules, when a request of the group is one.
    egress: Vec<store::rules::Neighbour>,
    /// The group's public IPs: address, and whether each has a static NAT (enabled or being
    /// enabled).
    ips: std::collections::BTreeMap<IpId, (String, bool)>,
    /// The secondary addresses the group's rules send to that their VMs still have (read
    /// only when a rule of the group sends to one).
    secondary: std::collections::BTreeSet<(VmId, Ipv4Addr)>,
}

impl Known {
    async fn read(change: &mut ChangeTx, group: &[Waiting]) -> Result<Known, store::StoreError> {
        let mut wanted = Vec::new();
        let mut egress = false;
        for w in group {
            match Known::wants(&w.creation.rule) {
                Wants::Egress => egress = true,
                Wants::Ip(ip, ports) => wanted.push((ip, ports)),
                Wants::Nothing => {}
            }
        }
        let on_ips = store::rules::ips_neighbours(change.conn(), &wanted).await?;
        let ips: Vec<IpId> = wanted.iter().map(|(ip, _)| *ip).collect();
        let ips = store::static_nat::among(change.conn(), &ips).await?;
        let pairs: Vec<(VmId, Ipv4Addr)> =
            group.iter().filter_map(|w| w.creation.secondary).collect();
        let secondary = if pairs.is_empty() {
            std::collections::BTreeSet::new()
        } else {
            store::secondary_ips::held(change.conn(), &pairs).await?
        };
        let egress = match group.first() {
            Some(w) if egress => {
                store::rules::egress_neighbours_of(change.conn(), w.creation.rule.network_id)
                    .await?
            }
            _ => Vec::new(),
        };
        Ok(Known {
            on_ips,
            egress,
            ips,
            secondary,
        })
    }

    fn wants(rule: &NewRule) -> Wants {
        match (rule.traffic, rule.ip_id) {
            (Some(Traffic::Egress), _) => Wants::Egress,
            (_, Some(ip)) => Wants::Ip(ip, rule.ports),
            _ => Wants::Nothing,
        }
    }

    /// The rules `rule` could conflict with.
    fn neighbours(&self, rule: &NewRule) -> Vec<Candidate> {
        match Known::wants(rule) {
            Wants::Egress => self.egress.iter().map(|n| n.candidate.clone()).collect(),
            Wants::Ip(ip, ports) => self
                .on_ips
                .iter()
                .filter(|n| n.meets(ip, ports))
                .map(|n| n.candidate.clone())
                .collect(),
            Wants::Nothing => Vec::new(),
        }
    }

    /// A rule the group has written (all of the group's rules are on its network).
    fn add(&mut self, rule: &NewRule) {
        let n = store::rules::Neighbour::of_new(rule);
        if rule.purpose == Purpose::Firewall && rule.traffic == Some(Traffic::Egress) {
            self.egress.push(n.clone());
        }
        if rule.ip_id.is_some() {
            self.on_ips.push(n);
        }
    }
}

/// What a request's conflict checks read.
enum Wants {
    Egress,
    Ip(IpId, Option<(i64, i64)>),
    Nothing,
}

/// A request that passed its checks: what the group writes for it.
struct Accepted {
    /// The firewall rule it opens, unless an identical one exists.
    opened: Option<NewRule>,
}

/// Checks one request against the rows the group read and the group's earlier requests
/// (conflicts, then its take of the limits), and counts it as written for the requests after
/// it. Nothing is written yet.
async fn check_one(
    change: &mut ChangeTx,
    known: &mut Known,
    takings: &mut limits::GroupTakings,
    c: &Creation,
) -> Result<Accepted, Step> {
    let rule = &c.rule;
    if let Some((vm, ip)) = c.secondary {
        if !known.secondary.contains(&(vm, ip)) {
            return Err(refused(crate::cmd::infra::secondary_gone(ip)));
        }
    }
    if let Some((address, nat)) = rule.ip_id.and_then(|ip| known.ips.get(&ip)) {
        checks::static_nat_fits(rule.purpose, address, *nat).map_err(refused)?;
    }
    let existing = known.neighbours(rule);
    checks::conflicts(&rule.candidate(), &existing).map_err(refused)?;
    // openfirewall: an identical firewall rule is reused, another one is checked as a rule.
    let opened = if c.open_firewall {
        let fw = NewRule {
            uuid: uuid::Uuid::new_v4().to_string(),
            purpose: Purpose::Firewall,
            traffic: Some(Traffic::Ingress),
            protocol: rule.protocol.clone(),
            icmp: None,
            sources: vec![Ipv4Net::default()],
            dests: Vec::new(),
            related_id: None,
            vm_id: None,
            vm_ip: None,
            private: None,
            name: None,
            description: None,
            algorithm: None,
            lb_protocol: None,
            ..rule.clone()
        };
        let identical = existing.iter().any(|e| {
            e.purpose == Purpose::Firewall
                && e.protocol == fw.protocol
                && e.ports == fw.ports
                && e.sources == fw.sources
        });
        if identical {
            None
        } else {
            checks::conflicts(&fw.candidate(), &existing).map_err(refused)?;
            Some(fw)
        }
    } else {
        None
    };
    let count = 1 + i64::from(opened.is_some());
    takings
        .take(change, rule.account_id, &[(Resource::NetworkRule, count)])
        .await
        .map_err(refused)?;
    known.add(rule);
    if let Some(fw) = &opened {
        known.add(fw);
    }
    Ok(Accepted { opened })
}

/// Writes the jobs, events and rules (and the firewall rules they open) of the accepted
/// requests, in arrival order, one statement per table (two for rules when some open the
/// firewall: an opened rule names its rule's id); returns each request's answer.
async fn write_accepted(
    change: &mut ChangeTx,
    group: &[Waiting],
    checked: Vec<Result<Accepted, ApiError>>,
) -> Result<Vec<Result<Written, ApiError>>, ApiError> {
    let mut accepted = Vec::new();
    let mut payloads = Vec::new();
    let mut descriptions = Vec::new();
    for (waiting, check) in group.iter().zip(&checked) {
        if let Ok(a) = check {
            let c = &waiting.creation;
            let mut payload = c.payload.clone();
            if let Outcome::Rule { id, object } = &payload.outcome {
                if id.get() == 0 {
                    payload.outcome = Outcome::Created {
                        uuid: c.rule.uuid.clone(),
                        object: object.clone(),
                    };
                }
            }
            payloads.push(payload);
            descriptions.push(format!("{} for rule {}", c.command, c.rule.uuid));
            accepted.push((c, a));
        }
    }
    let jobs = accepted
        .iter()
        .zip(payloads)
        .zip(&descriptions)
        .map(|(((c, _), payload), description)| {
            (
                &c.caller,
                NewJob {
                    command: c.command,
                    kind: Kind::Change,
                    network_id: Some(c.rule.network_id),
                    payload,
                    instance_type: Some("FirewallRule"),
                    instance_uuid: Some(c.rule.uuid.as_str()),
                },
                Scheduled {
                    event_type: event_type(c.command),
                    description: description.as_str(),
                    resource_uuid: Some(c.rule.uuid.as_str()),
                },
            )
        })
        .collect();
    let jobs = change.jobs(jobs).await.map_err(store_error)?;
    let rules: Vec<_> = accepted
        .iter()
        .zip(&jobs)
        .map(|((c, _), (job, _))| (&c.rule, Some(*job)))
        .collect();
    let ids = store::rules::insert_many(change.conn(), &rules)
        .await
        .map_err(store_error)?;
    let mut opened = Vec::new();
    let mut opened_by = Vec::new();
    for (i, ((_, a), (job, _))) in accepted.iter().zip(&jobs).enumerate() {
        if let Some(fw) = &a.opened {
            let mut fw = fw.clone();
            fw.related_id = Some(ids[i]);
            opened.push((fw, Some(*job)));
            opened_by.push(i);
        }
    }
    let opened_rows: Vec<_> = opened.iter().map(|(fw, job)| (fw, *job)).collect();
    let opened_ids = store::rules::insert_many(change.conn(), &opened_rows)
        .await
        .map_err(store_error)?;
    let mut written: Vec<Written> = accepted
        .iter()
        .zip(jobs)
        .zip(&ids)
        .map(|(((c, _), (_, job_uuid)), id)| Written {
            uuid: c.rule.uuid.clone(),
            job_uuid,
            rules: vec![*id],
        })
        .collect();
    for (i, id) in opened_by.into_iter().zip(opened_ids) {
        written[i].rules.push(id);
    }
    // The rendered objects: in the transaction on SQLite (one writer anyway); after the
    // commit on PostgreSQL (see `Writer::group`).
    let dialect = change.dialect();
    if dialect == Dialect::Sqlite {
        for id in written.iter().flat_map(|w| &w.rules) {
            store::rules::store_json(&mut **change.conn(), dialect, *id)
                .await
                .map_err(store_error)?;
        }
    }
    let mut written = written.into_iter();
    Ok(checked
        .into_iter()
        .map(|check| {
            check.and_then(|_| {
                written
                    .next()
                    .ok_or_else(|| internal("a group's written request is missing"))
            })
        })
        .collect())
}
