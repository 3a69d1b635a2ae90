//! How a rule command writes: a new rule with its job and the firewall rule it opens, a
//! rule's revocation, and a change of what a rule shows that no router holds.

use api_types::error::ApiError;
use api_types::params::Params;
use ipnet::Ipv4Net;
use serde_json::Value;

use super::super::limits::{self, Resource};
use super::super::{accepted, queued};
use super::event_type;
use crate::app::{chain, store_error, ApiResult, App};
use domain::actor::Caller;
use domain::checks;
use domain::job::{JobStatus, Kind, NewJob, Outcome, Payload};
use domain::model::{NewRule, Purpose, Rule, Traffic};
use store::db::Dialect;
use store::Scheduled;

/// Writes a new rule (and its job, and an opened firewall rule) in one transaction, after
/// checking conflicts under the network's lock; rings the runner.
pub(crate) async fn create_rule(
    app: &App,
    caller: &Caller,
    command: &str,
    rule: NewRule,
    open_firewall: bool,
    payload: Payload,
) -> ApiResult<Value> {
    let uuid = rule.uuid.clone();
    let mut payload = payload;
    match &payload.outcome {
        Outcome::Rule { id, object } if id.get() == 0 => {
            payload.outcome = Outcome::Created {
                uuid: uuid.clone(),
                object: object.clone(),
            };
        }
        _ => {}
    }
    let network = rule.network_id;
    let mut change = app.db.change(Some(network)).await.map_err(store_error)?;
    // The job and its event first: the network's lock is held only for the conflict check,
    // the rule's rows and the commit.
    let description = format!("{command} for rule {uuid}");
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command,
                kind: Kind::Change,
                network_id: Some(network),
                payload,
                instance_type: Some("FirewallRule"),
                instance_uuid: Some(&uuid),
            },
            Some(Scheduled {
                event_type: event_type(command),
                description: &description,
                resource_uuid: Some(&uuid),
            }),
        )
        .await
        .map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    let existing = match (rule.traffic, rule.ip_id) {
        (Some(Traffic::Egress), _) => store::rules::egress_neighbours(change.conn(), network)
            .await
            .map_err(store_error)?,
        (_, Some(ip)) => store::rules::ip_neighbours(change.conn(), ip, rule.ports)
            .await
            .map_err(store_error)?,
        _ => Vec::new(),
    };
    checks::conflicts(&rule.candidate(), &existing)?;
    // openfirewall: an identical firewall rule is reused, another one is checked as a rule.
    let opened = if open_firewall {
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
        let identical = existing.iter().any(|c| {
            c.purpose == Purpose::Firewall
                && c.protocol == fw.protocol
                && c.ports == fw.ports
                && c.sources == fw.sources
        });
        if identical {
            None
        } else {
            checks::conflicts(&fw.candidate(), &existing)?;
            Some(fw)
        }
    } else {
        None
    };
    let rules = 1 + i64::from(opened.is_some());
    limits::take(
        &mut change,
        rule.account_id,
        &[(Resource::NetworkRule, rules)],
    )
    .await?;
    let mut written = vec![store::rules::insert(change.conn(), &rule, Some(job_id))
        .await
        .map_err(store_error)?];
    if let Some(mut fw) = opened {
        fw.related_id = Some(written[0]);
        written.push(
            store::rules::insert(change.conn(), &fw, Some(job_id))
                .await
                .map_err(store_error)?,
        );
    }
    // The rendered objects: in the transaction on SQLite (one writer anyway); after the
    // commit on PostgreSQL, outside the network's lock (until then a listing renders the
    // rule itself).
    let dialect = change.dialect();
    if dialect == Dialect::Sqlite {
        for id in &written {
            store::rules::store_json(&mut **change.conn(), dialect, *id)
                .await
                .map_err(store_error)?;
        }
    }
    let receipt = change.commit().await.map_err(store_error)?;
    if dialect == Dialect::Postgres {
        for id in &written {
            // The rule is accepted: a failure here only leaves the listing to render it.
            if let Err(e) = store::rules::store_json(app.db.pool(), dialect, *id).await {
                tracing::warn!(rule = %id, error = %chain(&e), "storing a rule's rendered object failed");
            }
        }
    }
    app.doorbell.ring(receipt);
    Ok(accepted(&uuid, &job_uuid))
}

/// Marks a rule (and the firewall rules it opened) Revoke, with a job that pushes the change.
pub(crate) async fn revoke(
    app: &App,
    caller: &Caller,
    command: &str,
    rule: &Rule,
    failure: &str,
) -> ApiResult<Value> {
    let network = rule.network_id;
    let mut change = app.db.change(Some(network)).await.map_err(store_error)?;
    change.lock_network().await.map_err(store_error)?;
    let description = format!("{command} for rule {}", rule.uuid);
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command,
                kind: Kind::Change,
                network_id: Some(network),
                payload: Payload::new(
                    Outcome::Success,
                    event_type(command),
                    format!("deleting rule {}", rule.uuid),
                    failure,
                ),
                instance_type: None,
                instance_uuid: None,
            },
            Some(Scheduled {
                event_type: event_type(command),
                description: &description,
                resource_uuid: Some(&rule.uuid),
            }),
        )
        .await
        .map_err(store_error)?;
    store::rules::revoke(change.conn(), rule.id, job_id)
        .await
        .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(queued(&job_uuid))
}

/// Refuses to rewrite a rule while a pending job still carries it (its creation, or an
/// earlier update): a row carries one job at a time, the one whose generation brings its
/// values to the router, and a second change would take the row from under that job.
///
/// # Errors
/// 431 naming the job, or 530 when the database fails.
pub(crate) async fn refuse_if_in_flight(
    tx: &mut store::rules::Tx<'_>,
    rule: &Rule,
) -> ApiResult<()> {
    let busy = store::rules::forwards::pending_job(tx, rule.id)
        .await
        .map_err(store_error)?;
    match busy {
        Some(job) => Err(ApiError::invalid_parameter(format!(
            "Unable to update the rule {}: job {job} is still applying an earlier change \
                 of it; try again when that job ends",
            rule.uuid
        ))),
        None => Ok(()),
    }
}

/// An update that touches no router state: rows change and the job is written already ended,
/// so no generation is made. The fields it writes (name, description, display flag) are not
/// part of any router config, so the rule keeps the job that last changed what the router
/// holds: marking it with this job would let the rule reach the router without the job that
/// brings it (a creation still pending), and a refused creation would then leave it behind.
pub(crate) async fn metadata_update(
    app: &App,
    caller: &Caller,
    p: &Params,
    command: &str,
    rule: &Rule,
    object: &str,
    name_desc: Option<(Option<&str>, Option<&str>)>,
) -> ApiResult<Value> {
    let mut change = app.db.change(None).await.map_err(store_error)?;
    let (name, description) = name_desc.unwrap_or((None, None));
    store::rules::set_metadata(
        change.conn(),
        rule.id,
        p.bool("fordisplay"),
        name,
        description,
    )
    .await
    .map_err(store_error)?;
    let (job_id, job_uuid) = change
        .job(
            caller,
            NewJob {
                command,
                kind: Kind::Change,
                network_id: None,
                payload: Payload::new(
                    Outcome::Rule {
                        id: rule.id,
                        object: object.into(),
                    },
                    event_type(command),
                    format!("updating rule {}", rule.uuid),
                    "Failed to update rule",
                ),
                instance_type: Some("FirewallRule"),
                instance_uuid: Some(&rule.uuid),
            },
            None,
        )
        .await
        .map_err(store_error)?;
    // Nothing for a router: the receipt names no network.
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    // Read back and end the job in place.
    let result = super::super::rule_object(app, rule.id, object).await?;
    let mut change = app.db.change(None).await.map_err(store_error)?;
    store::jobs::finish(change.conn(), job_id, JobStatus::Succeeded, 0, &result)
        .await
        .map_err(store_error)?;
    store::events::event(
        change.conn(),
        caller.account_id,
        caller.user_id,
        event_type(command),
        "INFO",
        "Completed",
        &format!("Successfully completed updating rule {}", rule.uuid),
        Some(&rule.uuid),
        Some(&job_uuid),
    )
    .await
    .map_err(store_error)?;
    let receipt = change.commit().await.map_err(store_error)?;
    app.doorbell.ring(receipt);
    Ok(queued(&job_uuid))
}
