//! Gateway services and endpoints: what tenants see through the API (describe, public
//! list, create, show, route tables), and what the compiler and pusher publish for them
//! (per-VPC routes, the endpoint address, SNAT and next hops), through reloads and deletes.

#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::sync::Arc;

use crate::common::*;
use control::compile::Attachments;
use control::config::gateway_services::{GatewayServiceConfig, resolve};
use control::model::{EndpointId, Tenant};
use control::push::{PushStatus, Pusher};
use control::registry::{Quotas, Registry};
use control::requests::{CreateEndpoint, CreateSubnet, CreateVpc};
use control::store::MemStore;
use dataplane::tables::{EndpointState, GatewayRoute, default_snat_range};
use dataplane::{Attachment, TablePublisher, Tables};
use serde_json::{Value, json};

fn obs_config(vpc_id: &str) -> GatewayServiceConfig {
    toml::from_str(&format!(
        r#"name = "obs"
           prefixes = ["100.125.0.0/16", "100.126.8.0/24"]
           vpc_id = "{vpc_id}"
           next_hop = "10.9.0.1"
           description = "object storage""#
    ))
    .unwrap()
}

/// GET `path` with query `q`, expecting success.
fn get(c: &control::client::Client, path: &str, q: &[(&str, &str)]) -> Value {
    let q: Vec<(&str, String)> = q.iter().map(|(k, v)| (*k, (*v).to_string())).collect();
    c.call("GET", &c.path(path), &q, None)
        .unwrap_or_else(|e| panic!("GET {path} {q:?}: {e}"))
}

fn public_obs(c: &control::client::Client) -> Value {
    let list = get(
        c,
        "/vpc-endpoint-services/public",
        &[("endpoint_service_name", "obs")],
    );
    assert_eq!(list["total_count"], 1, "{list}");
    list["endpoint_services"][0].clone()
}

#[test]
fn tenants_find_gateway_services_and_connect_without_approval() {
    let env = Env::with_config("gateway-api", |c| {
        c.gateway_services = vec![obs_config("store-vpc")];
    });
    let u = &env.user;
    // Every account sees it, in the public list's and describe's shapes.
    let item = public_obs(u);
    assert_eq!(public_obs(&env.stranger), item);
    let id = item["id"].as_str().unwrap().to_string();
    let name = item["service_name"].as_str().unwrap().to_string();
    assert_eq!(name, format!("region-1.obs.{id}"));
    assert_eq!(
        (
            &item["service_type"],
            &item["owner"],
            &item["is_charge"],
            &item["enable_policy"]
        ),
        (
            &json!("gateway"),
            &json!("vpcep"),
            &json!(false),
            &json!(false)
        )
    );
    assert!(item["created_at"].as_str().unwrap().ends_with('Z'));
    let describe = "/vpc-endpoint-services/describe";
    let by_name = get(u, describe, &[("endpoint_service_name", &name)]);
    let by_id = get(u, describe, &[("id", &id)]);
    assert_eq!(by_name, by_id);
    assert_eq!(by_id["service_type"], "gateway");
    assert_eq!(by_id["service_name"], json!(name));
    // The public list holds it next to the services the caller may see.
    let (svc, _, _) = service(&env.provider, true);
    let all = ok(u, "GET", "/vpc-endpoint-services/public", None);
    assert_eq!(
        all["total_count"], 1,
        "the provider's service is not whitelisted for u"
    );
    let mine = get(
        &env.provider,
        "/vpc-endpoint-services/public",
        &[("limit", "1"), ("offset", "1")],
    );
    assert_eq!(mine["total_count"], 2);
    assert_eq!(mine["endpoint_services"].as_array().unwrap().len(), 1);

    // A gateway endpoint: only the VPC; accepted at once, an address, the default table.
    let (vpc, sub) = network(u, "10.1.0.0/16");
    let ep = ok(
        u,
        "POST",
        "/vpc-endpoints",
        Some(json!({
        "endpoint_service_id": id, "vpc_id": vpc, "enable_dns": true})),
    );
    assert_eq!(
        (
            &ep["service_type"],
            &ep["status"],
            &ep["enable_dns"],
            &ep["subnet_id"]
        ),
        (
            &json!("gateway"),
            &json!("accepted"),
            &json!(false),
            &json!(sub)
        )
    );
    assert_eq!(ep["routetables"], json!([vpc]));
    assert_eq!(ep["endpoint_service_name"], json!(name));
    assert_eq!(ep["ip"], "10.1.0.2");
    let ep_id = ep["id"].as_str().unwrap().to_string();
    let shown = ok(u, "GET", &format!("/vpc-endpoints/{ep_id}"), None);
    assert_eq!(
        (&shown["service_type"], &shown["status"]),
        (&json!("gateway"), &json!("accepted"))
    );
    let listed = get(u, "/vpc-endpoints", &[("endpoint_service_name", &name)]);
    assert_eq!(listed["total_count"], 1);
    let rt = ok(
        u,
        "PUT",
        &format!("/vpc-endpoints/{ep_id}/routetables"),
        Some(json!({"routetables": ["rtb-1", "rtb-2"]})),
    );
    assert_eq!(rt["routetables"], json!(["rtb-1", "rtb-2"]));
    assert_eq!(rt["error"], json!([]));
    fails(
        u,
        "PUT",
        &format!("/vpc-endpoints/{ep_id}/routetables"),
        Some(json!({"routetables": ["x", "x"]})),
        400,
        "EndPoint.0002",
    );
    fails(
        u,
        "POST",
        "/vpc-endpoints",
        Some(json!({
        "endpoint_service_id": id, "vpc_id": vpc, "whitelist": ["10.1.0.0/24"]})),
        400,
        "EndPoint.0002",
    );

    // Interface endpoints take no route tables.
    whitelist(&env.provider, &svc, "duser");
    fails(
        u,
        "POST",
        "/vpc-endpoints",
        Some(json!({
        "endpoint_service_id": svc, "vpc_id": vpc, "subnet_id": sub, "routetables": ["rtb-1"]})),
        400,
        "EndPoint.0002",
    );

    let (s, _) = u
        .raw(
            "DELETE",
            &u.path(&format!("/vpc-endpoints/{ep_id}")),
            &[],
            None,
        )
        .unwrap();
    assert_eq!(s, 204);
    fails(
        u,
        "GET",
        &format!("/vpc-endpoints/{ep_id}"),
        None,
        404,
        "EndPoint.2006",
    );
}

fn tenant() -> Tenant {
    Tenant {
        domain_id: "du".into(),
        project_id: "pu".into(),
        ak: "ak".into(),
        org_path: None,
    }
}

#[test]
fn the_pusher_publishes_routes_while_the_endpoint_lives_and_the_service_exists() {
    let reg =
        Arc::new(Registry::open(Arc::new(MemStore::default()), "r", Quotas::default()).unwrap());
    let u = tenant();
    let vpc = reg
        .create_vpc(
            &u,
            CreateVpc {
                name: None,
                cidr: Some("10.1.0.0/16".into()),
            }
            .try_into()
            .unwrap(),
        )
        .unwrap();
    let sub = CreateSubnet {
        vpc_id: Some(vpc.id.to_string()),
        cidr: Some("10.1.0.0/24".into()),
        ..CreateSubnet::default()
    };
    reg.create_subnet(&u, sub.try_into().unwrap()).unwrap();
    let cfg = [obs_config("store")];
    reg.set_gateway_services(resolve(&cfg, &[], "r", &reg.gateway_services(), 1));
    let notes = reg.subscribe();
    let att = Attachments::new([vpc.id.as_str(), "store"]);
    let snat = default_snat_range();
    let publisher = TablePublisher::new(Tables::new(snat));
    let mut reader = publisher.reader();
    let mut pusher = Pusher::new(publisher, att, snat, Arc::new(PushStatus::default()));
    let mut sync = |reader: &mut dataplane::TableReader| {
        while let Ok(n) = notes.try_recv() {
            pusher.apply(&reg, &n.touched, n.revision);
        }
        reader.load().clone()
    };
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap().to_bits();
    // The route's meter slot is the gateway endpoint's (the first handed out: 1).
    let hop = GatewayRoute {
        out_vpc: Attachment(1),
        next_hop: Some(ip("10.9.0.1")),
        meter: 1,
    };

    let t = sync(&mut reader);
    assert!(t.gateways(Attachment(0)).is_none(), "no endpoint yet");
    assert!(
        t.is_snat_vpc(Attachment(1)),
        "the service's attachment answers for the SNAT range"
    );
    assert_eq!(
        t.backends(),
        [(Attachment(1), ip("10.9.0.1"))],
        "the next hop is resolved ahead"
    );

    let gid = reg.gateway_services().keys().next().unwrap().clone();
    let body = CreateEndpoint {
        endpoint_service_id: Some(gid.to_string()),
        vpc_id: Some(vpc.id.to_string()),
        ..CreateEndpoint::default()
    };
    let ep = reg.create_endpoint(&u, body.try_into().unwrap()).unwrap();
    let t = sync(&mut reader);
    let routes = t.gateways(Attachment(0)).unwrap();
    assert_eq!(routes.len(), 2);
    assert_eq!(routes.lookup(ip("100.125.200.1")), Some(hop));
    assert_eq!(routes.lookup(ip("100.126.8.9")), Some(hop));
    assert_eq!(routes.lookup(ip("100.126.9.9")), None);
    assert_eq!(
        t.endpoint(Attachment(0), ep.ip.to_bits()),
        Some(EndpointState::Accepted)
    );
    assert!(t.gateways(Attachment(1)).is_none() && t.accepted().is_empty());

    // A reload without the service: no route, the address carries nothing.
    reg.set_gateway_services(Vec::new());
    let t = sync(&mut reader);
    assert!(t.gateways(Attachment(0)).is_none());
    assert_eq!(
        t.endpoint(Attachment(0), ep.ip.to_bits()),
        Some(EndpointState::Inactive)
    );
    assert!(!t.is_snat_vpc(Attachment(1)) && t.backends().is_empty());
    // Back, then the endpoint deleted: nothing left of it.
    reg.set_gateway_services(resolve(&cfg, &[], "r", &reg.gateway_services(), 2));
    assert!(sync(&mut reader).gateways(Attachment(0)).is_some());
    let id: EndpointId = ep.id.clone();
    reg.delete_endpoint(&u, &id).unwrap();
    let t = sync(&mut reader);
    assert!(t.gateways(Attachment(0)).is_none());
    assert_eq!(t.endpoint(Attachment(0), ep.ip.to_bits()), None);

    // An endpoint with a lifetime routes until it expires (frozen), then nothing.
    let body = CreateEndpoint {
        endpoint_service_id: Some(gid.to_string()),
        vpc_id: Some(vpc.id.to_string()),
        duration: Some(60),
        ..CreateEndpoint::default()
    };
    let ep = reg.create_endpoint(&u, body.try_into().unwrap()).unwrap();
    assert!(sync(&mut reader).gateways(Attachment(0)).is_some());
    assert_eq!(reg.freeze_expired(ep.expires_at.unwrap()).unwrap(), 1);
    let t = sync(&mut reader);
    assert!(t.gateways(Attachment(0)).is_none());
    assert_eq!(
        t.endpoint(Attachment(0), ep.ip.to_bits()),
        Some(EndpointState::Inactive)
    );
}

#[test]
fn a_gateway_service_on_a_vpc_this_node_does_not_attach_routes_nothing() {
    let reg = Registry::open(Arc::new(MemStore::default()), "r", Quotas::default()).unwrap();
    let u = tenant();
    let vpc = reg
        .create_vpc(
            &u,
            CreateVpc {
                name: None,
                cidr: Some("10.1.0.0/16".into()),
            }
            .try_into()
            .unwrap(),
        )
        .unwrap();
    let sub = CreateSubnet {
        vpc_id: Some(vpc.id.to_string()),
        cidr: Some("10.1.0.0/24".into()),
        ..CreateSubnet::default()
    };
    reg.create_subnet(&u, sub.try_into().unwrap()).unwrap();
    reg.set_gateway_services(resolve(
        &[obs_config("elsewhere")],
        &[],
        "r",
        &reg.gateway_services(),
        1,
    ));
    let gid = reg.gateway_services().keys().next().unwrap().clone();
    let body = CreateEndpoint {
        endpoint_service_id: Some(gid.to_string()),
        vpc_id: Some(vpc.id.to_string()),
        ..CreateEndpoint::default()
    };
    let ep = reg.create_endpoint(&u, body.try_into().unwrap()).unwrap();
    let att = Attachments::new([vpc.id.as_str()]);
    let m = reg.read();
    assert!(
        control::compile::gateways(&m, &att, |_| 0)
            .iter()
            .all(|t| t.is_empty())
    );
    let c = control::compile::endpoint(&m, &att, &ep, 0);
    assert_eq!(c.address.map(|(_, s)| s), Some(EndpointState::Inactive));
    assert!(control::compile::snat_vpcs(&m, &att).is_empty());
}
