//! Whether a resource is carried by a dataplane: an accepted endpoint whose VPC (or whose
//! service's VPC) no node attaches carries nothing, so it shows the guide's `failed`
//! status with the reason in `error[]`, and becomes `accepted` / `available` again once the
//! VPC is attached. The status is derived when a view is made, never stored: attaching a
//! VPC heals every resource in it at once.
//!
//! A node that attaches nothing (an API-only node) does not know what other nodes attach,
//! so it fails nothing ([`Model::attached`] is `None` there).

use super::{ApiStatus, ConnectionStatus, Endpoint, Model, Service, ServiceStatus, VpcId};

/// The `code` of the `error[]` entry of a resource whose VPC is not attached.
pub const NOT_ATTACHED: &str = "VPC_NOT_ATTACHED";

impl Model {
    /// True if `vpc` is attached to a dataplane, or if attachment is unknown here.
    pub fn is_attached(&self, vpc: &VpcId) -> bool {
        self.attached.as_ref().is_none_or(|set| set.contains(vpc))
    }

    /// Why `svc` is failed, if it is: it is available but its VPC is not attached.
    pub fn service_failure(&self, svc: &Service) -> Option<String> {
        (svc.status == ServiceStatus::Available && !self.is_attached(&svc.vpc_id)).then(|| {
            format!(
                "The service's VPC {} is not attached to any node: no endpoint reaches it.",
                svc.vpc_id
            )
        })
    }

    /// Why `ep` is failed, if it is: it is accepted but its VPC, or its service's VPC, is
    /// not attached.
    pub fn endpoint_failure(&self, ep: &Endpoint) -> Option<String> {
        if ep.status != ConnectionStatus::Accepted {
            return None;
        }
        if !self.is_attached(&ep.vpc_id) {
            return Some(format!(
                "The endpoint's VPC {} is not attached to any node: nothing carries its traffic.",
                ep.vpc_id
            ));
        }
        let svc_vpc = match (
            self.services.get(&ep.service_id),
            self.gateways.get(&ep.service_id),
        ) {
            (Some(svc), _) => &svc.vpc_id,
            (None, Some(g)) => &g.vpc_id,
            // A gateway service the operator took out of the config.
            (None, None) => {
                return Some(format!(
                    "The service {} is no longer offered: nothing carries this endpoint's traffic.",
                    ep.service_id
                ));
            }
        };
        (!self.is_attached(svc_vpc)).then(|| {
            format!(
                "The service's VPC {svc_vpc} is not attached to any node: nothing carries this endpoint's traffic."
            )
        })
    }

    /// The status the API shows for `svc` (`failed` if [`Model::service_failure`]).
    pub fn service_status(&self, svc: &Service) -> ApiStatus {
        if self.service_failure(svc).is_some() {
            ApiStatus::Failed
        } else {
            svc.status.into()
        }
    }

    /// The status the API shows for `ep` (`failed` if [`Model::endpoint_failure`]).
    pub fn endpoint_status(&self, ep: &Endpoint) -> ApiStatus {
        if self.endpoint_failure(ep).is_some() {
            ApiStatus::Failed
        } else {
            ep.status.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use crate::registry::testing::*;

    #[test]
    fn accepted_endpoints_fail_while_a_vpc_is_not_attached_and_heal_when_it_is() {
        let r = registry();
        let (p, u) = (tenant("p"), tenant("u"));
        let svc = service(&r, &p, false, &[&u]);
        let (uvpc, usub) = network(&r, &u, "10.1.0.0/16");
        let ep = endpoint(&r, &u, endpoint_body(&svc.id, &uvpc, &usub)).unwrap();
        let statuses = |r: &crate::registry::Registry| {
            let m = r.read();
            let (ep, svc) = (&m.endpoints[&ep.id], &m.services[&svc.id]);
            (
                m.endpoint_status(ep).as_str(),
                m.service_status(svc).as_str(),
                m.endpoint_failure(ep),
            )
        };
        // Unknown attachment (an API-only node): nothing fails.
        assert_eq!(statuses(&r).0, "accepted");
        assert_eq!(statuses(&r).1, "available");
        // Only the provider's VPC attached: the endpoint fails, the service does not.
        r.set_attached(Some(BTreeSet::from([svc.vpc_id.clone()])));
        let (e, s, why) = statuses(&r);
        assert_eq!((e, s), ("failed", "available"));
        assert!(why.unwrap().contains(uvpc.as_str()));
        // Only the user's VPC: both fail, the endpoint naming the service's VPC.
        r.set_attached(Some(BTreeSet::from([uvpc.clone()])));
        let (e, s, why) = statuses(&r);
        assert_eq!((e, s), ("failed", "failed"));
        assert!(why.unwrap().contains(svc.vpc_id.as_str()));
        // Both: healed.
        r.set_attached(Some(BTreeSet::from([uvpc.clone(), svc.vpc_id.clone()])));
        assert_eq!(statuses(&r), ("accepted", "available", None));
    }
}
