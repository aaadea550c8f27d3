//! The request decoders over arbitrary JSON: every wire body either fails to parse or
//! becomes a validated command (or a clear rejection) through its `TryFrom`, never a panic.
#![no_main]

use control::command::endpoints::*;
use control::command::inventory::*;
use control::command::services::*;
use control::requests::*;
use libfuzzer_sys::fuzz_target;

fn try_into<W: serde::de::DeserializeOwned, C: TryFrom<W>>(data: &[u8]) {
    if let Ok(w) = serde_json::from_slice::<W>(data) {
        let _ = C::try_from(w);
    }
}

fuzz_target!(|data: &[u8]| {
    try_into::<CreateEndpoint, NewEndpoint>(data);
    try_into::<UpdateWhitelist, EndpointChange>(data);
    try_into::<UpdateRoutetables, EndpointChange>(data);
    try_into::<UpdatePolicy, EndpointChange>(data);
    try_into::<Extend, EndpointChange>(data);
    try_into::<CreateVpc, NewVpc>(data);
    try_into::<CreateSubnet, NewSubnet>(data);
    try_into::<CreatePort, NewPort>(data);
    try_into::<CreateService, NewService>(data);
    try_into::<UpdateService, ServiceChange>(data);
    try_into::<ConnectionAction, Decision>(data);
    try_into::<ConnectionDescs, ConnectionNotes>(data);
    try_into::<PermissionAction, PermissionEdit>(data);
    try_into::<PermissionBatchCreate, NewPermissions>(data);
});
