#!/usr/bin/env python3
"""Conformance: the official Huawei Cloud SDK (huaweicloudsdkvpcep, unchanged) drives a
running vpcepd through a whole provider and user story with two tenants, plus negative
cases. Inventory (VPCs, subnets, ports) has no SDK of its own here, so it goes through
vpcepctl. Prints one line per check and a closing 'conformance: N passed, N failed'.

Environment: VPCEP_URL, VPCEPCTL (path), and the three tenants' keys as in credentials.
"""
import json
import os
import subprocess
import sys
import time
import traceback

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkvpcep.v1 import *  # noqa: F401,F403  (the SDK's request and body models)
from huaweicloudsdkvpcep.v1 import VpcepClient

URL = os.environ["VPCEP_URL"]
CTL = os.environ["VPCEPCTL"]
PROVIDER = ("PROVIDERAK0000000001", "provider-secret", "pprovider", "dprovider")
USER = ("USERAK00000000000001", "user-secret", "puser", "duser")
STRANGER = ("STRANGERAK0000000001", "stranger-secret", "pstranger", "dstranger")

passed = 0
failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   {name}")
    else:
        failed += 1
        print(f"FAIL {name} {detail}")


def client(t, sk=None):
    return (VpcepClient.new_builder()
            .with_http_config(HttpConfig.get_default_config())
            .with_credentials(BasicCredentials(t[0], sk or t[1], t[2]))
            .with_endpoints([URL])
            .build())


def ctl(t, *args):
    env = dict(os.environ, VPCEP_ENDPOINT=URL, VPCEP_AK=t[0], VPCEP_SK=t[1], VPCEP_PROJECT_ID=t[2])
    out = subprocess.run([CTL, "-o", "json", *args], env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def expect_error(name, fn, status, code):
    try:
        fn()
    except ClientRequestException as e:
        check(name, e.status_code == status and e.error_code == code,
              f"got {e.status_code} {e.error_code} {e.error_msg}")
        check(name + " has a request id", bool(e.request_id))
        return
    check(name, False, "no error raised")


def tag_story(p, u, x, sid, eid, full_name):
    """Operations 26-28 (tags) and the duration tag, through the SDK's own request models."""
    def action(c, rtype, rid, act, tags):
        return c.batch_add_or_remove_resource_instance(BatchAddOrRemoveResourceInstanceRequest(
            resource_type=rtype, resource_id=rid, body=BatchAddOrRemoveResourceInstanceRequestBody(
                action=act, tags=[ResourceTag(key=k, value=v) for k, v in tags])))

    r = action(p, "endpoint_service", sid, "create", [("env", "prod"), ("team", "net")])
    check("batch_add_or_remove_resource_instance(create) -> 204", r.status_code == 204)
    shown = p.list_service_details(ListServiceDetailsRequest(vpc_endpoint_service_id=sid))
    got = sorted((t.key, t.value) for t in shown.tags)
    check("tags changed after create (env replaced, team added)", got == [("env", "prod"), ("team", "net")], str(got))
    r = p.list_query_project_resource_tags(ListQueryProjectResourceTagsRequest(resource_type="endpoint_service"))
    got = [(t.key, t.values) for t in r.tags]
    check("list_query_project_resource_tags", got == [("env", ["prod"]), ("team", ["net"])], str(got))

    def instances(c, rtype, **kw):
        return c.list_resource_instances(ListResourceInstancesRequest(
            resource_type=rtype, body=QueryResourceInstanceTagsBody(**kw)))

    r = instances(p, "endpoint_service", action="filter", tags=[TagValuesList(key="env", values=["prod", "dev"])],
                  matches=[Match(key="resource_name", value="RENAMED")], limit="10", offset="0")
    check("list_resource_instances(filter)", r.total_count == 1 and r.resources[0].resource_id == sid
          and r.resources[0].resource_name == full_name, str(r))
    r = instances(p, "endpoint_service", action="filter", limit="1", offset="1")
    check("list_resource_instances paging", r.total_count == 1 and r.resources == [], str(r))
    r = instances(p, "endpoint_service", action="count", not_tags_any=[TagValuesList(key="team", values=[])])
    check("list_resource_instances(count, not_tags_any)", r.total_count == 0 and r.resources is None, str(r))
    r = instances(x, "endpoint_service", action="count")
    check("another tenant counts none of them", r.total_count == 0)
    action(p, "endpoint_service", sid, "delete", [("team", None)])
    shown = p.list_service_details(ListServiceDetailsRequest(vpc_endpoint_service_id=sid))
    check("batch_add_or_remove_resource_instance(delete)", [(t.key, t.value) for t in shown.tags] == [("env", "prod")])

    expect_error("another tenant cannot tag the service", lambda: action(
        x, "endpoint_service", sid, "create", [("k", "v")]), 404, "EndPoint.0005")
    expect_error("the provider cannot tag the user's endpoint", lambda: action(
        p, "endpoint", eid, "create", [("k", "v")]), 404, "EndPoint.2006")
    expect_error("bad resource_type -> EndPoint.3070", lambda: action(
        p, "vpc", sid, "create", [("k", "v")]), 400, "EndPoint.3070")
    expect_error("bad tag action -> EndPoint.0007", lambda: action(
        p, "endpoint_service", sid, "replace", [("k", "v")]), 400, "EndPoint.0007")
    expect_error("duplicate tag keys -> EndPoint.3067", lambda: action(
        p, "endpoint_service", sid, "create", [("k", "1"), ("k", "2")]), 400, "EndPoint.3067")
    expect_error("tag characters -> EndPoint.3068", lambda: action(
        p, "endpoint_service", sid, "create", [("a<b", "v")]), 400, "EndPoint.3068")
    expect_error("too many tags in one action -> EndPoint.3069", lambda: action(
        p, "endpoint_service", sid, "create", [(f"k{i}", "") for i in range(11)]), 400, "EndPoint.3069")

    # The duration: the SDK has no field for it, so it travels as the reserved tag
    # vpcep:duration; each create of it extends the endpoint by that many seconds.
    action(u, "endpoint", eid, "create", [("vpcep:duration", "3600"), ("app", "db")])
    first = {t.key: t.value for t in u.list_endpoint_info_details(
        ListEndpointInfoDetailsRequest(vpc_endpoint_id=eid)).tags}
    check("the duration tag sets an expiry", "vpcep:expires_at" in first and first["app"] == "db", str(first))
    action(u, "endpoint", eid, "create", [("vpcep:duration", "60")])
    ep = u.list_endpoint_info_details(ListEndpointInfoDetailsRequest(vpc_endpoint_id=eid))
    after = {t.key: t.value for t in ep.tags}

    def secs(s):
        return time.mktime(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))
    check("the duration tag extends by its value", secs(after["vpcep:expires_at"]) - secs(first["vpcep:expires_at"]) == 60
          and ep.active_status == ["active"], str(after))
    r = instances(u, "endpoint", action="filter", tags=[TagValuesList(key="app", values=["db"])])
    check("list_resource_instances(endpoint)", r.total_count == 1 and r.resources[0].resource_id == eid)
    action(u, "endpoint", eid, "delete", [("vpcep:duration", None)])
    ep = u.list_endpoint_info_details(ListEndpointInfoDetailsRequest(vpc_endpoint_id=eid))
    check("deleting the duration tag ends the expiry", [(t.key, t.value) for t in ep.tags] == [("app", "db")])


def gateway_story(u, x, uvpc):
    """The operator's gateway service (run.sh configures `obs`): public, described, and a
    gateway endpoint with route tables, through the SDK's own models."""
    pub = u.list_service_public_details(ListServicePublicDetailsRequest(endpoint_service_name="obs"))
    g = pub.endpoint_services[0] if pub.total_count == 1 else None
    check("list_service_public_details shows the gateway service", g is not None and g.service_type == "gateway"
          and g.service_name == f"region-1.obs.{g.id}", str(pub))
    d = x.list_service_describe_details(ListServiceDescribeDetailsRequest(endpoint_service_name=g.service_name))
    check("list_service_describe_details of a gateway service (any account)", d.id == g.id and d.service_type == "gateway")
    ep = u.create_endpoint(CreateEndpointRequest(body=CreateEndpointRequestBody(
        endpoint_service_id=g.id, vpc_id=uvpc, routetables=["rtb-main"], enable_dns=True)))
    check("create_endpoint (gateway) -> accepted", ep.status == "accepted" and ep.service_type == "gateway"
          and ep.routetables == ["rtb-main"] and ep.enable_dns is False, str(ep))
    r = u.update_endpoint_routetable(UpdateEndpointRoutetableRequest(
        vpc_endpoint_id=ep.id, body=UpdateEndpointRoutetableRequestBody(routetables=["rtb-a", "rtb-b"])))
    check("update_endpoint_routetable", r.routetables == ["rtb-a", "rtb-b"], str(r))
    shown = u.list_endpoint_info_details(ListEndpointInfoDetailsRequest(vpc_endpoint_id=ep.id))
    check("list_endpoint_info_details (gateway)", shown.service_type == "gateway"
          and shown.endpoint_service_name == g.service_name and shown.routetables == ["rtb-a", "rtb-b"])
    r = u.delete_endpoint(DeleteEndpointRequest(vpc_endpoint_id=ep.id))
    check("delete_endpoint (gateway) -> 204", r.status_code == 204)


def story():
    p, u, x = client(PROVIDER), client(USER), client(STRANGER)
    # Provider inventory (same CIDR on both sides: overlap is supported).
    pvpc = ctl(PROVIDER, "vpc", "create", "--cidr", "10.0.0.0/16")["vpc"]["id"]
    psub = ctl(PROVIDER, "subnet", "create", "--vpc", pvpc, "--cidr", "10.0.0.0/24")["subnet"]["id"]
    pport = ctl(PROVIDER, "port", "create", "--subnet", psub, "--type", "VM", "--ip", "10.0.0.10")["port"]["id"]
    uvpc = ctl(USER, "vpc", "create", "--cidr", "10.0.0.0/16")["vpc"]["id"]
    usub = ctl(USER, "subnet", "create", "--vpc", uvpc, "--cidr", "10.0.0.0/24")["subnet"]["id"]

    v = p.list_version_details(ListVersionDetailsRequest())
    check("list_version_details", v.versions[0].id == "v1")

    body = CreateEndpointServiceRequestBody(
        port_id=pport, vpc_id=pvpc, service_name="demo_svc", server_type="VM", approval_enabled=True,
        service_type="interface", tcp_proxy="close", description="conformance",
        ports=[PortList(client_port=8080, server_port=80, protocol="TCP")],
        tags=[TagList(key="env", value="test")])
    svc = p.create_endpoint_service(CreateEndpointServiceRequest(body=body))
    check("create_endpoint_service", svc.status == "available" and svc.service_name == f"region-1.demo_svc.{svc.id}",
          str(svc))
    sid = svc.id

    shown = p.list_service_details(ListServiceDetailsRequest(vpc_endpoint_service_id=sid))
    check("list_service_details", shown.ports[0].server_port == 80 and shown.approval_enabled is True)

    listed = p.list_endpoint_service(ListEndpointServiceRequest(endpoint_service_name="a b+c/ü", limit=5, offset=0))
    check("list_endpoint_service with an encoded name", listed.total_count == 0)
    listed = p.list_endpoint_service(ListEndpointServiceRequest(endpoint_service_name="demo", sort_key="update_at", sort_dir="asc"))
    check("list_endpoint_service", listed.total_count == 1 and listed.endpoint_services[0].id == sid)

    # Invisible to the user until whitelisted.
    expect_error("describe before whitelisting", lambda: u.list_service_describe_details(
        ListServiceDescribeDetailsRequest(endpoint_service_name=svc.service_name)), 404, "EndPoint.0005")
    expect_error("create_endpoint unwhitelisted -> EndPoint.2012", lambda: u.create_endpoint(CreateEndpointRequest(
        body=CreateEndpointRequestBody(endpoint_service_id=sid, vpc_id=uvpc, subnet_id=usub))), 400, "EndPoint.2012")

    r = p.add_or_remove_service_permissions(AddOrRemoveServicePermissionsRequest(
        vpc_endpoint_service_id=sid, body=AddOrRemoveServicePermissionsRequestBody(
            permissions=["iam:domain::duser"], permission_type="domainId", action="add")))
    check("add_or_remove_service_permissions(add)", r.permissions == ["iam:domain::duser"])
    perms = p.list_service_permissions_details(ListServicePermissionsDetailsRequest(vpc_endpoint_service_id=sid))
    check("list_service_permissions_details", perms.total_count == 1 and perms.permissions[0].permission == "iam:domain::duser")

    d = u.list_service_describe_details(ListServiceDescribeDetailsRequest(endpoint_service_name=svc.service_name))
    check("list_service_describe_details by full name (user)", d.id == sid and d.is_charge is False)
    pub = u.list_service_public_details(ListServicePublicDetailsRequest(endpoint_service_name="demo_svc"))
    check("list_service_public_details", pub.total_count == 1 and pub.endpoint_services[0].owner == "dprovider")

    ep = u.create_endpoint(CreateEndpointRequest(body=CreateEndpointRequestBody(
        endpoint_service_id=sid, vpc_id=uvpc, subnet_id=usub, enable_dns=True, port_ip="10.0.0.200",
        whitelist=["10.0.0.0/24"], enable_whitelist=True, description="conformance-ep")))
    check("create_endpoint -> pendingAcceptance", ep.status == "pendingAcceptance" and ep.ip == "10.0.0.200", str(ep))
    eid = ep.id

    conns = p.list_service_connections(ListServiceConnectionsRequest(vpc_endpoint_service_id=sid, status="pendingAcceptance"))
    check("list_service_connections(pendingAcceptance)", conns.total_count == 1 and conns.connections[0].id == eid
          and conns.connections[0].marker_id == ep.marker_id and conns.connections[0].domain_id == "duser")

    expect_error("the user cannot accept its own connection", lambda: u.accept_or_reject_endpoint(
        AcceptOrRejectEndpointRequest(vpc_endpoint_service_id=sid, body=AcceptOrRejectEndpointRequestBody(
            action="receive", endpoints=[eid]))), 404, "EndPoint.0005")
    for i, (action, want) in enumerate([("receive", "accepted"), ("reject", "rejected"), ("receive", "accepted")]):
        if i == 2:
            # The same write again: within the same X-Sdk-Date second its signature would be
            # the first one's, which the server refuses as a replay. Move to the next second.
            time.sleep(1.05 - time.time() % 1)
        r = p.accept_or_reject_endpoint(AcceptOrRejectEndpointRequest(
            vpc_endpoint_service_id=sid, body=AcceptOrRejectEndpointRequestBody(action=action, endpoints=[eid])))
        shown = u.list_endpoint_info_details(ListEndpointInfoDetailsRequest(vpc_endpoint_id=eid))
        check(f"accept_or_reject_endpoint({action}) -> {want}", r.connections[0].status == want and shown.status == want)
    check("list_endpoint_info_details dns_names", shown.dns_names == ["10-0-0-200.vpcep.region-1.internal"], str(shown.dns_names))

    r = p.update_endpoint_connections_desc(UpdateEndpointConnectionsDescRequest(
        vpc_endpoint_service_id=sid, body=UpdateEndpointConnectionsDescRequestBody(
            connections=[ConnectionsDesc(id=eid, description="ok by ops")])))
    check("update_endpoint_connections_desc", r.connections[0].description == "ok by ops")

    eps = u.list_endpoints(ListEndpointsRequest(endpoint_service_name="demo_svc"))
    check("list_endpoints", eps.total_count == 1 and eps.endpoints[0].id == eid)
    w = u.update_endpoint_white(UpdateEndpointWhiteRequest(vpc_endpoint_id=eid, body=UpdateEndpointWhiteRequestBody(
        whitelist=["192.0.2.0/24"], enable_whitelist=True)))
    check("update_endpoint_white", w.whitelist == ["192.0.2.0/24"])

    q = u.list_quota_details(ListQuotaDetailsRequest(type="endpoint"))
    check("list_quota_details", q.quotas.resources[0].type == "endpoint" and q.quotas.resources[0].used == 1)

    up = p.update_endpoint_service(UpdateEndpointServiceRequest(vpc_endpoint_service_id=sid, body=UpdateEndpointServiceRequestBody(
        approval_enabled=False, ports=[PortList(client_port=8080, server_port=80, protocol="TCP"),
                                       PortList(client_port=5353, server_port=53, protocol="UDP")])))
    check("update_endpoint_service (UDP mapping)", up.approval_enabled is False and len(up.ports) == 2)
    tp = p.update_endpoint_service(UpdateEndpointServiceRequest(vpc_endpoint_service_id=sid, body=UpdateEndpointServiceRequestBody(
        tcp_proxy="proxy_open")))
    check("update_endpoint_service (tcp_proxy proxy_open)", tp.tcp_proxy == "proxy_open")
    tp = p.update_endpoint_service(UpdateEndpointServiceRequest(vpc_endpoint_service_id=sid, body=UpdateEndpointServiceRequestBody(
        tcp_proxy="close")))
    check("update_endpoint_service (tcp_proxy close)", tp.tcp_proxy == "close")
    n = p.update_endpoint_service_name(UpdateEndpointServiceNameRequest(
        vpc_endpoint_service_id=sid, body=UpdateEndpointServiceNameRequestBody(endpoint_service_name="renamed")))
    check("update_endpoint_service_name", n.endpoint_service_name == f"region-1.renamed.{sid}")

    tag_story(p, u, x, sid, eid, n.endpoint_service_name)

    # Negative cases.
    expect_error("the stranger cannot connect -> EndPoint.2012", lambda: x.create_endpoint(CreateEndpointRequest(
        body=CreateEndpointRequestBody(endpoint_service_id=sid, vpc_id=uvpc, subnet_id=usub))), 400, "EndPoint.2012")
    expect_error("the stranger cannot see the service", lambda: x.list_service_details(
        ListServiceDetailsRequest(vpc_endpoint_service_id=sid)), 404, "EndPoint.0005")
    expect_error("wrong SK -> 401 APIGW.0301", lambda: client(USER, sk="wrong").list_endpoints(ListEndpointsRequest()),
                 401, "APIGW.0301")
    expect_error("live connections block the service's deletion", lambda: p.delete_endpoint_service(
        DeleteEndpointServiceRequest(vpc_endpoint_service_id=sid)), 400, "EndPoint.3006")

    r = u.delete_endpoint(DeleteEndpointRequest(vpc_endpoint_id=eid))
    check("delete_endpoint -> 204", r.status_code == 204)
    r = p.delete_endpoint_service(DeleteEndpointServiceRequest(vpc_endpoint_service_id=sid))
    check("delete_endpoint_service -> 204", r.status_code == 204)
    expect_error("deleted service is gone", lambda: p.list_service_details(
        ListServiceDetailsRequest(vpc_endpoint_service_id=sid)), 404, "EndPoint.0005")

    gateway_story(u, x, uvpc)


if __name__ == "__main__":
    try:
        story()
    except Exception:  # any unexpected SDK error is a failure, shown in full
        traceback.print_exc()
        failed += 1
    print(f"conformance: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
