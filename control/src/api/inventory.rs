//! The network inventory (VPCs, subnets, ports), in the Huawei VPC API's shapes: each
//! object under its kind's name (`{"vpc": {...}}`), lists unpaged.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};

use super::page::params;
use super::views::{Named, PortView, SubnetView, VpcView, listed};
use super::{ApiResult, ApiState, Ctx, command, no_content, ok, run};
use crate::command::{NewPort, NewSubnet, NewVpc};
use crate::error::Rejection;
use crate::model::{PortId, SubnetId, VpcId};
use crate::requests::{PortEnvelope, SubnetEnvelope, VpcEnvelope};

/// `GET .../vpcs`.
pub async fn vpcs(State(s): State<ApiState>, ctx: Ctx) -> ApiResult {
    let m = s.registry.read();
    ok(listed(
        "vpcs",
        m.tenant(&ctx).vpcs().map(VpcView::new).collect(),
    ))
}

/// `POST .../vpcs`.
pub async fn create_vpc(State(s): State<ApiState>, ctx: Ctx, b: Bytes) -> ApiResult {
    let v = command::<VpcEnvelope, NewVpc, _>(&s, &b, move |r, c| r.create_vpc(&ctx, c)).await?;
    ok(Named("vpc", VpcView::new(&v)))
}

/// `GET .../vpcs/{id}`.
pub async fn vpc(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, VpcId)>,
) -> ApiResult {
    let m = s.registry.read();
    let v = m
        .tenant(&ctx)
        .vpc(&id)
        .ok_or_else(|| Rejection::not_found("vpc"))?;
    ok(Named("vpc", VpcView::new(v)))
}

/// `DELETE .../vpcs/{id}`.
pub async fn delete_vpc(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, VpcId)>,
) -> ApiResult {
    run(&s, move |r| r.delete_vpc(&ctx, &id)).await?;
    no_content()
}

/// `GET .../subnets[?vpc_id=]`.
pub async fn subnets(State(s): State<ApiState>, ctx: Ctx, RawQuery(q): RawQuery) -> ApiResult {
    let p = params(q.as_deref());
    let m = s.registry.read();
    let list = m
        .tenant(&ctx)
        .subnets(p.get("vpc_id").map(|v| VpcId::from(v.as_str())))
        .map(SubnetView::new)
        .collect();
    ok(listed("subnets", list))
}

/// `POST .../subnets`.
pub async fn create_subnet(State(s): State<ApiState>, ctx: Ctx, b: Bytes) -> ApiResult {
    let v = command::<SubnetEnvelope, NewSubnet, _>(&s, &b, move |r, c| r.create_subnet(&ctx, c))
        .await?;
    ok(Named("subnet", SubnetView::new(&v)))
}

/// `GET .../subnets/{id}`.
pub async fn subnet(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, SubnetId)>,
) -> ApiResult {
    let m = s.registry.read();
    let v = m
        .tenant(&ctx)
        .subnet(&id)
        .ok_or_else(|| Rejection::not_found("subnet"))?;
    ok(Named("subnet", SubnetView::new(v)))
}

/// `DELETE .../subnets/{id}`.
pub async fn delete_subnet(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, SubnetId)>,
) -> ApiResult {
    run(&s, move |r| r.delete_subnet(&ctx, &id)).await?;
    no_content()
}

/// `GET .../ports[?subnet_id=]`.
pub async fn ports(State(s): State<ApiState>, ctx: Ctx, RawQuery(q): RawQuery) -> ApiResult {
    let p = params(q.as_deref());
    let m = s.registry.read();
    let list = m
        .tenant(&ctx)
        .ports(p.get("subnet_id").map(|s| SubnetId::from(s.as_str())))
        .map(PortView::new)
        .collect();
    ok(listed("ports", list))
}

/// `POST .../ports`.
pub async fn create_port(State(s): State<ApiState>, ctx: Ctx, b: Bytes) -> ApiResult {
    let v = command::<PortEnvelope, NewPort, _>(&s, &b, move |r, c| r.create_port(&ctx, c)).await?;
    ok(Named("port", PortView::new(&v)))
}

/// `GET .../ports/{id}`.
pub async fn port(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, PortId)>,
) -> ApiResult {
    let m = s.registry.read();
    let v = m
        .tenant(&ctx)
        .port(&id)
        .ok_or_else(|| Rejection::not_found("port"))?;
    ok(Named("port", PortView::new(v)))
}

/// `DELETE .../ports/{id}`.
pub async fn delete_port(
    State(s): State<ApiState>,
    ctx: Ctx,
    Path((_, id)): Path<(String, PortId)>,
) -> ApiResult {
    run(&s, move |r| r.delete_port(&ctx, &id)).await?;
    no_content()
}
