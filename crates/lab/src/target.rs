//! Naming a host of the lab on the command line: `outside`, `router:NAME` or `vm:NAME`.

use std::fmt;
use std::str::FromStr;

/// A host of the lab.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The outside host (the internet gateway and the internet's addresses).
    Outside,
    /// The router of that name.
    Router(String),
    /// The VM of that name.
    Vm(String),
}

/// A string that does not name a host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown target `{input}`: expected `outside`, `router:NAME` or `vm:NAME`")]
pub struct TargetParseError {
    /// What was given.
    pub input: String,
}

impl FromStr for Target {
    type Err = TargetParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TargetParseError {
            input: s.to_string(),
        };
        if s == "outside" {
            return Ok(Target::Outside);
        }
        match s.split_once(':') {
            Some(("router", name)) if !name.is_empty() => Ok(Target::Router(name.to_string())),
            Some(("vm", name)) if !name.is_empty() => Ok(Target::Vm(name.to_string())),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Outside => f.write_str("outside"),
            Target::Router(name) => write!(f, "router:{name}"),
            Target::Vm(name) => write!(f, "vm:{name}"),
        }
    }
}
