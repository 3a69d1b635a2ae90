//! The management server: CloudStack's API for guest-network rules on a real database, with
//! jobs that finish only when the router enforces the change.
//!
//! Data flows one way: an API call checks and writes rows (and a job) in one transaction
//! ([`cmd`]); the network's job runner ([`runner`]) builds the network's complete router
//! config from those rows ([`plan`], pure) and has the agent of the router's host ([`hosts`])
//! apply it; only the router's answer moves rows to Active, removes revoked ones and ends the
//! jobs.

pub mod app;
pub mod bootstrap;
pub mod checks;
pub mod client;
pub mod cmd;
pub mod db;
pub mod hosts;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod model;
pub mod password;
pub mod plan;
pub mod resp;
pub mod runner;
pub mod serve;
pub mod store;
pub mod verify;

#[cfg(test)]
mod copy_tests;
#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod runner_tests;
#[cfg(test)]
mod tenancy_tests;
#[cfg(test)]
mod testkit;
