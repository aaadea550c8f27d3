//! The error codes of the VPCEP API (API.md section 8) and [`Rejection`], the domain's one
//! error: a code and a message for humans.
//!
//! The model, the commands and the registry reject with a [`Rejection`]; they never know
//! about HTTP. `api/error.rs` maps each [`ErrorCode`] to a status in one exhaustive match,
//! so a new code cannot silently become a 400.

use std::fmt;

/// Declares [`ErrorCode`] from one list, so the enum, [`ErrorCode::ALL`] and
/// [`ErrorCode::as_str`] cannot drift apart.
macro_rules! error_codes {
    ($($(#[$doc:meta])* $name:ident => $code:literal,)*) => {
        /// An error code of the API. Variants follow the order of API.md section 8 (by
        /// code), then the gateway's codes.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $name,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$name,)*];

            /// The code as the API spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$name => $code,)*
                }
            }
        }
    };
}

error_codes! {
    /// `EndPoint.0001`: system error; nothing was changed, retry.
    System => "EndPoint.0001",
    /// `EndPoint.0002`: a parameter is missing, of the wrong type or out of range.
    Parameter => "EndPoint.0002",
    /// `EndPoint.0004`: the credential has no permission for the path's project.
    NoPermission => "EndPoint.0004",
    /// `EndPoint.0005`: the requested resource does not exist (or is another tenant's).
    NotFound => "EndPoint.0005",
    /// `EndPoint.0006`: invalid `limit`.
    InvalidLimit => "EndPoint.0006",
    /// `EndPoint.0007`: invalid `action` (of the tag API).
    InvalidAction => "EndPoint.0007",
    /// `EndPoint.0010`: invalid `offset`.
    InvalidOffset => "EndPoint.0010",
    /// `EndPoint.0014`: invalid project id (`X-Project-Id` does not match the path).
    InvalidProjectId => "EndPoint.0014",
    /// `EndPoint.0016`: the number of batch operated resources exceeded the limit.
    BatchLimit => "EndPoint.0016",
    /// `EndPoint.0017`: invalid `sort_key`.
    InvalidSortKey => "EndPoint.0017",
    /// `EndPoint.0018`: invalid `sort_dir`.
    InvalidSortDir => "EndPoint.0018",
    /// `EndPoint.0019`: invalid status filter.
    InvalidStatus => "EndPoint.0019",
    /// `EndPoint.0020`: invalid VPC id (unknown, another tenant's, or still in use).
    InvalidVpcId => "EndPoint.0020",
    /// `EndPoint.0021`: invalid `marker_id`.
    InvalidMarkerId => "EndPoint.0021",
    /// `EndPoint.0022`: the number of requests exceeded the limit; try later (answered
    /// 429, the status the SDK retries, rather than the documented 400).
    Throttled => "EndPoint.0022",
    /// `EndPoint.0023`: invalid subnet id (unknown, wrong family, or still in use).
    InvalidSubnetId => "EndPoint.0023",
    /// `EndPoint.0024`: the request body is too large (vpcep's code for the body limit).
    BodyTooLarge => "EndPoint.0024",
    /// `EndPoint.0025`: the shared store (etcd) cannot be reached or did not answer in time
    /// (vpcep's code, answered 503); nothing was changed by this node, retry later. Reads
    /// go on from the node's last applied revision, and its dataplane keeps forwarding.
    StoreUnavailable => "EndPoint.0025",
    /// `EndPoint.1003`: invalid service name.
    InvalidServiceName => "EndPoint.1003",
    /// `Endpoint.1018` (lower-case p, as documented): quota exceeded.
    QuotaExceeded => "Endpoint.1018",
    /// `EndPoint.2003`: the endpoint service does not exist.
    ServiceNotFound => "EndPoint.2003",
    /// `EndPoint.2004`: the endpoint service is unavailable (its backend was deleted).
    ServiceUnavailable => "EndPoint.2004",
    /// `EndPoint.2006`: the requested endpoint does not exist.
    EndpointNotFound => "EndPoint.2006",
    /// `EndPoint.2012`: no permission to connect to the VPC endpoint service.
    NotWhitelisted => "EndPoint.2012",
    /// `EndPoint.2013`: the endpoint does not belong to the endpoint service.
    NotAConnection => "EndPoint.2013",
    /// `EndPoint.2027`: invalid connection action (`receive` or `reject`).
    InvalidConnectionAction => "EndPoint.2027",
    /// `EndPoint.2031`: only one endpoint is allowed.
    OneEndpointOnly => "EndPoint.2031",
    /// `EndPoint.2041`: invalid port IP address.
    InvalidPortIp => "EndPoint.2041",
    /// `EndPoint.2042`: the port IP is in use.
    PortIpInUse => "EndPoint.2042",
    /// `EndPoint.2043`: the port IP is not valid for the subnet (or the subnet is full).
    PortIpOutsideSubnet => "EndPoint.2043",
    /// `EndPoint.2044`: invalid whitelist entry.
    InvalidWhitelist => "EndPoint.2044",
    /// `EndPoint.2045`: the maximum number of whitelist records has been reached.
    WhitelistFull => "EndPoint.2045",
    /// `EndPoint.3002`: invalid permission.
    InvalidPermission => "EndPoint.3002",
    /// `EndPoint.3003`: invalid port id (unknown, wrong VPC, IPv6, or too many services).
    InvalidPortId => "EndPoint.3003",
    /// `EndPoint.3006`: the endpoint service is being used.
    ServiceInUse => "EndPoint.3006",
    /// `EndPoint.3021`: invalid server type.
    InvalidServerType => "EndPoint.3021",
    /// `EndPoint.3035`: invalid permission action (`add` or `remove`).
    InvalidPermissionAction => "EndPoint.3035",
    /// `EndPoint.3036`: invalid permissions (not a permission of this service).
    InvalidPermissions => "EndPoint.3036",
    /// `EndPoint.3043`: the service port is invalid.
    InvalidServicePort => "EndPoint.3043",
    /// `EndPoint.3044`: the ports conflict with each other or with another service's.
    PortsConflict => "EndPoint.3044",
    /// `EndPoint.3049`: the maximum number of whitelist records (permissions of one
    /// endpoint service, `[quotas] permission`) has been reached.
    PermissionsFull => "EndPoint.3049",
    /// `EndPoint.3066`: the tag cannot be empty.
    TagEmpty => "EndPoint.3066",
    /// `EndPoint.3067`: the tag key cannot be duplicated.
    TagKeyDuplicated => "EndPoint.3067",
    /// `EndPoint.3068`: tag keys and values should meet relevant requirements.
    TagInvalid => "EndPoint.3068",
    /// `EndPoint.3069`: the maximum number of tags has been reached.
    TooManyTags => "EndPoint.3069",
    /// `EndPoint.3070`: invalid resource type (the tag API takes `endpoint_service`, `endpoint`).
    InvalidResourceType => "EndPoint.3070",
    /// `EndPoint.3074`: the maximum of ports has been reached.
    TooManyPorts => "EndPoint.3074",
    /// `EndPoint.3075`: the protocol is invalid.
    InvalidProtocol => "EndPoint.3075",
    /// `APIGW.0101`: the API does not exist or has not been published.
    ApiNotFound => "APIGW.0101",
    /// `APIGW.0102`: the method is not allowed for this API.
    MethodNotAllowed => "APIGW.0102",
    /// `APIGW.0301`: incorrect IAM authentication information (signature, date, key).
    AuthFailed => "APIGW.0301",
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the rules refuse (or that failed and changed nothing): an API error code and a
/// message for humans.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {msg}")]
pub struct Rejection {
    /// The API's error code.
    pub code: ErrorCode,
    /// A message for humans.
    pub msg: String,
}

impl Rejection {
    /// A rejection with `code` and `msg`.
    pub fn new(code: ErrorCode, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
        }
    }

    /// [`ErrorCode::Parameter`]: a parameter is missing, of the wrong type or out of range.
    pub fn param(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::Parameter, msg)
    }

    /// [`ErrorCode::NotFound`]: no such resource (also what another tenant's looks like).
    pub fn not_found(what: &str) -> Self {
        Self::new(
            ErrorCode::NotFound,
            format!("The requested resource does not exist: {what}."),
        )
    }

    /// [`ErrorCode::StoreUnavailable`]: the store cannot be reached; nothing was changed.
    pub fn store_unavailable() -> Self {
        Self::new(
            ErrorCode::StoreUnavailable,
            "The store (etcd) is unreachable or did not answer in time; this node changed \
             nothing. Retry later.",
        )
    }

    /// [`ErrorCode::System`]: the store failed; nothing was changed.
    pub fn system(msg: impl Into<String>) -> Self {
        Self::new(ErrorCode::System, msg)
    }

    /// `field` was required but absent ([`ErrorCode::Parameter`]).
    pub fn missing(field: &str) -> Self {
        Self::param(format!("{field} is required"))
    }
}

/// `v`, or [`Rejection::missing`] naming `field`.
///
/// # Errors
/// [`ErrorCode::Parameter`] when `v` is `None`.
pub fn require<T>(v: Option<T>, field: &str) -> Result<T, Rejection> {
    v.ok_or_else(|| Rejection::missing(field))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn every_code_is_listed_once_and_spelled_as_documented() {
        let spelled: HashSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(spelled.len(), ErrorCode::ALL.len());
        for &c in ErrorCode::ALL {
            let s = c.as_str();
            assert!(
                s.starts_with("EndPoint.") || s == "Endpoint.1018" || s.starts_with("APIGW."),
                "{s}"
            );
        }
    }
}
