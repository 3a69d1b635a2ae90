//! The parameters the rule-creating commands share, parsed at the edge into typed values: a
//! rule's public IP, its protocol, its ports or ICMP match. Each check answers with
//! CloudStack's error text.

use std::net::Ipv4Addr;

use api_types::error::ApiError;
use api_types::params::Params;
use domain::actor::Caller;
use domain::checks;
use domain::ids::{AccountId, IpId, NetworkId};
use domain::model::{IpRow, NetworkRow};

use super::super::{ip_param, network_by_id, required};
use crate::app::{ApiResult, App};

/// The public IP for a rule: it must be the caller's and associated with a network.
pub(crate) async fn rule_ip(
    app: &App,
    caller: &Caller,
    p: &Params,
    param: &str,
) -> ApiResult<(IpRow, NetworkRow)> {
    let ip = ip_param(app, caller, p, param).await?;
    if ip.state == "Releasing" || ip.state == "Free" {
        return Err(ApiError::invalid_parameter(format!(
            "Ip address id={} not ready for firewall rules yet",
            ip.uuid
        )));
    }
    let Some(network_id) = ip.network_id else {
        return Err(ApiError::invalid_parameter(format!(
            "Unable to create firewall rule; ip id={} is not associated with any network",
            ip.uuid
        )));
    };
    let net = network_by_id(app, network_id).await?;
    Ok((ip, net))
}

/// A rule's public IP, checked by [`rule_ip`], and what a rule on it needs of it and of its
/// network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RuleIp {
    /// The IP.
    pub ip: IpId,
    /// Its address.
    pub address: Ipv4Addr,
    /// Its network.
    pub network: NetworkId,
    /// Its network's uuid.
    pub network_uuid: String,
    /// Who owns a rule on it: the IP's account, or else its network's.
    pub account: AccountId,
}

impl RuleIp {
    /// The IP named by `param`, checked.
    ///
    /// # Errors
    /// As [`rule_ip`].
    pub(crate) async fn parse(
        app: &App,
        caller: &Caller,
        p: &Params,
        param: &str,
    ) -> ApiResult<RuleIp> {
        let (ip, net) = rule_ip(app, caller, p, param).await?;
        Ok(RuleIp {
            ip: ip.id,
            address: ip.address,
            network: net.id,
            network_uuid: net.uuid,
            account: ip.account_id.unwrap_or(net.account_id),
        })
    }
}

/// The protocols a rule can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMP.
    Icmp,
    /// Every protocol (egress rules only).
    All,
}

impl Protocol {
    /// As the API and the rules table spell it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::All => "all",
        }
    }

    /// The required `protocol` parameter, one of `allowed`.
    ///
    /// # Errors
    /// 431 as [`protocol_of`].
    pub(crate) fn parse(p: &Params, allowed: &[Protocol], zone: &str) -> ApiResult<Protocol> {
        let names: Vec<&str> = allowed.iter().map(|a| a.as_str()).collect();
        let proto = protocol_of(required(p, "protocol")?, &names, zone)?;
        allowed
            .iter()
            .copied()
            .find(|a| a.as_str() == proto)
            .ok_or_else(|| unsupported(&proto, &names, zone))
    }
}

fn unsupported(proto: &str, allowed: &[&str], zone: &str) -> ApiError {
    ApiError::invalid_parameter(format!(
        "Protocol {proto} is not supported in zone {zone} (supported: {})",
        allowed.join(", ")
    ))
}

/// A rule's protocol, trimmed and lowercased, if the rule kind allows it.
pub(crate) fn protocol_of(raw: &str, allowed: &[&str], zone: &str) -> ApiResult<String> {
    let proto = raw.trim().to_ascii_lowercase();
    if allowed.contains(&proto.as_str()) {
        Ok(proto)
    } else {
        Err(unsupported(&proto, allowed, zone))
    }
}

/// A checked port range: `1 <= start <= end <= 65535`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PortRange {
    /// First port.
    pub start: i64,
    /// Last port.
    pub end: i64,
}

impl PortRange {
    /// The range named by two parameters, checked as CloudStack checks it; `None` when
    /// neither is given.
    ///
    /// # Errors
    /// 431 as [`checks::port_range`].
    pub(crate) fn parse(p: &Params, start: &str, end: &str) -> ApiResult<Option<PortRange>> {
        Ok(checks::port_range(start, p.int(start), end, p.int(end))?.map(PortRange::from))
    }

    /// As the rules table and the domain's checks hold it.
    pub(crate) fn pair(self) -> (i64, i64) {
        (self.start, self.end)
    }
}

impl From<(i64, i64)> for PortRange {
    fn from((start, end): (i64, i64)) -> PortRange {
        PortRange { start, end }
    }
}

/// An ICMP match: type and code, each -1 (any) or 0-255.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Icmp {
    /// ICMP type.
    pub kind: i64,
    /// ICMP code.
    pub code: i64,
}

/// What a firewall rule matches beyond its protocol: ports, or an ICMP type and code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct L4Match {
    /// The port range; `None` means every port.
    pub ports: Option<PortRange>,
    /// The ICMP match, for ICMP rules.
    pub icmp: Option<Icmp>,
}

impl L4Match {
    /// The `startport`, `endport`, `icmptype` and `icmpcode` parameters of a rule matching
    /// `proto`.
    ///
    /// # Errors
    /// 431 as [`l4_of`].
    pub(crate) fn parse(p: &Params, proto: Protocol) -> ApiResult<L4Match> {
        let (ports, icmp) = l4_of(
            proto.as_str(),
            p.int("startport"),
            p.int("endport"),
            p.int("icmptype"),
            p.int("icmpcode"),
        )?;
        Ok(L4Match {
            ports: ports.map(PortRange::from),
            icmp: icmp.map(|(kind, code)| Icmp { kind, code }),
        })
    }

    /// The ports as the rules table holds them.
    pub(crate) fn ports(self) -> Option<(i64, i64)> {
        self.ports.map(PortRange::pair)
    }

    /// The ICMP match as the rules table holds it.
    pub(crate) fn icmp(self) -> Option<(i64, i64)> {
        self.icmp.map(|i| (i.kind, i.code))
    }
}

/// Port range and ICMP type/code of a firewall rule.
pub(crate) type L4 = (Option<(i64, i64)>, Option<(i64, i64)>);

/// Ports and ICMP match of a firewall rule, checked as CloudStack does (and as the router
/// needs: ports 1-65535, ICMP values -1 or 0-255).
pub(crate) fn l4_of(
    proto: &str,
    start: Option<i64>,
    end: Option<i64>,
    icmp_type: Option<i64>,
    icmp_code: Option<i64>,
) -> ApiResult<L4> {
    let has_icmp = icmp_type.is_some() || icmp_code.is_some();
    if proto == "icmp" {
        if start.is_some() || end.is_some() {
            return Err(ApiError::invalid_parameter(
                "Can't specify start/end port when protocol is ICMP",
            ));
        }
        return Ok((None, Some(checks::icmp(icmp_type, icmp_code)?)));
    }
    if has_icmp {
        return Err(ApiError::invalid_parameter(
            "Can specify icmpCode and icmpType for ICMP protocol only",
        ));
    }
    if proto == "all" && (start.is_some() || end.is_some()) {
        return Err(ApiError::invalid_parameter(
            "Can't specify start/end port when protocol is ALL",
        ));
    }
    Ok((
        checks::port_range("startport", start, "endport", end)?,
        None,
    ))
}

#[cfg(test)]
mod tests;
