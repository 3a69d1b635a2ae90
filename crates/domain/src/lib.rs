//! The management server's pure core: what it knows and decides, without doing anything.
//!
//! It owns the typed ids ([`ids`]), the rows the server reasons about ([`model`]), the checks
//! a new rule must pass ([`checks`]), guest and public addressing ([`addressing`]), the
//! planning of a network's complete router config from its rows ([`plan`]), what a job is and
//! what it answers ([`job`]), and who is asking ([`actor`]).
//!
//! Everything here is a synchronous function of its inputs. This crate never uses tokio, SQL,
//! sockets, files, processes, the clock or randomness: times and new ids are parameters. The
//! `xtask` tidy tests enforce that.

pub mod actor;
pub mod addressing;
pub mod checks;
pub mod guest;
pub mod ids;
pub mod job;
pub mod limits;
pub mod model;
pub mod plan;

/// A stored or given spelling that names no known value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a known {what}")]
pub struct UnknownValue {
    /// What was being read (`rule state`, `job kind`…).
    pub what: &'static str,
    /// The spelling found.
    pub value: String,
}

impl UnknownValue {
    /// An unknown `what` spelled `value`.
    pub fn new(what: &'static str, value: &str) -> UnknownValue {
        UnknownValue {
            what,
            value: value.to_string(),
        }
    }
}
