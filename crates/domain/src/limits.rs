//! Resource limits' kinds and defaults, as CloudStack keeps them, and the domain tree they are
//! bounded by: how many user VMs, public IPs, networks and network rules an account may hold.
//!
//! Defaults are CloudStack's (`max.account.*` 20 and `max.domain.*` 40 for user VMs, public IPs
//! and networks); network rules are guestnet's own type (1000, `network_rule`: CloudStack has
//! no limit on rules), 1000 per account and 2000 per domain by default. -1 means no limit.

use crate::ids::{AccountId, DomainId};

/// A kind of resource an account holds and a limit bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// User VMs that are not being expunged (CloudStack's `user_vm`, 0).
    UserVm,
    /// Public IPs allocated to the account, source-NAT addresses included (`public_ip`, 1).
    PublicIp,
    /// Networks that are not being deleted (`network`, 6).
    Network,
    /// Firewall, egress, port-forwarding and load-balancing rules that are not being deleted,
    /// the firewall rules that forwards and balancers open included (guestnet's own type,
    /// `network_rule`, 1000).
    NetworkRule,
}

impl Resource {
    /// Every type guestnet limits, in the order lists show them.
    pub const ALL: [Resource; 4] = [
        Resource::UserVm,
        Resource::PublicIp,
        Resource::Network,
        Resource::NetworkRule,
    ];

    /// The type's number (`resourcetype`). 1000 is far above CloudStack's own numbers, which
    /// count up from 0 without gaps, so it cannot meet one of theirs.
    pub const fn number(self) -> i64 {
        match self {
            Resource::UserVm => 0,
            Resource::PublicIp => 1,
            Resource::Network => 6,
            Resource::NetworkRule => 1000,
        }
    }

    /// The type's name (`resourcetypename`).
    pub const fn name(self) -> &'static str {
        match self {
            Resource::UserVm => "user_vm",
            Resource::PublicIp => "public_ip",
            Resource::Network => "network",
            Resource::NetworkRule => "network_rule",
        }
    }

    /// The type with this number.
    pub fn from_number(n: i64) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.number() == n)
    }

    /// The type with this name.
    pub fn from_name(name: &str) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.name() == name)
    }

    /// The limit of an account that has none of its own (CloudStack's `max.account.*`).
    pub const fn account_default(self) -> i64 {
        match self {
            Resource::UserVm | Resource::PublicIp | Resource::Network => 20,
            Resource::NetworkRule => 1000,
        }
    }

    /// The limit of a domain (other than ROOT) for which neither it nor a domain above it
    /// has one (CloudStack's `max.domain.*`).
    pub const fn domain_default(self) -> i64 {
        match self {
            Resource::UserVm | Resource::PublicIp | Resource::Network => 40,
            Resource::NetworkRule => 2000,
        }
    }
}

/// Who a limit row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitOwner {
    /// An account.
    Account(AccountId),
    /// A domain.
    Domain(DomainId),
}

impl LimitOwner {
    /// The stored spelling of the owner's kind (`resource_limits.owner_kind`).
    pub const fn kind(self) -> &'static str {
        match self {
            LimitOwner::Account(_) => "account",
            LimitOwner::Domain(_) => "domain",
        }
    }

    /// The owner's id, as stored (`resource_limits.owner_id`).
    pub const fn id(self) -> i64 {
        match self {
            LimitOwner::Account(a) => a.get(),
            LimitOwner::Domain(d) => d.get(),
        }
    }
}

/// A domain, as limits and listings' domain filters see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    /// Internal id.
    pub id: DomainId,
    /// API id.
    pub uuid: String,
    /// Name.
    pub name: String,
    /// Path from ROOT, e.g. `ROOT/sales`.
    pub path: String,
    /// The domain above it; none for ROOT.
    pub parent: Option<DomainId>,
}

impl Domain {
    /// Whether this is ROOT (the only domain without a parent).
    pub fn is_root(&self) -> bool {
        self.parent.is_none()
    }
}

/// The domain tree is not a tree: a domain that is missing, or its own ancestor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// A domain named by an account or a parent does not exist.
    #[error("domain {0} is gone")]
    Gone(DomainId),
    /// Following the parents from a domain comes back to it.
    #[error("domain {0} is its own ancestor")]
    Cycle(DomainId),
}

/// The domain `id` among `domains`.
///
/// # Errors
/// [`TreeError::Gone`].
pub fn domain_by_id(domains: &[Domain], id: DomainId) -> Result<&Domain, TreeError> {
    domains
        .iter()
        .find(|d| d.id == id)
        .ok_or(TreeError::Gone(id))
}

/// The domains from `id` up to, but not including, ROOT (whose limits are always none).
///
/// # Errors
/// [`TreeError`].
pub fn chain(domains: &[Domain], id: DomainId) -> Result<Vec<&Domain>, TreeError> {
    let mut out: Vec<&Domain> = Vec::new();
    let mut next = Some(id);
    while let Some(id) = next {
        let d = domain_by_id(domains, id)?;
        if d.is_root() {
            break;
        }
        if out.iter().any(|o| o.id == d.id) {
            return Err(TreeError::Cycle(d.id));
        }
        out.push(d);
        next = d.parent;
    }
    Ok(out)
}

/// `d` and every domain below it.
pub fn subtree<'a>(domains: &'a [Domain], d: &Domain) -> Vec<&'a Domain> {
    let below = format!("{}/", d.path);
    domains
        .iter()
        .filter(|o| o.id == d.id || o.path.starts_with(&below))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(id: i64, path: &str, parent: Option<i64>) -> Domain {
        Domain {
            id: DomainId::from(id),
            uuid: format!("u{id}"),
            name: path.rsplit('/').next().unwrap_or(path).to_string(),
            path: path.to_string(),
            parent: parent.map(DomainId::from),
        }
    }

    #[test]
    fn chains_stop_below_root_and_subtrees_follow_paths() {
        let all = [
            domain(1, "ROOT", None),
            domain(2, "ROOT/a", Some(1)),
            domain(3, "ROOT/a/b", Some(2)),
            domain(4, "ROOT/ab", Some(1)),
        ];
        let ids = |v: Vec<&Domain>| v.iter().map(|d| d.id.get()).collect::<Vec<_>>();
        assert_eq!(ids(chain(&all, DomainId::from(3)).unwrap()), [3, 2]);
        assert!(chain(&all, DomainId::from(1)).unwrap().is_empty());
        assert_eq!(ids(subtree(&all, &all[1])), [2, 3]);
        assert_eq!(
            chain(&all, DomainId::from(9)).unwrap_err(),
            TreeError::Gone(DomainId::from(9))
        );
    }

    #[test]
    fn a_cycle_is_an_error() {
        let all = [domain(2, "ROOT/a", Some(3)), domain(3, "ROOT/b", Some(2))];
        assert!(matches!(
            chain(&all, DomainId::from(2)),
            Err(TreeError::Cycle(_))
        ));
    }

    #[test]
    fn types_round_trip_by_number_and_name() {
        for r in Resource::ALL {
            assert_eq!(Resource::from_number(r.number()), Some(r));
            assert_eq!(Resource::from_name(r.name()), Some(r));
        }
        assert_eq!(Resource::from_number(2), None);
    }
}
