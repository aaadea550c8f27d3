"""The official SDK over https: a vpcepd with api.tls_cert/api.tls_key, the SDK trusting the
test CA (control/tests/data/tls). Reads, a write through the rules, and a bad signature, each
over TLS; plain verification failures (an untrusted CA) are refused by the client."""

import os
import sys
import traceback

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException, SdkException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkvpcep.v1 import *  # noqa: F401,F403  (the SDK's request and body models)
from huaweicloudsdkvpcep.v1 import VpcepClient

URL = os.environ["VPCEP_TLS_URL"]
CA = os.environ["VPCEP_TLS_CA"]
STRANGER = ("STRANGERAK0000000001", "stranger-secret", "pstranger")

passed = 0
failed = 0


def check(name, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok   https: {name}")
    else:
        failed += 1
        print(f"FAIL https: {name} {detail}")


def client(sk=None, ca=CA):
    cfg = HttpConfig.get_default_config()
    cfg.ssl_ca_cert = ca
    return (VpcepClient.new_builder()
            .with_http_config(cfg)
            .with_credentials(BasicCredentials(STRANGER[0], sk or STRANGER[1], STRANGER[2]))
            .with_endpoints([URL])
            .build())


def expect_error(name, fn, status, code):
    try:
        fn()
    except ClientRequestException as e:
        check(name, e.status_code == status and e.error_code == code, f"{e.status_code} {e.error_code}")
        return
    check(name, False, "no error")


def story():
    c = client()
    q = c.list_quota_details(ListQuotaDetailsRequest())
    check("list_quota_details", len(q.quotas.resources) > 0)
    s = c.list_endpoint_service(ListEndpointServiceRequest())
    check("list_endpoint_service", s.total_count == 0)
    expect_error("a write reaches the rules (unknown VPC -> EndPoint.0020)", lambda: c.create_endpoint_service(
        CreateEndpointServiceRequest(body=CreateEndpointServiceRequestBody(
            vpc_id="no-such-vpc", port_id="no-such-port", server_type="VM",
            ports=[PortList(client_port=80, server_port=80, protocol="TCP")]))), 400, "EndPoint.0020")
    expect_error("wrong SK -> 401 APIGW.0301", lambda: client(sk="wrong").list_endpoint_service(
        ListEndpointServiceRequest()), 401, "APIGW.0301")
    try:
        # The server's own (leaf) certificate as the only trust anchor: no CA signs it there.
        leaf = os.path.join(os.path.dirname(CA), "cert.pem")
        client(ca=leaf).list_endpoint_service(ListEndpointServiceRequest())
        check("an untrusted certificate is refused by the client", False, "answered")
    except SdkException:
        check("an untrusted certificate is refused by the client", True)


if __name__ == "__main__":
    try:
        story()
    except Exception:  # any unexpected SDK error is a failure, shown in full
        traceback.print_exc()
        failed += 1
    print(f"conformance: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
