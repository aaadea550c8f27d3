//! The compiler and pusher against a real registry and store: what an accept, a reject, a
//! frozen endpoint, a suspended service and a whitelist publish into the dataplane's tables.

#![allow(clippy::tests_outside_test_module, clippy::unwrap_used)]

use std::sync::Arc;

use crate::common::{TempDir, temp_dir};
use control::compile::Attachments;
use control::model::{EndpointId, ServiceId, SubnetId, Tenant};
use control::push::{PushStatus, Pusher};
use control::registry::{Quotas, Registry, Touched};
use control::requests::*;
use control::store::RedbStore;
use dataplane::tables::{AcceptedKey, EndpointState, default_snat_range};
use dataplane::{Attachment, TablePublisher, Tables};

fn tenant(p: &str, d: &str) -> Tenant {
    Tenant {
        domain_id: d.into(),
        project_id: p.into(),
        ak: "ak".into(),
        org_path: None,
    }
}

/// `body` as the command `C`, as the API would parse it.
fn cmd<W, C: TryFrom<W, Error = control::error::Rejection>>(body: W) -> C {
    C::try_from(body).unwrap()
}

struct World {
    reg: Arc<Registry>,
    pusher: Pusher,
    reader: dataplane::TableReader,
    notes: std::sync::mpsc::Receiver<control::registry::ChangeNote>,
    provider: Tenant,
    user: Tenant,
    svc: ServiceId,
    ep: EndpointId,
    port_sub: SubnetId,
    /// The store's directory, removed with the world.
    _dir: TempDir,
}

impl World {
    fn sync(&mut self) -> &Tables {
        while let Ok(n) = self.notes.try_recv() {
            self.pusher.apply(&self.reg, &n.touched, n.revision);
        }
        self.reader.load()
    }
}

fn world() -> World {
    world_with(&[])
}

/// The world with port security on the attachments `secured` says (user, provider).
fn world_with(secured: &[bool]) -> World {
    let dir = temp_dir("compile");
    let store = RedbStore::open(&dir.join("s.redb")).unwrap();
    let reg = Arc::new(Registry::open(Arc::new(store), "r", Quotas::default()).unwrap());
    let provider = tenant("pp", "dp");
    let user = tenant("pu", "du");
    let pvpc = reg
        .create_vpc(
            &provider,
            cmd(CreateVpc {
                name: None,
                cidr: Some("10.0.0.0/16".into()),
            }),
        )
        .unwrap();
    let psub = reg
        .create_subnet(
            &provider,
            cmd(CreateSubnet {
                name: None,
                vpc_id: Some(pvpc.id.to_string()),
                cidr: Some("10.0.0.0/24".into()),
                gateway_ip: None,
                ip_version: None,
            }),
        )
        .unwrap();
    let port = reg
        .create_port(
            &provider,
            cmd(CreatePort {
                name: None,
                subnet_id: Some(psub.id.to_string()),
                ip: Some("10.0.0.10".into()),
                server_type: Some("VM".into()),
                mac_address: None,
            }),
        )
        .unwrap();
    let svc: CreateService = serde_json::from_value(serde_json::json!({
        "vpc_id": pvpc.id, "port_id": port.id, "server_type": "VM", "approval_enabled": true,
        "ports": [{"client_port": 8080, "server_port": 80}, {"client_port": 53, "server_port": 5353, "protocol": "UDP"}]})).unwrap();
    let svc = reg.create_service(&provider, cmd(svc)).unwrap();
    reg.permission_action(
        &provider,
        &svc.id,
        cmd(PermissionAction {
            permissions: Some(vec!["iam:domain::du".into()]),
            permission_type: None,
            action: Some("add".into()),
        }),
    )
    .unwrap();
    let uvpc = reg
        .create_vpc(
            &user,
            cmd(CreateVpc {
                name: None,
                cidr: Some("10.0.0.0/16".into()),
            }),
        )
        .unwrap();
    let usub = reg
        .create_subnet(
            &user,
            cmd(CreateSubnet {
                name: None,
                vpc_id: Some(uvpc.id.to_string()),
                cidr: Some("10.0.0.0/24".into()),
                gateway_ip: None,
                ip_version: None,
            }),
        )
        .unwrap();
    let ep: CreateEndpoint = serde_json::from_value(serde_json::json!({"endpoint_service_id": svc.id, "vpc_id": uvpc.id, "subnet_id": usub.id, "port_ip": "10.0.0.200"})).unwrap();
    let ep = reg.create_endpoint(&user, cmd(ep)).unwrap();
    // Attachment 0 carries the user's VPC, attachment 1 the provider's.
    let att = Attachments::new([uvpc.id.as_str(), pvpc.id.as_str()])
        .with_port_security(secured.iter().copied());
    let publisher = TablePublisher::new(Tables::new(default_snat_range()));
    let reader = publisher.reader();
    let notes = reg.subscribe();
    let pusher = Pusher::new(
        publisher,
        att,
        default_snat_range(),
        Arc::new(PushStatus::default()),
    );
    World {
        reg,
        pusher,
        reader,
        notes,
        provider,
        user,
        svc: svc.id,
        ep: ep.id,
        port_sub: psub.id,
        _dir: dir,
    }
}

const EP_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 0, 0, 200);

#[test]
fn accept_reject_freeze_and_suspend_reach_the_tables() {
    let mut w = world();
    let tcp = AcceptedKey::new(Attachment(0), EP_IP, 6, 8080);
    let udp = AcceptedKey::new(Attachment(0), EP_IP, 17, 53);
    let t = w.sync();
    assert_eq!(
        t.endpoint(Attachment(0), EP_IP.to_bits()),
        Some(EndpointState::Inactive),
        "pending: ARP yes, traffic no"
    );
    assert!(t.accepted().is_empty());
    assert!(t.is_snat_vpc(Attachment(1)) && !t.is_snat_vpc(Attachment(0)));

    let accept = |w: &World, a: &str| {
        w.reg
            .decide_connection(
                &w.provider,
                &w.svc,
                cmd(ConnectionAction {
                    action: Some(a.into()),
                    endpoints: Some(vec![w.ep.to_string()]),
                }),
            )
            .unwrap();
    };
    accept(&w, "receive");
    let g1 = w.reader.load().generation();
    let t = w.sync();
    assert!(t.generation() > g1);
    assert_eq!(
        t.endpoint(Attachment(0), EP_IP.to_bits()),
        Some(EndpointState::Accepted)
    );
    let target = t.accepted().get(&tcp).unwrap();
    assert_eq!(
        (
            target.backend_vpc,
            target.backend_ip.to_string().as_str(),
            target.service_port
        ),
        (Attachment(1), "10.0.0.10", 80)
    );
    assert_eq!(t.accepted().get(&udp).unwrap().service_port, 5353);
    assert_eq!(target.whitelist, None);

    // A source whitelist compiles into the target.
    w.reg
        .update_endpoint(
            &w.user,
            &w.ep,
            cmd(UpdateWhitelist {
                whitelist: Some(vec!["192.0.2.0/24".into()]),
                enable_whitelist: Some(true),
            }),
        )
        .unwrap();
    let t = w.sync();
    let wl = t.accepted().get(&tcp).unwrap().whitelist.clone().unwrap();
    assert_eq!(wl.len(), 1);
    assert!(wl[0].contains("192.0.2.9".parse().unwrap()));

    accept(&w, "reject");
    let t = w.sync();
    assert!(
        t.accepted().get(&tcp).is_none(),
        "a rejected connection carries nothing"
    );
    assert_eq!(
        t.endpoint(Attachment(0), EP_IP.to_bits()),
        Some(EndpointState::Inactive)
    );
    accept(&w, "receive");
    assert!(w.sync().accepted().contains_key(&tcp));

    // Frozen by expiry.
    w.reg
        .update_endpoint(&w.user, &w.ep, cmd(Extend { duration: Some(1) }))
        .unwrap();
    assert_eq!(
        w.reg
            .freeze_expired(chrono::Utc::now().timestamp() + 5)
            .unwrap(),
        1
    );
    assert!(w.sync().accepted().is_empty());
    w.reg
        .update_endpoint(&w.user, &w.ep, cmd(Extend { duration: None }))
        .unwrap();
    assert!(w.sync().accepted().contains_key(&tcp));

    // Backend deleted: suspended, nothing forwards; a new backend: forwards to it.
    let port_id = w.reg.read().services[w.svc.as_str()]
        .port_id
        .clone()
        .unwrap();
    w.reg.delete_port(&w.provider, &port_id).unwrap();
    assert!(w.sync().accepted().is_empty());
    let vm = w
        .reg
        .create_port(
            &w.provider,
            cmd(CreatePort {
                name: None,
                subnet_id: Some(w.port_sub.to_string()),
                ip: Some("10.0.0.11".into()),
                server_type: Some("VM".into()),
                mac_address: None,
            }),
        )
        .unwrap();
    w.reg
        .update_service(
            &w.provider,
            &w.svc,
            cmd(UpdateService {
                port_id: Some(vm.id.to_string()),
                ..UpdateService::default()
            }),
        )
        .unwrap();
    let t = w.sync();
    assert_eq!(
        t.accepted().get(&tcp).unwrap().backend_ip.to_string(),
        "10.0.0.11"
    );

    // A mapping added and removed at run time.
    let ports: Vec<PortBody> =
        serde_json::from_value(serde_json::json!([{"client_port": 9090, "server_port": 90}]))
            .unwrap();
    w.reg
        .update_service(
            &w.provider,
            &w.svc,
            cmd(UpdateService {
                ports: Some(ports),
                ..UpdateService::default()
            }),
        )
        .unwrap();
    let t = w.sync();
    assert!(!t.accepted().contains_key(&tcp));
    assert_eq!(
        t.accepted()
            .get(&AcceptedKey::new(Attachment(0), EP_IP, 6, 9090))
            .unwrap()
            .service_port,
        90
    );

    // Deleted endpoint: gone from every table.
    w.reg.delete_endpoint(&w.user, &w.ep).unwrap();
    let t = w.sync();
    assert!(t.accepted().is_empty());
    assert_eq!(t.endpoint(Attachment(0), EP_IP.to_bits()), None);
}

#[test]
fn a_full_recompile_equals_the_incremental_result() {
    let mut w = world();
    w.reg
        .decide_connection(
            &w.provider,
            &w.svc,
            cmd(ConnectionAction {
                action: Some("receive".into()),
                endpoints: Some(vec![w.ep.to_string()]),
            }),
        )
        .unwrap();
    let incremental = w.sync().clone();
    let rev = w.reg.revision();
    w.pusher.apply(&w.reg, &Touched::All, rev);
    let full = w.reader.load();
    let mut a: Vec<_> = incremental
        .accepted()
        .iter()
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    let mut b: Vec<_> = full
        .accepted()
        .iter()
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    a.sort_by_key(|(k, _)| (k.port, k.proto));
    b.sort_by_key(|(k, _)| (k.port, k.proto));
    // Not two empty tables: the accepted connection's mappings are there.
    assert!(!a.is_empty(), "the incremental tables hold the mappings");
    assert_eq!(a, b);
    assert!(incremental.endpoint_count() > 0);
    assert_eq!(incremental.endpoint_count(), full.endpoint_count());
}

#[test]
fn an_endpoint_deleted_and_recreated_with_its_address_in_one_batch_stays_in_the_tables() {
    let mut w = world();
    let t = w.sync();
    assert_eq!(
        t.endpoint(Attachment(0), EP_IP.to_bits()),
        Some(EndpointState::Inactive)
    );
    // Delete the endpoint and create another at the same address; the pusher sees both in
    // one batch, the new one first (ids come in any order), as a coalesced note would.
    let old = w.ep.clone();
    w.reg.delete_endpoint(&w.user, &old).unwrap();
    let usub = w
        .reg
        .read()
        .subnets
        .values()
        .find(|s| s.project_id.as_str() == "pu")
        .unwrap()
        .id
        .clone();
    let uvpc = w.reg.read().subnets.get(&usub).unwrap().vpc_id.clone();
    let body: CreateEndpoint = serde_json::from_value(serde_json::json!({
        "endpoint_service_id": w.svc, "vpc_id": uvpc, "subnet_id": usub,
        "port_ip": "10.0.0.200"}))
    .unwrap();
    let new = w.reg.create_endpoint(&w.user, cmd(body)).unwrap().id;
    while w.notes.try_recv().is_ok() {}
    let revision = w.reg.revision();
    w.pusher.apply(
        &w.reg,
        &Touched::Endpoints(vec![new.clone(), old.clone()]),
        revision,
    );
    assert_eq!(
        w.reader.load().endpoint(Attachment(0), EP_IP.to_bits()),
        Some(EndpointState::Inactive),
        "the new endpoint's address survives the old one's removal"
    );
}

#[test]
fn port_security_follows_the_ports_of_the_inventory() {
    let mut w = world_with(&[true, false]);
    let (vm, mac) = (
        "10.0.0.5".parse::<std::net::Ipv4Addr>().unwrap().to_bits(),
        dataplane::wire::ethernet::MacAddr([0x02, 0, 0, 0, 0, 0x05]),
    );
    let t = w.sync();
    assert!(
        t.port_security(Attachment(0)).unwrap().is_empty(),
        "no port yet"
    );
    assert!(
        t.port_security(Attachment(1)).is_none(),
        "off on the provider's"
    );
    assert!(!t.admits_port(Attachment(0), vm, mac));
    let usub = w
        .reg
        .read()
        .subnets
        .values()
        .find(|s| s.project_id.as_str() == "pu")
        .unwrap()
        .id
        .clone();
    let port = w
        .reg
        .create_port(
            &w.user,
            cmd(CreatePort {
                name: None,
                subnet_id: Some(usub.to_string()),
                ip: Some("10.0.0.5".into()),
                server_type: Some("VM".into()),
                mac_address: Some("02:00:00:00:00:05".into()),
            }),
        )
        .unwrap();
    let t = w.sync();
    assert!(
        t.admits_port(Attachment(0), vm, mac),
        "a new port is live with the next push"
    );
    assert!(!t.admits_port(
        Attachment(0),
        vm,
        dataplane::wire::ethernet::MacAddr([2, 0, 0, 0, 0, 6])
    ));
    assert_eq!(t.port_security(Attachment(0)).unwrap().len(), 1);
    w.reg.delete_port(&w.user, &port.id).unwrap();
    assert!(
        !w.sync().admits_port(Attachment(0), vm, mac),
        "a deleted one is gone"
    );
}

#[test]
fn only_endpoints_of_attached_vpcs_are_metered_here() {
    let mut w = world();
    // A second VPC of the user's that this node does not attach, with an endpoint.
    let other = w
        .reg
        .create_vpc(
            &w.user,
            cmd(CreateVpc {
                name: None,
                cidr: Some("10.1.0.0/16".into()),
            }),
        )
        .unwrap();
    let osub = w
        .reg
        .create_subnet(
            &w.user,
            cmd(CreateSubnet {
                name: None,
                vpc_id: Some(other.id.to_string()),
                cidr: Some("10.1.0.0/24".into()),
                gateway_ip: None,
                ip_version: None,
            }),
        )
        .unwrap();
    let body: CreateEndpoint = serde_json::from_value(serde_json::json!({"endpoint_service_id": w.svc, "vpc_id": other.id, "subnet_id": osub.id, "port_ip": "10.1.0.200"})).unwrap();
    let far = w.reg.create_endpoint(&w.user, cmd(body)).unwrap();
    w.sync();
    let rev = w.reg.revision();
    w.pusher.apply(&w.reg, &Touched::All, rev);
    let slots = w.pusher.slot_map().load_full();
    let metered: Vec<&str> = slots.values().map(|o| o.endpoint_id.as_str()).collect();
    assert_eq!(metered, [w.ep.as_str()], "not {}", far.id);
}
