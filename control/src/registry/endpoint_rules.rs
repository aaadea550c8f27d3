//! Rules about an endpoint that both kinds share or tell apart: its marker id, and what
//! only an interface endpoint (a source whitelist) or only a gateway endpoint (route
//! tables) may carry. Below both `endpoints` and `gateways`, which use them.

use rand::Rng;

use crate::error::Rejection;
use crate::model::{Endpoint, Model, SourceCidr, VpcId};

/// A packet id no connection uses: 53 bits, so exact in every JSON client; never 0.
pub(super) fn new_marker(m: &Model) -> u64 {
    let mut rng = rand::rng();
    loop {
        let marker = rng.random::<u64>() >> 11;
        if marker != 0 && !m.marker_taken(marker) {
            return marker;
        }
    }
}

/// `list`, or the VPC's default route table (named by the VPC id) when it is empty.
pub(super) fn default_routetables(list: Vec<String>, vpc: &VpcId) -> Vec<String> {
    if list.is_empty() {
        vec![vpc.to_string()]
    } else {
        list
    }
}

/// Refuse a source whitelist (`list`, or enforcement switched on) for gateway endpoint
/// `ep`: the whitelist is an interface endpoint's.
///
/// # Errors
/// EndPoint.0002.
pub(super) fn no_whitelist(
    m: &Model,
    ep: &Endpoint,
    list: Option<&[SourceCidr]>,
    enable: Option<bool>,
) -> Result<(), Rejection> {
    let asks = list.is_some_and(|l| !l.is_empty()) || enable == Some(true);
    if asks && m.gateways.contains_key(&ep.service_id) {
        return Err(Rejection::param(
            "whitelist: only interface endpoints have a source whitelist",
        ));
    }
    Ok(())
}

/// The route tables of endpoint `ep` after an update to `list`: gateway endpoints only.
///
/// # Errors
/// EndPoint.0002 for an interface endpoint.
pub(super) fn routetables(
    m: &Model,
    ep: &Endpoint,
    list: Vec<String>,
) -> Result<Vec<String>, Rejection> {
    if !m.gateways.contains_key(&ep.service_id) {
        return Err(Rejection::param(
            "routetables: only endpoints of a gateway service take route tables",
        ));
    }
    Ok(default_routetables(list, &ep.vpc_id))
}
