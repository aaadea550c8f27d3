//! Gateway services: operator-provided services (an object store, a file store) reached by
//! route, not by port. They come from the daemon's config (`[[gateway_services]]`), not from
//! the API or the store: [`super::Model::gateways`] holds them, set at start and at every
//! reload. Every account sees them (describe, public list, `service_type: "gateway"`), and
//! an endpoint to one needs no approval.
//!
//! A gateway endpoint in a user VPC makes the node route that VPC's new TCP and UDP flows
//! to any address of the service's prefixes (any port) out of the service's attachment,
//! with the source translated like an interface endpoint's flow and the destination kept.
//! The endpoint's address (`ip`, from one of the VPC's subnets) is the next hop the VPC's
//! clients route the prefixes through: the daemon answers ARP for it.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};

use super::{Model, ServiceId, ServiceName, VpcId};

/// The owner shown for gateway services in the public list: the operator, not a tenant.
pub const GATEWAY_OWNER: &str = "vpcep";

/// An operator's gateway service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewayService {
    /// A UUID derived from the region and the name: stable across restarts and reloads, so
    /// endpoints stored against it find it again.
    pub id: ServiceId,
    /// The short name.
    pub name: ServiceName,
    /// `<region>.<name>.<id>`.
    pub full_name: String,
    /// The address prefixes the service lives in.
    pub prefixes: Vec<Ipv4Net>,
    /// The VPC (an attachment of the node) where the prefixes are reachable.
    pub vpc_id: VpcId,
    /// The router on that VPC's attachment to send through; `None`: the prefixes are
    /// on-link there.
    pub next_hop: Option<Ipv4Addr>,
    /// Free text.
    pub description: String,
    /// When this node first loaded it (seconds since the epoch).
    pub created_at: i64,
}

impl GatewayService {
    /// The id of gateway service `name` in `region`: a UUID (version 4 layout) made of the
    /// first 16 bytes of SHA-256 over `vpcep-gateway\0<region>\0<name>`.
    pub fn id_of(region: &str, name: &ServiceName) -> ServiceId {
        let digest = Sha256::new()
            .chain_update(b"vpcep-gateway\0")
            .chain_update(region.as_bytes())
            .chain_update(b"\0")
            .chain_update(name.as_str().as_bytes())
            .finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
            .into()
    }

    /// True if `ip` lies in one of the service's prefixes.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.prefixes.iter().any(|p| p.contains(&ip))
    }
}

impl Model {
    /// The full name of service `id`: an endpoint service's or a gateway service's.
    pub fn service_full_name(&self, id: &ServiceId) -> Option<&str> {
        self.services
            .get(id)
            .map(|s| s.full_name.as_str())
            .or_else(|| self.gateways.get(id).map(|g| g.full_name.as_str()))
    }

    /// The API's `service_type` of the service an endpoint connects to.
    pub fn service_type_of(&self, id: &ServiceId) -> &'static str {
        if self.gateways.contains_key(id) {
            "gateway"
        } else {
            "interface"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_per_region_and_name() {
        let obs = ServiceName::try_from("obs".to_string()).unwrap();
        let sfs = ServiceName::try_from("sfs".to_string()).unwrap();
        let a = GatewayService::id_of("region-1", &obs);
        assert_eq!(a, GatewayService::id_of("region-1", &obs));
        assert_ne!(a, GatewayService::id_of("region-2", &obs));
        assert_ne!(a, GatewayService::id_of("region-1", &sfs));
        let u = uuid::Uuid::parse_str(a.as_str()).unwrap();
        assert_eq!(u.get_version_num(), 4);
    }
}
