//! Validated commands: each wire body of `requests.rs` becomes one command through
//! `TryFrom`, which checks everything that needs no other resource (presence, ranges,
//! spellings, formats) and parses every value into its model type. After this point nothing
//! is re-parsed; the registry applies the rules that relate resources.
//!
//! The shape follows firecracker's `ParsedRequest` -> `VmmAction`: parse at the edge, act on
//! typed values inside. This module holds the checks shared by every resource; the
//! commands live by resource in [`inventory`], [`services`] (with connections and
//! whitelists) and [`endpoints`].

pub mod endpoints;
pub mod inventory;
pub mod services;
pub mod tag_query;
pub mod tags;

use std::collections::HashSet;
use std::net::IpAddr;

pub use self::endpoints::*;
pub use self::inventory::*;
pub use self::services::*;
pub use self::tag_query::*;
pub use self::tags::*;
use crate::error::{ErrorCode, Rejection, require};
use crate::model::{PortMapping, Protocol, SourceCidr, Tag};
use crate::requests::PortBody;

/// Most port mappings in one request (the API's limit).
pub const MAX_PORTS: usize = 200;
/// Most tags on a resource.
pub const MAX_TAGS: usize = 20;
/// Most entries in an endpoint's source whitelist.
pub const MAX_WHITELIST: usize = 20;
/// Most entries in one batch of permissions.
pub const MAX_BATCH: usize = 50;

/// Deepest nesting of a free-form JSON field (the policies): a scalar is depth 1,
/// `{"a":[1]}` depth 3. Far below serde_json's recursion limit of 128, so a stored record
/// (which nests the field a few levels deeper) always loads again.
pub const MAX_JSON_DEPTH: usize = 16;
/// Largest free-form JSON field, in bytes of compact JSON. In memory a `serde_json::Value`
/// costs about 16 times that.
pub const MAX_JSON_BYTES: usize = 16 * 1024;
/// Most policy statements on an endpoint.
pub const MAX_POLICY_STATEMENTS: usize = 20;
/// Most route tables on an endpoint.
pub const MAX_ROUTETABLES: usize = 20;
/// Longest route table id, in characters.
pub const MAX_ROUTETABLE_CHARS: usize = 64;

/// Check a free-form JSON field: at most [`MAX_JSON_DEPTH`] deep and [`MAX_JSON_BYTES`]
/// long.
///
/// # Errors
/// [`ErrorCode::Parameter`].
pub fn check_json(v: &serde_json::Value, field: &str) -> Result<(), Rejection> {
    use serde_json::Value;
    // Iterative, so a deep value costs no stack here.
    let mut stack = vec![(v, 1usize)];
    while let Some((v, depth)) = stack.pop() {
        if depth > MAX_JSON_DEPTH {
            return Err(Rejection::param(format!(
                "{field}: nested deeper than {MAX_JSON_DEPTH} levels"
            )));
        }
        match v {
            Value::Array(a) => stack.extend(a.iter().map(|x| (x, depth + 1))),
            Value::Object(o) => stack.extend(o.values().map(|x| (x, depth + 1))),
            _ => {}
        }
    }
    let len = serde_json::to_vec(v).map_or(usize::MAX, |b| b.len());
    if len > MAX_JSON_BYTES {
        return Err(Rejection::param(format!(
            "{field}: larger than {MAX_JSON_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Check policy statements and a policy document: at most [`MAX_POLICY_STATEMENTS`]
/// statements, each and the document within [`check_json`]'s bounds, and all of them
/// together within [`MAX_JSON_BYTES`].
///
/// # Errors
/// [`ErrorCode::Parameter`].
pub fn check_policy(
    statements: Option<&[serde_json::Value]>,
    document: Option<&serde_json::Value>,
) -> Result<(), Rejection> {
    let statements = statements.unwrap_or_default();
    if statements.len() > MAX_POLICY_STATEMENTS {
        return Err(Rejection::param(format!(
            "policy_statement: at most {MAX_POLICY_STATEMENTS} statements"
        )));
    }
    for st in statements {
        check_json(st, "policy_statement")?;
    }
    if let Some(d) = document {
        check_json(d, "policy_document")?;
    }
    let total = serde_json::to_vec(&(statements, document)).map_or(usize::MAX, |b| b.len());
    if total > MAX_JSON_BYTES {
        return Err(Rejection::param(format!(
            "policy: larger than {MAX_JSON_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Check route table ids: at most [`MAX_ROUTETABLES`], each 1 to [`MAX_ROUTETABLE_CHARS`]
/// characters, none twice.
///
/// # Errors
/// [`ErrorCode::Parameter`].
pub fn check_routetables(list: &[String]) -> Result<(), Rejection> {
    if list.len() > MAX_ROUTETABLES {
        return Err(Rejection::param(format!(
            "routetables: at most {MAX_ROUTETABLES} entries"
        )));
    }
    let mut seen = HashSet::new();
    for r in list {
        if r.is_empty() || r.chars().count() > MAX_ROUTETABLE_CHARS {
            return Err(Rejection::param(format!(
                "routetables: each id is 1 to {MAX_ROUTETABLE_CHARS} characters"
            )));
        }
        if !seen.insert(r) {
            return Err(Rejection::param(format!(
                "routetables: {r:?} appears twice"
            )));
        }
    }
    Ok(())
}

/// Check a free-text description: at most 128 characters, no `<` or `>`.
///
/// # Errors
/// [`ErrorCode::Parameter`].
pub fn check_description(d: &str) -> Result<(), Rejection> {
    if d.chars().count() > 128 || d.contains(['<', '>']) {
        return Err(Rejection::param(
            "description: at most 128 characters, without < or >",
        ));
    }
    Ok(())
}

fn description(d: Option<String>) -> Result<String, Rejection> {
    let d = d.unwrap_or_default();
    check_description(&d)?;
    Ok(d)
}

/// Check a resource's tags: at most [`MAX_TAGS`], keys non-empty and unique, keys and values
/// of the tag rules ([`tags::check_tag`]).
///
/// # Errors
/// EndPoint.3066 to 3069.
pub fn check_tags(list: &[Tag]) -> Result<(), Rejection> {
    check_unique(list)?;
    check_count(list)
}

fn port_number(v: Option<i64>, which: &str) -> Result<u16, Rejection> {
    let v = v.ok_or_else(|| {
        Rejection::new(
            ErrorCode::InvalidServicePort,
            format!("{which} is required"),
        )
    })?;
    u16::try_from(v).ok().filter(|p| *p >= 1).ok_or_else(|| {
        Rejection::new(
            ErrorCode::InvalidServicePort,
            format!("The service port is invalid: {which} {v} is not in 1..65535."),
        )
    })
}

/// Parse port mappings: 1 to [`MAX_PORTS`], ports in range, no client or server port twice
/// for one protocol.
///
/// # Errors
/// EndPoint.0002, 3043, 3044, 3074, 3075.
pub fn parse_ports(ports: &[PortBody]) -> Result<Vec<PortMapping>, Rejection> {
    if ports.is_empty() {
        return Err(Rejection::param("ports must hold at least one mapping"));
    }
    if ports.len() > MAX_PORTS {
        return Err(Rejection::new(
            ErrorCode::TooManyPorts,
            format!("The maximum of ports has been reached: at most {MAX_PORTS} per request."),
        ));
    }
    let mut out = Vec::with_capacity(ports.len());
    let mut clients = HashSet::new();
    let mut servers = HashSet::new();
    for p in ports {
        let protocol = match p.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => Protocol::Tcp,
            "UDP" => Protocol::Udp,
            other => {
                return Err(Rejection::new(
                    ErrorCode::InvalidProtocol,
                    format!("The protocol is invalid: {other:?} (TCP or UDP)."),
                ));
            }
        };
        let m = PortMapping {
            protocol,
            client_port: port_number(p.client_port, "client_port")?,
            server_port: port_number(p.server_port, "server_port")?,
        };
        if !clients.insert((protocol, m.client_port)) || !servers.insert((protocol, m.server_port))
        {
            return Err(Rejection::new(
                ErrorCode::PortsConflict,
                format!(
                    "The parameter ports conflicted: {} client port {} or server port {} appears twice.",
                    protocol.as_str(),
                    m.client_port,
                    m.server_port
                ),
            ));
        }
        out.push(m);
    }
    Ok(out)
}

/// Parse a source whitelist: at most [`MAX_WHITELIST`] IPv4 addresses or blocks.
///
/// # Errors
/// EndPoint.2044, 2045.
pub fn parse_whitelist(list: &[String]) -> Result<Vec<SourceCidr>, Rejection> {
    if list.len() > MAX_WHITELIST {
        return Err(Rejection::new(
            ErrorCode::WhitelistFull,
            "The maximum number of whitelist records has been reached.",
        ));
    }
    list.iter()
        .map(|s| {
            s.parse().map_err(|_| {
                Rejection::new(
                    ErrorCode::InvalidWhitelist,
                    format!("Invalid whitelist entry {s:?}: an IPv4 address or CIDR."),
                )
            })
        })
        .collect()
}

fn positive_duration(d: Option<i64>, what: &str) -> Result<Option<i64>, Rejection> {
    if d.is_some_and(|d| d <= 0) {
        return Err(Rejection::param(format!(
            "duration must be a positive number of seconds{what}"
        )));
    }
    Ok(d)
}

fn only_ipv4(version: Option<&str>, v6_field_set: bool) -> Result<(), Rejection> {
    if version.is_some_and(|v| v != "ipv4") || v6_field_set {
        return Err(Rejection::param("ip_version: only ipv4 is supported"));
    }
    Ok(())
}

fn batch<T>(list: Option<Vec<T>>, field: &str) -> Result<Vec<T>, Rejection> {
    let list = require(list, field)?;
    if list.len() > MAX_BATCH {
        return Err(Rejection::new(
            ErrorCode::BatchLimit,
            format!("The number of batch operated resources exceeded the limit ({MAX_BATCH})."),
        ));
    }
    Ok(list)
}

fn port_ip(s: Option<String>) -> Result<Option<IpAddr>, Rejection> {
    s.map(|s| {
        s.parse().map_err(|_| {
            Rejection::new(
                ErrorCode::InvalidPortIp,
                format!("Invalid Port IP address {s:?}."),
            )
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConnectionStatus, ServerType, TcpProxy};
    use crate::requests::{
        ConnectionAction, CreateEndpoint, CreateService, CreateSubnet, Extend, PermissionAction,
    };

    fn nested(depth: usize) -> serde_json::Value {
        let text = format!("{}1{}", "[".repeat(depth - 1), "]".repeat(depth - 1));
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn free_form_json_is_bounded_in_depth_size_and_count() {
        assert!(check_json(&nested(MAX_JSON_DEPTH), "f").is_ok());
        // The finding: a policy_document 126 deep was stored, and the record no longer loaded.
        for depth in [MAX_JSON_DEPTH + 1, 126] {
            let e = check_policy(None, Some(&nested(depth))).unwrap_err();
            assert_eq!(e.code, ErrorCode::Parameter, "{depth}");
        }
        let big = serde_json::Value::String("x".repeat(MAX_JSON_BYTES));
        assert!(check_policy(None, Some(&big)).is_err());
        let st = serde_json::json!({"Effect": "Allow", "Action": ["obs:*"]});
        let many = vec![st.clone(); MAX_POLICY_STATEMENTS + 1];
        assert!(check_policy(Some(&many[1..]), Some(&st)).is_ok());
        assert!(check_policy(Some(&many), None).is_err());
        let half = serde_json::Value::String("x".repeat(MAX_JSON_BYTES / 2));
        assert!(
            check_policy(Some(std::slice::from_ref(&half)), Some(&half)).is_err(),
            "together"
        );
        let rt = |n: usize| (0..n).map(|i| format!("rt-{i}")).collect::<Vec<_>>();
        assert!(check_routetables(&rt(MAX_ROUTETABLES)).is_ok());
        assert!(check_routetables(&rt(MAX_ROUTETABLES + 1)).is_err());
        assert!(check_routetables(&["a".into(), "a".into()]).is_err());
        assert!(check_routetables(&[String::new()]).is_err());
        assert!(check_routetables(&["r".repeat(MAX_ROUTETABLE_CHARS + 1)]).is_err());
    }

    #[test]
    fn ports_rules() {
        let p = |c: i64, s: i64, proto: &str| PortBody {
            client_port: Some(c),
            server_port: Some(s),
            protocol: Some(proto.into()),
        };
        let code = |r: Result<Vec<PortMapping>, Rejection>| r.unwrap_err().code;
        assert!(parse_ports(&[p(80, 8080, "TCP"), p(80, 8080, "UDP")]).is_ok());
        assert_eq!(code(parse_ports(&[])), ErrorCode::Parameter);
        assert_eq!(
            code(parse_ports(&[p(0, 1, "TCP")])),
            ErrorCode::InvalidServicePort
        );
        assert_eq!(
            code(parse_ports(&[p(1, 65536, "TCP")])),
            ErrorCode::InvalidServicePort
        );
        assert_eq!(
            code(parse_ports(&[p(1, 1, "ICMP")])),
            ErrorCode::InvalidProtocol
        );
        assert_eq!(
            code(parse_ports(&[p(1, 1, "TCP"), p(1, 2, "TCP")])),
            ErrorCode::PortsConflict
        );
        let many: Vec<_> = (1..=201).map(|i| p(i, i, "TCP")).collect();
        assert_eq!(code(parse_ports(&many)), ErrorCode::TooManyPorts);
        assert!(parse_ports(&many[..200]).is_ok());
        let default_tcp = PortBody {
            client_port: Some(1),
            server_port: Some(2),
            protocol: None,
        };
        assert_eq!(
            parse_ports(&[default_tcp]).unwrap()[0].protocol,
            Protocol::Tcp
        );
    }

    #[test]
    fn whitelists_descriptions_and_tags() {
        assert!(parse_whitelist(&["10.0.0.0/8".into(), "192.0.2.1".into()]).is_ok());
        assert_eq!(
            parse_whitelist(&["10.0.0.0/33".into()]).unwrap_err().code,
            ErrorCode::InvalidWhitelist
        );
        let big: Vec<String> = (0..21).map(|i| format!("192.0.2.{i}")).collect();
        assert_eq!(
            parse_whitelist(&big).unwrap_err().code,
            ErrorCode::WhitelistFull
        );
        assert!(check_description("<script>").is_err());
        assert!(check_description(&"x".repeat(128)).is_ok());
        assert!(check_description(&"x".repeat(129)).is_err());
        let tag = |k: &str| Tag {
            key: k.into(),
            value: String::new(),
        };
        assert_eq!(
            check_tags(&[tag("")]).unwrap_err().code,
            ErrorCode::TagEmpty
        );
        assert_eq!(
            check_tags(&[tag("a"), tag("a")]).unwrap_err().code,
            ErrorCode::TagKeyDuplicated
        );
        assert_eq!(
            check_tags(&[tag(&"k".repeat(129))]).unwrap_err().code,
            ErrorCode::TagInvalid
        );
        let many: Vec<Tag> = (0..21).map(|i| tag(&i.to_string())).collect();
        assert_eq!(check_tags(&many).unwrap_err().code, ErrorCode::TooManyTags);
    }

    #[test]
    fn bodies_become_typed_commands() {
        let svc: NewService = CreateService {
            port_id: Some("p".into()),
            vpc_id: Some("v".into()),
            server_type: Some("VIP".into()),
            ports: Some(vec![PortBody {
                client_port: Some(80),
                server_port: Some(8080),
                protocol: None,
            }]),
            ..CreateService::default()
        }
        .try_into()
        .unwrap();
        assert_eq!(
            (svc.server_type, svc.tcp_proxy, svc.approval_enabled),
            (ServerType::Lb, TcpProxy::Close, true)
        );
        let bad = |b: CreateService| NewService::try_from(b).unwrap_err().code;
        assert_eq!(bad(CreateService::default()), ErrorCode::Parameter);
        let decision = |a: &str, n: usize| {
            Decision::try_from(ConnectionAction {
                action: Some(a.into()),
                endpoints: Some(vec!["e".into(); n]),
            })
        };
        assert_eq!(
            decision("receive", 1).unwrap().status,
            ConnectionStatus::Accepted
        );
        assert_eq!(
            decision("accept", 1).unwrap_err().code,
            ErrorCode::InvalidConnectionAction
        );
        assert_eq!(
            decision("reject", 2).unwrap_err().code,
            ErrorCode::OneEndpointOnly
        );
        let subnet = |cidr: &str, v: Option<u8>, gw: Option<&str>| {
            NewSubnet::try_from(CreateSubnet {
                vpc_id: Some("v".into()),
                cidr: Some(cidr.into()),
                ip_version: v,
                gateway_ip: gw.map(Into::into),
                name: None,
            })
        };
        assert_eq!(
            subnet("10.0.1.7/24", None, None).unwrap().cidr.to_string(),
            "10.0.1.0/24"
        );
        assert!(subnet("2001:db8::/64", Some(6), Some("2001:db8::1")).is_ok());
        assert!(subnet("2001:db8::/64", None, None).is_err());
        assert!(subnet("10.0.0.0/24", Some(5), None).is_err());
        assert!(subnet("10.0.0.0/24", None, Some("2001:db8::1")).is_err());
        assert!(
            subnet("10.0.0.0/24", None, Some("10.0.1.1")).is_err(),
            "outside the block"
        );
        assert!(subnet("2001:db8::/64", Some(6), Some("2001:db9::1")).is_err());
        let gw = subnet("10.0.0.0/24", None, Some("10.0.0.254"))
            .unwrap()
            .gateway_ip;
        assert_eq!(gw, Some("10.0.0.254".parse().unwrap()));
        let edit = PermissionEdit::try_from(PermissionAction {
            permissions: Some(vec!["iam:domain::abc".into()]),
            permission_type: None,
            action: Some("drop".into()),
        });
        assert_eq!(edit.unwrap_err().code, ErrorCode::InvalidPermissionAction);
        let too_many = PermissionAction {
            permissions: Some(vec!["*".into(); 51]),
            permission_type: None,
            action: Some("add".into()),
        };
        assert_eq!(
            PermissionEdit::try_from(too_many).unwrap_err().code,
            ErrorCode::BatchLimit
        );
        let ep = |ip: &str| {
            NewEndpoint::try_from(CreateEndpoint {
                endpoint_service_id: Some("s".into()),
                vpc_id: Some("v".into()),
                subnet_id: Some("n".into()),
                port_ip: Some(ip.into()),
                ..CreateEndpoint::default()
            })
        };
        assert_eq!(ep("10.0.0.300").unwrap_err().code, ErrorCode::InvalidPortIp);
        assert_eq!(ep("fd00::1").unwrap_err().code, ErrorCode::InvalidPortIp);
        assert_eq!(
            ep("10.0.0.3").unwrap().ip,
            Some(std::net::Ipv4Addr::new(10, 0, 0, 3))
        );
        assert!(EndpointChange::try_from(Extend { duration: Some(0) }).is_err());
        assert!(matches!(
            EndpointChange::try_from(Extend { duration: None }),
            Ok(EndpointChange::Lifetime(None))
        ));
    }
}
