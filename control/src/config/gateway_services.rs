//! `[[gateway_services]]`: the operator's gateway services, as the daemon's config defines
//! them, checked and turned into the model's [`GatewayService`]s.
//!
//! ```toml
//! [[gateway_services]]
//! name = "obs"                     # 1 to 16 of A-Z a-z 0-9 _ -; full name region.obs.<id>
//! prefixes = ["100.125.0.0/16"]    # where the service lives (IPv4, host bits clear)
//! vpc_id = "<an attached VPC id>"  # where the prefixes are reachable (or interface = "...")
//! next_hop = "10.9.0.1"            # a router there; absent: the prefixes are on-link
//! description = "object storage"
//! ```
//!
//! Reloadable: a reload that changes them replaces the set the API shows and the routes the
//! dataplane has; endpoints of a service that is gone show `failed` and carry nothing.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Deserialize;

use super::{AttachmentConfig, ConfigError};
use crate::model::{GatewayService, ServiceId, ServiceName};

/// Most prefixes one gateway service may have.
pub const MAX_PREFIXES: usize = 64;

/// One `[[gateway_services]]` entry.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GatewayServiceConfig {
    /// The short name (the service's full name is `<region>.<name>.<id>`).
    pub name: String,
    /// The address prefixes of the service (1 to [`MAX_PREFIXES`]).
    pub prefixes: Vec<Ipv4Net>,
    /// The VPC where the prefixes are reachable: an attachment's `vpc_id`. Give this or
    /// `interface`.
    #[serde(default)]
    pub vpc_id: Option<String>,
    /// The attachment's interface, instead of `vpc_id`.
    #[serde(default)]
    pub interface: Option<String>,
    /// The router to send through on that attachment; absent: on-link.
    #[serde(default)]
    pub next_hop: Option<Ipv4Addr>,
    /// Free text (no `<` or `>`, at most 128 characters).
    #[serde(default)]
    pub description: String,
}

impl GatewayServiceConfig {
    /// The VPC the entry names, directly or through its interface.
    fn vpc<'c>(&'c self, attachments: &'c [AttachmentConfig]) -> Option<&'c str> {
        match (&self.vpc_id, &self.interface) {
            (Some(v), None) => Some(v),
            (None, Some(i)) => attachments
                .iter()
                .find(|a| a.interface.as_str() == i.as_str())
                .map(|a| a.vpc_id.as_str()),
            _ => None,
        }
    }
}

/// Check the entries against each other, the attachments and the SNAT range.
///
/// # Errors
/// [`ConfigError::Invalid`], naming the entry.
pub fn validate(
    list: &[GatewayServiceConfig],
    attachments: &[AttachmentConfig],
    snat: Ipv4Net,
) -> Result<(), ConfigError> {
    let bad = |name: &str, m: String| {
        Err(ConfigError::Invalid(format!(
            "gateway_services {name:?}: {m}"
        )))
    };
    let mut names = HashSet::new();
    let mut prefixes = HashSet::new();
    for g in list {
        let n = g.name.as_str();
        if ServiceName::try_from(g.name.clone()).is_err() {
            return bad(n, "the name must be 1 to 16 of A-Z a-z 0-9 _ -".into());
        }
        if !names.insert(n) {
            return bad(n, "defined twice".into());
        }
        if g.prefixes.is_empty() || g.prefixes.len() > MAX_PREFIXES {
            return bad(n, format!("1 to {MAX_PREFIXES} prefixes"));
        }
        for p in &g.prefixes {
            if p.trunc() != *p {
                return bad(n, format!("prefix {p} has host bits set"));
            }
            if p.contains(&snat) || snat.contains(p) || p.contains(&snat.network()) {
                return bad(n, format!("prefix {p} overlaps the SNAT range {snat}"));
            }
            if !prefixes.insert(*p) {
                return bad(n, format!("prefix {p} belongs to two gateway services"));
            }
        }
        match (&g.vpc_id, &g.interface) {
            (Some(v), None) if !v.is_empty() => {}
            (None, Some(_)) if g.vpc(attachments).is_some() => {}
            (None, Some(i)) => return bad(n, format!("interface {i} is no attachment")),
            _ => return bad(n, "give exactly one of vpc_id and interface".into()),
        }
        if let Some(hop) = g.next_hop
            && (hop.is_unspecified()
                || hop.is_broadcast()
                || hop.is_multicast()
                || snat.contains(&hop))
        {
            return bad(n, format!("next_hop {hop} cannot be a router"));
        }
        if g.description.chars().count() > 128 || g.description.contains(['<', '>']) {
            return bad(n, "description: at most 128 characters, no < or >".into());
        }
    }
    Ok(())
}

/// The model's gateway services for validated `list`, in `region`. A service that
/// `previous` already holds keeps its `created_at`; new ones get `now`.
pub fn resolve(
    list: &[GatewayServiceConfig],
    attachments: &[AttachmentConfig],
    region: &str,
    previous: &BTreeMap<ServiceId, GatewayService>,
    now: i64,
) -> Vec<GatewayService> {
    list.iter()
        .filter_map(|g| {
            let name = ServiceName::try_from(g.name.clone()).ok()?;
            let id = GatewayService::id_of(region, &name);
            Some(GatewayService {
                full_name: format!("{region}.{}.{id}", name.as_str()),
                created_at: previous.get(&id).map_or(now, |p| p.created_at),
                id,
                name,
                prefixes: g.prefixes.clone(),
                vpc_id: g.vpc(attachments)?.into(),
                next_hop: g.next_hop,
                description: g.description.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(toml: &str) -> GatewayServiceConfig {
        toml::from_str(toml).unwrap()
    }

    fn att() -> Vec<AttachmentConfig> {
        vec![AttachmentConfig::new(
            "veth-store".to_string().try_into().unwrap(),
            "store-vpc",
        )]
    }

    fn snat() -> Ipv4Net {
        "198.19.128.0/17".parse().unwrap()
    }

    #[test]
    fn entries_resolve_by_vpc_or_interface_with_stable_ids() {
        let list = [
            entry(
                r#"name = "obs"
                prefixes = ["100.125.0.0/16"]
                interface = "veth-store"
                next_hop = "10.9.0.1""#,
            ),
            entry(
                r#"name = "sfs"
                prefixes = ["100.126.0.0/24", "100.127.0.0/24"]
                vpc_id = "other""#,
            ),
        ];
        validate(&list, &att(), snat()).unwrap();
        let out = resolve(&list, &att(), "r1", &BTreeMap::new(), 7);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].vpc_id, "store-vpc");
        assert_eq!(out[0].next_hop, Some(Ipv4Addr::new(10, 9, 0, 1)));
        assert_eq!(out[0].full_name, format!("r1.obs.{}", out[0].id));
        assert_eq!(out[1].vpc_id, "other");
        // A reload keeps the id and the creation time.
        let prev = out.iter().map(|g| (g.id.clone(), g.clone())).collect();
        let again = resolve(&list, &att(), "r1", &prev, 99);
        assert_eq!(
            (again[0].id.clone(), again[0].created_at),
            (out[0].id.clone(), 7)
        );
    }

    #[test]
    fn bad_entries_are_refused_with_their_name() {
        let cases = [
            (
                r#"name = "a b"
                prefixes = ["100.125.0.0/16"]
                vpc_id = "v""#,
                "name",
            ),
            (
                r#"name = "obs"
                prefixes = []
                vpc_id = "v""#,
                "prefixes",
            ),
            (
                r#"name = "obs"
                prefixes = ["100.125.0.1/16"]
                vpc_id = "v""#,
                "host bits",
            ),
            (
                r#"name = "obs"
                prefixes = ["198.19.0.0/16"]
                vpc_id = "v""#,
                "SNAT",
            ),
            (
                r#"name = "obs"
                prefixes = ["100.125.0.0/16"]"#,
                "exactly one",
            ),
            (
                r#"name = "obs"
                prefixes = ["100.125.0.0/16"]
                interface = "nope""#,
                "no attachment",
            ),
            (
                r#"name = "obs"
                prefixes = ["100.125.0.0/16"]
                vpc_id = "v"
                next_hop = "255.255.255.255""#,
                "next_hop",
            ),
        ];
        for (toml, what) in cases {
            let err = validate(&[entry(toml)], &att(), snat())
                .unwrap_err()
                .to_string();
            assert!(err.contains(what), "{err} should say {what}");
        }
        let twice = entry(
            r#"name = "obs"
            prefixes = ["100.125.0.0/16"]
            vpc_id = "v""#,
        );
        let err = validate(&[twice.clone(), twice], &att(), snat()).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }
}
