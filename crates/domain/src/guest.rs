//! What a guest network is given besides its addresses: a VLAN from its zone's guest range, a
//! DNS domain, and a MAC address per VM NIC.

use std::collections::BTreeSet;
use std::fmt;
use std::net::Ipv4Addr;

pub use router_config::MacAddr;

/// The lowest VLAN id a guest network may have.
pub const VLAN_MIN: u16 = 1;
/// The highest VLAN id a guest network may have (4095 is reserved).
pub const VLAN_MAX: u16 = 4094;

/// CloudStack's `guest.domain.suffix` default, the end of a network's default DNS domain.
pub const GUEST_DOMAIN_SUFFIX: &str = "cloud.internal";

/// A zone's guest VLANs: sorted, non-overlapping inclusive ranges, written `100-199,300-349`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VlanRanges(Vec<(u16, u16)>);

/// Why a text is not a set of VLAN ranges.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VlanRangeError {
    /// Nothing given.
    #[error("no VLAN range given (write e.g. 100-199 or 100-199,300-349)")]
    Empty,
    /// A part is not `N` or `N-M` with numbers.
    #[error("{0:?} is not a VLAN range (write N-M, e.g. 100-199)")]
    Malformed(String),
    /// A VLAN id outside 1–4094.
    #[error("VLAN {0} is outside 1-4094")]
    OutOfBounds(u32),
    /// A range whose end comes before its start.
    #[error("VLAN range {0}-{1} ends before it starts")]
    Backwards(u16, u16),
    /// Two ranges share VLANs.
    #[error("VLAN ranges {0}-{1} and {2}-{3} overlap")]
    Overlap(u16, u16, u16, u16),
}

impl VlanRanges {
    /// Parses `100-199,300-349` (a single `N` is the range `N-N`; spaces around parts are
    /// ignored). Every id must be in 1–4094 and the ranges must not overlap.
    ///
    /// # Errors
    /// [`VlanRangeError`] naming the first problem.
    pub fn parse(text: &str) -> Result<VlanRanges, VlanRangeError> {
        let parts: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        if parts.is_empty() {
            return Err(VlanRangeError::Empty);
        }
        let id = |s: &str, part: &str| -> Result<u16, VlanRangeError> {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(VlanRangeError::Malformed(part.to_string()));
            }
            let n: u32 = s
                .parse()
                .map_err(|_| VlanRangeError::OutOfBounds(u32::MAX))?;
            u16::try_from(n)
                .ok()
                .filter(|v| (VLAN_MIN..=VLAN_MAX).contains(v))
                .ok_or(VlanRangeError::OutOfBounds(n))
        };
        let mut ranges = Vec::with_capacity(parts.len());
        for part in parts {
            let (start, end) = match part.split_once('-') {
                Some((a, b)) => (id(a, part)?, id(b, part)?),
                None => {
                    let v = id(part, part)?;
                    (v, v)
                }
            };
            if end < start {
                return Err(VlanRangeError::Backwards(start, end));
            }
            ranges.push((start, end));
        }
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            let ((a, b), (c, d)) = (w[0], w[1]);
            if c <= b {
                return Err(VlanRangeError::Overlap(a, b, c, d));
            }
        }
        Ok(VlanRanges(ranges))
    }

    /// The ranges, sorted.
    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.0
    }

    /// Whether `vlan` is in one of the ranges.
    pub fn contains(&self, vlan: u16) -> bool {
        self.0.iter().any(|&(a, b)| (a..=b).contains(&vlan))
    }

    /// How many VLANs the ranges hold.
    pub fn len(&self) -> usize {
        self.0.iter().map(|&(a, b)| usize::from(b - a) + 1).sum()
    }

    /// Whether the ranges hold no VLAN.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The lowest VLAN of the ranges that `used` does not hold.
    pub fn lowest_free(&self, used: &BTreeSet<u16>) -> Option<u16> {
        self.0
            .iter()
            .flat_map(|&(a, b)| a..=b)
            .find(|v| !used.contains(v))
    }
}

impl fmt::Display for VlanRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(a, b)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

/// A network's VLAN as CloudStack's `broadcasturi` and `isolationuri` write it.
pub fn vlan_uri(vlan: u16) -> String {
    format!("vlan://{vlan}")
}

/// The DNS domain of a network created without `networkdomain`, as CloudStack makes it: `cs`,
/// the owning account's id in hex, and the guest domain suffix (`cs2cloud.internal`).
pub fn default_network_domain(account_id: i64) -> String {
    format!("cs{account_id:x}{GUEST_DOMAIN_SUFFIX}")
}

/// Why a text is not a network domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "Invalid network domain {0:?}: at most 190 characters of dot-separated labels, each 1 to 63 \
     letters, digits and hyphens, starting with a letter and not ending with a hyphen"
)]
pub struct BadNetworkDomain(pub String);

/// Checks a network domain as CloudStack does: labels of 1–63 characters (letters, digits,
/// hyphens; a letter first, no hyphen last), 190 characters at most.
///
/// # Errors
/// [`BadNetworkDomain`].
pub fn check_network_domain(domain: &str) -> Result<(), BadNetworkDomain> {
    let bad = || BadNetworkDomain(domain.to_string());
    if domain.is_empty() || domain.len() > 190 {
        return Err(bad());
    }
    for label in domain.split('.') {
        let ok = (1..=63).contains(&label.len())
            && label.as_bytes()[0].is_ascii_alphabetic()
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(bad());
        }
    }
    Ok(())
}

/// Why a text is not a MAC address a NIC may have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadNicMac {
    /// Not six hex bytes.
    #[error(
        "{0:?} is not a MAC address (six hex bytes separated by colons, e.g. 0a:1b:2c:3d:4e:5f)"
    )]
    Malformed(String),
    /// A group (multicast or broadcast) address, or all zeros.
    #[error("{0} is not a unicast MAC address")]
    NotUnicast(MacAddr),
}

/// Parses a NIC's MAC address: six hex bytes, unicast, not all zeros.
///
/// # Errors
/// [`BadNicMac`].
pub fn parse_nic_mac(text: &str) -> Result<MacAddr, BadNicMac> {
    let text = text.trim();
    let malformed = || BadNicMac::Malformed(text.to_string());
    if !text
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'-')
    {
        return Err(malformed());
    }
    let mac: MacAddr = text.parse().map_err(|_| malformed())?;
    if !mac.is_unicast() {
        return Err(BadNicMac::NotUnicast(mac));
    }
    Ok(mac)
}

/// A generated NIC MAC in CloudStack's style: locally administered `02:00:` and four bytes
/// the caller drew at random.
pub fn generated_mac(random: [u8; 4]) -> MacAddr {
    let [a, b, c, d] = random;
    MacAddr([0x02, 0x00, a, b, c, d])
}

/// The MAC a VM made before MACs were stored shows: `02:00:` and its guest address's bytes.
pub fn legacy_mac(ip: Ipv4Addr) -> MacAddr {
    let [a, b, c, d] = ip.octets();
    MacAddr([0x02, 0x00, a, b, c, d])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_sort_and_print() {
        let r = VlanRanges::parse("300-349, 100-199").unwrap();
        assert_eq!(r.ranges(), &[(100, 199), (300, 349)]);
        assert_eq!(r.to_string(), "100-199,300-349");
        assert_eq!(r.len(), 150);
        assert!(r.contains(100) && r.contains(349) && !r.contains(200));
        assert_eq!(VlanRanges::parse("7").unwrap().to_string(), "7");
        assert_eq!(VlanRanges::parse("1-4094").unwrap().ranges(), &[(1, 4094)]);
    }

    #[test]
    fn bad_ranges_are_named() {
        assert_eq!(VlanRanges::parse(""), Err(VlanRangeError::Empty));
        assert_eq!(VlanRanges::parse(" , "), Err(VlanRangeError::Empty));
        assert_eq!(
            VlanRanges::parse("0-10"),
            Err(VlanRangeError::OutOfBounds(0))
        );
        assert_eq!(
            VlanRanges::parse("100-4095"),
            Err(VlanRangeError::OutOfBounds(4095))
        );
        assert_eq!(
            VlanRanges::parse("200-100"),
            Err(VlanRangeError::Backwards(200, 100))
        );
        assert_eq!(
            VlanRanges::parse("100-199,150-160"),
            Err(VlanRangeError::Overlap(100, 199, 150, 160))
        );
        assert_eq!(
            VlanRanges::parse("100-199,199"),
            Err(VlanRangeError::Overlap(100, 199, 199, 199))
        );
        for bad in ["a-b", "1-2-3", "-5", "5-", "+5", "1.5"] {
            assert!(
                matches!(VlanRanges::parse(bad), Err(VlanRangeError::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            VlanRanges::parse("99999999999999999999"),
            Err(VlanRangeError::OutOfBounds(_))
        ));
    }

    #[test]
    fn lowest_free_skips_used_and_crosses_ranges() {
        let r = VlanRanges::parse("100-101,300-301").unwrap();
        let mut used = BTreeSet::new();
        assert_eq!(r.lowest_free(&used), Some(100));
        used.extend([100, 101]);
        assert_eq!(r.lowest_free(&used), Some(300));
        used.insert(300);
        assert_eq!(r.lowest_free(&used), Some(301));
        used.insert(301);
        assert_eq!(r.lowest_free(&used), None);
        // A VLAN used outside the range (after a shrink refused nothing) is no hindrance.
        used.insert(5);
        assert_eq!(r.lowest_free(&used), None);
    }

    #[test]
    fn network_domains() {
        assert_eq!(default_network_domain(2), "cs2cloud.internal");
        assert_eq!(default_network_domain(26), "cs1acloud.internal");
        for good in ["cloud.internal", "a", "my-net.example.org", "x1.y2"] {
            assert!(check_network_domain(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "-a",
            "a-",
            "1abc",
            "a_b",
            &"a".repeat(64),
            &format!("{}.b", "a".repeat(190)),
        ] {
            assert!(check_network_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nic_macs() {
        assert_eq!(
            parse_nic_mac("02:00:AB:01:02:03").unwrap().to_string(),
            "02:00:ab:01:02:03"
        );
        assert!(matches!(
            parse_nic_mac("02:00:ab:01:02"),
            Err(BadNicMac::Malformed(_))
        ));
        assert!(matches!(
            parse_nic_mac("zz:00:ab:01:02:03"),
            Err(BadNicMac::Malformed(_))
        ));
        assert!(matches!(
            parse_nic_mac("+2:00:ab:01:02:03"),
            Err(BadNicMac::Malformed(_))
        ));
        assert!(matches!(
            parse_nic_mac("01:00:5e:00:00:01"),
            Err(BadNicMac::NotUnicast(_))
        ));
        assert!(matches!(
            parse_nic_mac("ff:ff:ff:ff:ff:ff"),
            Err(BadNicMac::NotUnicast(_))
        ));
        assert!(matches!(
            parse_nic_mac("00:00:00:00:00:00"),
            Err(BadNicMac::NotUnicast(_))
        ));
        let g = generated_mac([1, 2, 3, 4]);
        assert_eq!(g.to_string(), "02:00:01:02:03:04");
        assert!(g.is_unicast());
        assert_eq!(
            legacy_mac(Ipv4Addr::new(10, 1, 1, 2)).to_string(),
            "02:00:0a:01:01:02"
        );
    }
}
