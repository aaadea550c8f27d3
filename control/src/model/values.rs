//! The closed sets and checked values of the model: server types, protocols, statuses, the
//! TCP proxy mode, permission types and service names. Each parses the API's spelling
//! once (refusing anything else with the API's error code) and serializes as the API and
//! the store spell it.

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, Rejection};

/// What a port is: a cloud server's NIC or a load balancer's VIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerType {
    /// A load balancer's VIP.
    #[serde(rename = "LB")]
    Lb,
    /// A cloud server's NIC.
    #[serde(rename = "VM")]
    Vm,
}

impl ServerType {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lb => "LB",
            Self::Vm => "VM",
        }
    }

    /// Parse the API's spelling (`VIP` is the deprecated name of an LB VIP).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidServerType`].
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        match s {
            "VM" => Ok(Self::Vm),
            "LB" | "VIP" => Ok(Self::Lb),
            _ => Err(Rejection::new(
                ErrorCode::InvalidServerType,
                "Invalid serverType: VM or LB.",
            )),
        }
    }
}

/// Transport protocol of a port mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    /// TCP.
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
}

impl Protocol {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
        }
    }

    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }
}

/// An endpoint service's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ServiceStatus {
    /// Connectable.
    Available,
    /// Its backend port was deleted; a new backend of the same type resumes it.
    Suspended,
}

impl ServiceStatus {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Suspended => "suspended",
        }
    }
}

/// How a service's backend learns the client's address (stored and returned; the
/// dataplane does not act on it yet).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TcpProxy {
    /// Nothing is carried.
    #[default]
    Close,
    /// Both the TCP option and the Proxy Protocol.
    Open,
    /// Proxy Protocol in the TCP payload.
    ProxyOpen,
    /// The TOA TCP option.
    ToaOpen,
}

impl TcpProxy {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Close => "close",
            Self::Open => "open",
            Self::ProxyOpen => "proxy_open",
            Self::ToaOpen => "toa_open",
        }
    }

    /// Parse the API's spelling.
    ///
    /// # Errors
    /// [`ErrorCode::Parameter`].
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        match s {
            "close" => Ok(Self::Close),
            "open" => Ok(Self::Open),
            "proxy_open" => Ok(Self::ProxyOpen),
            "toa_open" => Ok(Self::ToaOpen),
            _ => Err(Rejection::param(
                "tcp_proxy must be close, toa_open, proxy_open or open",
            )),
        }
    }
}

/// A service's short name: 1 to 16 characters of `A-Z a-z 0-9 _ -`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceName(String);

impl ServiceName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ServiceName {
    type Error = Rejection;

    fn try_from(name: String) -> Result<Self, Rejection> {
        let ok = !name.is_empty()
            && name.len() <= 16
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(name))
        } else {
            Err(Rejection::new(
                ErrorCode::InvalidServiceName,
                "Invalid service name: 1 to 16 characters of A-Z a-z 0-9 _ -.",
            ))
        }
    }
}

impl From<ServiceName> for String {
    fn from(n: ServiceName) -> Self {
        n.0
    }
}

/// What a whitelist entry names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PermissionType {
    /// An account: `iam:domain::<id>`, or `*` for every account.
    #[default]
    DomainId,
    /// An organization path: `organizations:orgPath::<path>`.
    OrgPath,
}

impl PermissionType {
    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DomainId => "domainId",
            Self::OrgPath => "orgPath",
        }
    }

    /// Parse the API's spelling.
    ///
    /// # Errors
    /// [`ErrorCode::Parameter`].
    pub fn parse(s: &str) -> Result<Self, Rejection> {
        match s {
            "domainId" => Ok(Self::DomainId),
            "orgPath" => Ok(Self::OrgPath),
            _ => Err(Rejection::param(
                "permission_type must be domainId or orgPath",
            )),
        }
    }

    /// Check that `p` is a permission string of this type.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidPermission`].
    pub fn check(self, p: &str) -> Result<(), Rejection> {
        let ok = match self {
            Self::DomainId => {
                p == "*"
                    || p.strip_prefix("iam:domain::").is_some_and(|id| {
                        !id.is_empty()
                            && id.len() <= 64
                            && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'*')
                    })
            }
            Self::OrgPath => p
                .strip_prefix("organizations:orgPath::")
                .is_some_and(|path| {
                    !path.is_empty()
                        && path.len() <= 1024
                        && path
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"/*?-".contains(&b))
                }),
        };
        if ok {
            Ok(())
        } else {
            Err(Rejection::new(
                ErrorCode::InvalidPermission,
                format!("Invalid permission {p:?}."),
            ))
        }
    }
}

/// A status as the API shows it (the user guide's tables of service and endpoint
/// statuses): a service's or an endpoint's stored status, or `failed`, derived when a view
/// is made (see `model/health.rs`). The list filters take exactly these.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ApiStatus {
    /// Being created (a service; vpcep creates synchronously, so only a filter names it).
    Creating,
    /// A service that is connectable.
    Available,
    /// A service or an accepted endpoint that no dataplane carries (`error[]` says why).
    Failed,
    /// Being deleted (a filter only, as `creating`).
    Deleting,
    /// A service whose backend went away.
    Suspended,
    /// An endpoint waiting for the provider.
    PendingAcceptance,
    /// An endpoint that may carry traffic.
    Accepted,
    /// An endpoint the provider rejected.
    Rejected,
}

impl ApiStatus {
    /// Every status, in the guide's order.
    pub const ALL: [Self; 8] = [
        Self::Creating,
        Self::Available,
        Self::Failed,
        Self::Deleting,
        Self::Suspended,
        Self::PendingAcceptance,
        Self::Accepted,
        Self::Rejected,
    ];
    /// The statuses a service list may filter on.
    pub const SERVICE: [Self; 5] = [
        Self::Creating,
        Self::Available,
        Self::Failed,
        Self::Deleting,
        Self::Suspended,
    ];
    /// The statuses an endpoint (connection) list may filter on.
    pub const ENDPOINT: [Self; 4] = [
        Self::PendingAcceptance,
        Self::Accepted,
        Self::Rejected,
        Self::Failed,
    ];

    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Available => "available",
            Self::Failed => "failed",
            Self::Deleting => "deleting",
            Self::Suspended => "suspended",
            Self::PendingAcceptance => "pendingAcceptance",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        }
    }

    /// The status spelled `s`, if it is one.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl From<ServiceStatus> for ApiStatus {
    fn from(s: ServiceStatus) -> Self {
        match s {
            ServiceStatus::Available => Self::Available,
            ServiceStatus::Suspended => Self::Suspended,
        }
    }
}

impl From<ConnectionStatus> for ApiStatus {
    fn from(s: ConnectionStatus) -> Self {
        match s {
            ConnectionStatus::Accepted => Self::Accepted,
            ConnectionStatus::PendingAcceptance => Self::PendingAcceptance,
            ConnectionStatus::Rejected => Self::Rejected,
        }
    }
}

/// An endpoint's (connection's) status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConnectionStatus {
    /// Accepted: may carry traffic.
    Accepted,
    /// Waiting for the provider.
    PendingAcceptance,
    /// Rejected by the provider.
    Rejected,
}

impl ConnectionStatus {
    /// The API's spelling (that of its [`ApiStatus`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::PendingAcceptance => "pendingAcceptance",
            Self::Rejected => "rejected",
        }
    }
}

/// A service's interface-VLAN backend (`ip`): an IPv4 address or a domain name (at most 253
/// characters, labels of 1 to 63 letters, digits and inner `-`, separated by `.`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServiceIp(String);

impl ServiceIp {
    /// The address or name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ServiceIp {
    type Error = Rejection;

    fn try_from(s: String) -> Result<Self, Rejection> {
        if s.parse::<std::net::Ipv4Addr>().is_ok() {
            return Ok(Self(s));
        }
        let label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        // A name whose last label is all digits would read as a mistyped address.
        let numeric_tld = s
            .rsplit('.')
            .next()
            .is_some_and(|t| t.bytes().all(|b| b.is_ascii_digit()));
        if s.len() <= 253 && s.split('.').all(label) && !numeric_tld {
            Ok(Self(s))
        } else {
            Err(Rejection::param(format!(
                "ip: {s:?} is neither an IPv4 address nor a domain name"
            )))
        }
    }
}

impl From<ServiceIp> for String {
    fn from(n: ServiceIp) -> Self {
        n.0
    }
}

#[cfg(test)]
mod api_status_tests {
    use super::ApiStatus;

    #[test]
    fn every_status_reads_back_and_all_lists_each_once() {
        for (i, st) in ApiStatus::ALL.into_iter().enumerate() {
            // An exhaustive match: a new status must be added to ALL.
            let known = match st {
                ApiStatus::Creating
                | ApiStatus::Available
                | ApiStatus::Failed
                | ApiStatus::Deleting
                | ApiStatus::Suspended
                | ApiStatus::PendingAcceptance
                | ApiStatus::Accepted
                | ApiStatus::Rejected => true,
            };
            assert!(known);
            assert_eq!(ApiStatus::parse(st.as_str()), Some(st));
            assert_eq!(ApiStatus::ALL.iter().position(|x| *x == st), Some(i));
        }
        assert_eq!(ApiStatus::parse("Accepted"), None);
    }
}
