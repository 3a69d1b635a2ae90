//! The management server's database: the only crate that speaks SQL.
//!
//! It owns the connection and the dialect differences ([`db`]), the migrations ([`migrate`]),
//! the unit of work every write goes through ([`work`]), its errors ([`error`]), one builder
//! for listings' dynamic filters ([`filter`]), and the statements, organised by table or
//! aggregate ([`rules`], [`jobs`], [`routers`], [`vms`], [`networks`], [`addresses`],
//! [`events`], [`hosts`]). It reads rows into the domain's types and never decides anything:
//! checks and planning are [`domain`]'s.
//!
//! # How a handler writes
//!
//! A handler reads its parameters, checks what it can without the database, then opens one
//! change, makes its statements through this crate's functions, commits, and hands the
//! receipt to the runner's doorbell:
//!
//! ```ignore
//! let mut change = app.db.change(Some(network)).await?;
//! // The job and its scheduled event first, so that the network's lock is held only for
//! // the checks, the rows and the commit.
//! let (job_id, job_uuid) = change.job(caller, new_job, Some(scheduled)).await?;
//! change.lock_network().await?;
//! let existing = store::rules::ip_neighbours(change.conn(), ip, rule.ports).await?;
//! domain::checks::conflicts(&rule.candidate(), &existing)?;
//! store::rules::insert(change.conn(), &rule, Some(job_id)).await?;
//! let receipt = change.commit().await?;
//! app.doorbell.ring(&app, receipt);
//! ```
//!
//! The change holds SQLite's write lock from before `BEGIN IMMEDIATE` to the commit or the
//! drop: nobody takes the lock by hand. A handler returning early with `?` drops the change,
//! which rolls back. The job runner's writes about a host's routers open theirs with
//! [`db::Db::fenced`], which fails with [`error::StoreError::Fenced`] once another server took
//! the host.
//!
//! `cmd/firewall.rs`'s `create_rule` in the `mgmt` crate is the worked example.

pub mod addresses;
pub mod db;
pub mod error;
pub mod events;
pub mod filter;
pub mod hosts;
pub mod jobs;
pub mod migrate;
pub mod networks;
pub mod routers;
pub mod rules;
pub mod vms;
pub mod work;

#[cfg(test)]
mod testing;

pub use db::{Db, DbError, Dialect};
pub use error::StoreError;
pub use work::{ChangeTx, Receipt, Scheduled};
