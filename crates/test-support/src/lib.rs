//! The process harness that guestnet's integration tests and its benchmark share: guestnet
//! processes with their logs ([`process::Proc`], the startup line of `guestnet serve`), a private
//! PostgreSQL cluster per test ([`pg::PgCluster`], made with `initdb` run as the `postgres`
//! user) and a management network of namespaces whose links a test can take down
//! ([`mgmtnet::MgmtNet`]).
//!
//! Every process goes through `sys::cmd`; everything made is removed on drop, also when the
//! caller panics.

pub mod mgmtnet;
pub mod pg;
pub mod process;
