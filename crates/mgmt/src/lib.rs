//! The management server: CloudStack's API for guest-network rules on a real database, with
//! jobs that finish only when the router enforces the change.
//!
//! Data flows one way: an API call checks and writes rows (and a job) in one change of the
//! [`store`] ([`cmd`]); the network's job runner ([`runner`]) builds the network's complete
//! router config from those rows ([`domain::plan`], pure) and has the agent of the router's
//! host ([`hosts`]) apply it; only the router's answer moves rows to Active, removes revoked
//! ones and ends the jobs.
//!
//! The rows, checks, planning and jobs' kinds live in the pure [`domain`] crate; every
//! statement is on its way into [`store`], the crate that alone is to speak SQL (handlers not
//! yet moved still hold theirs).

pub mod app;
pub mod bootstrap;
pub mod client;
pub mod cmd;
pub mod hosts;
pub mod http;
pub mod metrics;
pub mod password;
pub mod resp;
pub mod runner;
pub mod serve;
pub mod verify;

#[cfg(test)]
mod copy_tests;
#[cfg(test)]
mod golden_tests;
#[cfg(test)]
mod group_tests;
#[cfg(test)]
mod guest_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod runner_tests;
#[cfg(test)]
mod tenancy_tests;
#[cfg(test)]
mod testkit;
