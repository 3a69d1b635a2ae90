//! Typed ids: the database's integer keys, one type per table, so that a rule's id cannot be
//! passed where a network's is wanted.

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash,
            serde::Serialize, serde::Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(i64);

        impl $name {
            /// The database's integer.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl From<i64> for $name {
            fn from(id: i64) -> $name {
                $name(id)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id!(
    /// A rule (firewall, forward or balancer); also its id in router configs.
    RuleId
);
id!(
    /// A guest network.
    NetworkId
);
id!(
    /// An async job.
    JobId
);
id!(
    /// A network's virtual router.
    RouterId
);
id!(
    /// An account.
    AccountId
);
id!(
    /// A user.
    UserId
);
id!(
    /// A domain (of accounts).
    DomainId
);
id!(
    /// A guest VM.
    VmId
);
id!(
    /// A public IP address.
    IpId
);
id!(
    /// A host running routers and VMs.
    HostId
);
id!(
    /// A balancer's member row.
    MemberId
);
id!(
    /// A balancer's stickiness or health-check policy.
    PolicyId
);
id!(
    /// A zone.
    ZoneId
);
id!(
    /// A public IP range.
    VlanRangeId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_its_integer_on_the_wire_and_in_text() {
        let id = RuleId::from(42);
        assert_eq!(id.get(), 42);
        assert_eq!(id.to_string(), "42");
        assert_eq!(serde_json::to_string(&id).unwrap(), "42");
        assert_eq!(
            serde_json::from_str::<RuleId>("7").unwrap(),
            RuleId::from(7)
        );
    }
}
