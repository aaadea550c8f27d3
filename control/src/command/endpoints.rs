//! Commands of the user side: new endpoints and changes to them.

use std::net::{IpAddr, Ipv4Addr};

use super::tags::DURATION_TAG;
use super::{
    check_policy, check_routetables, description, only_ipv4, parse_whitelist, port_ip,
    positive_duration, split_create_tags,
};
use crate::error::{ErrorCode, Rejection, require};
use crate::model::{ServiceId, SourceCidr, SubnetId, Tag, VpcId};
use crate::requests::{CreateEndpoint, Extend, UpdatePolicy, UpdateRoutetables, UpdateWhitelist};

/// Create an endpoint.
#[derive(Clone, Debug)]
pub struct NewEndpoint {
    /// The service.
    pub service_id: ServiceId,
    /// The user's VPC.
    pub vpc_id: VpcId,
    /// The user's subnet: required for an interface endpoint; for a gateway endpoint, the
    /// VPC's first IPv4 subnet with a free address by default.
    pub subnet_id: Option<SubnetId>,
    /// A chosen address; automatic when absent.
    pub ip: Option<Ipv4Addr>,
    /// Internal DNS name.
    pub enable_dns: bool,
    /// Source whitelist.
    pub whitelist: Vec<SourceCidr>,
    /// Enforce it.
    pub enable_whitelist: bool,
    /// Free text.
    pub description: String,
    /// Tags.
    pub tags: Vec<Tag>,
    /// Route tables (gateway endpoints only; recorded, see [`crate::registry::gateways`]).
    pub routetables: Vec<String>,
    /// Policy statements (stored).
    pub policy_statement: Vec<serde_json::Value>,
    /// Policy document (stored).
    pub policy_document: Option<serde_json::Value>,
    /// Seconds until it expires.
    pub lifetime: Option<i64>,
}

impl TryFrom<CreateEndpoint> for NewEndpoint {
    type Error = Rejection;

    fn try_from(b: CreateEndpoint) -> Result<Self, Rejection> {
        let service_id = require(b.endpoint_service_id, "endpoint_service_id")?.into();
        let vpc_id = require(b.vpc_id, "vpc_id")?.into();
        let subnet_id = b.subnet_id.map(Into::into);
        only_ipv4(b.ip_version.as_deref(), b.ipv6_address.is_some())?;
        let ip = match port_ip(b.port_ip)? {
            None => None,
            Some(IpAddr::V4(a)) => Some(a),
            Some(IpAddr::V6(a)) => {
                return Err(Rejection::new(
                    ErrorCode::InvalidPortIp,
                    format!("Invalid Port IP address {a}: endpoints are IPv4."),
                ));
            }
        };
        let routetables = b.routetables.unwrap_or_default();
        check_routetables(&routetables)?;
        check_policy(b.policy_statement.as_deref(), b.policy_document.as_ref())?;
        // The lifetime comes from the `duration` extension field or, for the official SDK,
        // from the duration tag; not from both.
        let (tags, tagged) = split_create_tags(b.tags.unwrap_or_default(), true)?;
        let lifetime = match (positive_duration(b.duration, "")?, tagged) {
            (Some(_), Some(_)) => {
                return Err(Rejection::param(format!(
                    "duration: give it as the duration field or the {DURATION_TAG} tag, not both"
                )));
            }
            (d, t) => d.or(t),
        };
        Ok(Self {
            service_id,
            vpc_id,
            subnet_id,
            ip,
            whitelist: parse_whitelist(&b.whitelist.unwrap_or_default())?,
            description: description(b.description)?,
            tags,
            lifetime,
            enable_dns: b.enable_dns.unwrap_or(false),
            enable_whitelist: b.enable_whitelist.unwrap_or(false),
            routetables,
            policy_statement: b.policy_statement.unwrap_or_default(),
            policy_document: b.policy_document,
        })
    }
}

/// Change an endpoint (owner side).
#[derive(Clone, Debug)]
pub enum EndpointChange {
    /// Replace the whitelist and/or switch its enforcement.
    Whitelist(Option<Vec<SourceCidr>>, Option<bool>),
    /// Replace the route tables.
    Routetables(Vec<String>),
    /// Replace policy statements and/or document.
    Policy(Option<Vec<serde_json::Value>>, Option<serde_json::Value>),
    /// Remove the policy.
    ClearPolicy,
    /// Extend the lifetime by this many seconds (added to what is left, or to now once
    /// expired), unfreezing; `None`: never expire.
    Lifetime(Option<i64>),
}

impl TryFrom<UpdateWhitelist> for EndpointChange {
    type Error = Rejection;

    fn try_from(b: UpdateWhitelist) -> Result<Self, Rejection> {
        let list = b.whitelist.as_deref().map(parse_whitelist).transpose()?;
        Ok(Self::Whitelist(list, b.enable_whitelist))
    }
}

impl TryFrom<UpdateRoutetables> for EndpointChange {
    type Error = Rejection;

    fn try_from(b: UpdateRoutetables) -> Result<Self, Rejection> {
        let list = require(b.routetables, "routetables")?;
        check_routetables(&list)?;
        Ok(Self::Routetables(list))
    }
}

impl TryFrom<UpdatePolicy> for EndpointChange {
    type Error = Rejection;

    fn try_from(b: UpdatePolicy) -> Result<Self, Rejection> {
        check_policy(b.policy_statement.as_deref(), b.policy_document.as_ref())?;
        Ok(Self::Policy(b.policy_statement, b.policy_document))
    }
}

impl TryFrom<Extend> for EndpointChange {
    type Error = Rejection;

    fn try_from(b: Extend) -> Result<Self, Rejection> {
        Ok(Self::Lifetime(positive_duration(b.duration, ", or null")?))
    }
}
