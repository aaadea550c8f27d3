//! The check behind the `decode` fuzz target, shared with `control/tests/suite/fuzz_replay.rs`.
//!
//! The first byte picks a wire body of the API; the rest is the request body. It is decoded
//! as the API does (`api::body`) and turned into its command (`TryFrom`): either may refuse,
//! neither may panic, and every refusal carries a message.

use bytes::Bytes;
use control::api::body;
use control::command::*;
use control::error::Rejection;
use control::requests::*;
use serde::de::DeserializeOwned;

fn one<W, C>(b: &Bytes)
where
    W: DeserializeOwned,
    C: TryFrom<W, Error = Rejection>,
{
    match body::<W>(b).and_then(C::try_from) {
        Ok(_) => {}
        Err(e) => assert!(!e.msg.is_empty(), "a refusal says why"),
    }
}

/// Run the check on `data`.
pub fn check(data: &[u8]) {
    let Some((which, rest)) = data.split_first() else {
        return;
    };
    let b = Bytes::copy_from_slice(rest);
    match which % 19 {
        0 => one::<VpcEnvelope, NewVpc>(&b),
        1 => one::<SubnetEnvelope, NewSubnet>(&b),
        2 => one::<PortEnvelope, NewPort>(&b),
        3 => one::<CreateService, NewService>(&b),
        4 => one::<UpdateService, ServiceChange>(&b),
        5 => one::<RenameService, ServiceChange>(&b),
        6 => one::<ConnectionAction, Decision>(&b),
        7 => one::<ConnectionDescs, ConnectionNotes>(&b),
        8 => one::<PermissionAction, PermissionEdit>(&b),
        9 => one::<PermissionBatchCreate, NewPermissions>(&b),
        10 => one::<PermissionBatchDelete, PermissionRemoval>(&b),
        11 => one::<PermissionDescBody, PermissionNote>(&b),
        12 => one::<CreateEndpoint, NewEndpoint>(&b),
        13 => one::<UpdateWhitelist, EndpointChange>(&b),
        14 => one::<UpdateRoutetables, EndpointChange>(&b),
        15 => one::<UpdatePolicy, EndpointChange>(&b),
        16 => one::<Extend, EndpointChange>(&b),
        17 => one::<TagAction, TagEdit>(&b),
        _ => one::<ResourceQueryBody, ResourceFilter>(&b),
    }
}
