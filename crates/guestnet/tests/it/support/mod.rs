//! Test infrastructure for tests that run management servers and agents as separate processes:
//! a private PostgreSQL cluster per test ([`pg::PgCluster`]) and a management network of
//! namespaces whose links a test can take down ([`mgmtnet::MgmtNet`]).

pub(crate) mod mgmtnet;
pub(crate) mod pg;
