//! How a rule command writes: a new rule with its job and the firewall rule it opens, a
//! rule's revocation, and a change of what a rule shows that no router holds.

use api_types::error::ApiError;
use api_types::params::Params;
use serde_json::Value;

use super::super::queued;
use super::event_type;
use crate::app::{store_error, ApiResult, App};
use domain::actor::Caller;
use domain::job::{JobStatus, Kind, NewJob, Outcome, Payload};
use domain::model::{NewRule, Rule};
use store::Scheduled;

/// Writes a new rule (and its job, and an opened firewall rule) after checking conflicts
/// under the network's lock, in a group with the creations waiting for the same lock
/// ([`super::group`]); rings the runner.
pub(crate) async fn create_rule(
    app: &App,
    caller: &Caller,
    command: &'static str,
    rule: NewRule,
    open_firewall: bool,
    payload: Payload,
) -> ApiResult<Value> {
    super::group::submit(
        app,
        super::group::Creation {
            caller: caller.clone(),
            command,
            rule,
            open_firewall,
            payload,
            secondary: None,
        },
    )
    .await
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
    change
        .finish_job(job_id, JobStatus::Succeeded, 0, &result)
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
