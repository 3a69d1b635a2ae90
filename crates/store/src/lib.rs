//! The management server's database: the only crate that speaks SQL.
//!
//! It owns the connection and the dialect differences ([`db`]), the migrations ([`migrate`]),
//! the unit of work every write goes through ([`work`]), its errors ([`error`]), one builder
//! for listings' dynamic filters ([`filter`]), and the statements, organised by table or
//! aggregate ([`rules`], [`balancers`], [`jobs`], [`routers`], [`router_views`], [`vms`],
//! [`networks`], [`addresses`], [`ranges`], [`catalogue`], [`owners`], [`events`], [`hosts`],
//! [`accounts`], [`limits`], [`tokens`], [`seed`]), and a PostgreSQL server's databases
//! made fresh for a run ([`databases`]). It reads rows into the domain's types and
//! never decides anything:
//! checks and planning are [`domain`]'s.
//!
//! # How a handler writes
//!
//! A handler reads its parameters, checks what it can without the database, then opens one
//! change, makes its statements through this crate's functions, commits, and hands the
//! receipt to the runner's doorbell:
//!
//! ```ignore
//! let network = NetworkId::from(rule.network_id);
//! let mut change = app.db.change(Some(network)).await.map_err(store_error)?;
//! // The job and its scheduled event first, so that the network's lock is held only for
//! // the checks, the rows and the commit (`None`: a command that records no event).
//! let (job_id, job_uuid) = change
//!     .job(caller, new_job, Some(Scheduled { event_type, description, resource_uuid }))
//!     .await
//!     .map_err(store_error)?;
//! change.lock_network().await.map_err(store_error)?;
//! let existing = store::rules::ip_neighbours(change.conn(), ip, rule.ports)
//!     .await
//!     .map_err(store_error)?;
//! domain::checks::conflicts(&rule.candidate(), &existing)?;
//! store::rules::insert(change.conn(), &rule, Some(job_id))
//!     .await
//!     .map_err(store_error)?;
//! let receipt = change.commit().await.map_err(store_error)?;
//! app.doorbell.ring(&app, receipt);
//! ```
//!
//! `store_error` is the management server's one mapping of a [`StoreError`] to its API error.
//! Statements a handler still spells itself run on `change.conn()` until they move here, by
//! table or aggregate, as functions taking the transaction (`&mut Transaction<'_, Any>`) or,
//! for reads outside a change, the [`Db`]; a listing's conditions go through [`filter`].
//!
//! The change holds SQLite's write lock from before `BEGIN IMMEDIATE` to the commit or the
//! drop: nobody takes the lock by hand. A handler returning early with `?` drops the change,
//! which rolls back. The job runner's writes about a host's routers open theirs with
//! [`Db::fenced`], which fails with [`StoreError::Fenced`] once another server took the host.
//!
//! `cmd/firewall/write.rs`'s `create_rule` in the `mgmt` crate is the worked example.

pub mod accounts;
pub mod addresses;
pub mod balancers;
pub mod catalogue;
pub mod databases;
pub mod db;
pub mod error;
pub mod events;
pub mod filter;
pub mod hosts;
pub mod jobs;
pub mod limits;
pub mod lookups;
pub mod migrate;
pub mod networks;
pub mod owners;
pub mod ranges;
pub mod router_views;
pub mod routers;
mod rows;
pub mod rules;
pub mod runner_reads;
pub mod secondary_ips;
pub mod seed;
pub mod state;
pub mod static_nat;
pub mod tags;
pub mod tokens;
pub mod vms;
pub mod work;
pub mod zones;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use db::{Db, DbError, Dialect};
pub use error::StoreError;
pub use work::{ChangeTx, Receipt, Scheduled};
