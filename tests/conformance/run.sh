#!/usr/bin/env bash
# The SDK conformance run: a venv with the official SDK, a vpcepd on a temporary data
# directory and loopback ports, the story script, and cleanup of everything it started.
# Usage: tests/conformance/run.sh [path-to-target-dir]   (binaries from `cargo build`)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
target="${1:-$root/target/debug}"
venv="$root/.venv"
if ! "$venv/bin/python" -c 'import huaweicloudsdkvpcep' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'huaweicloudsdkvpcep==3.1.219' 'huaweicloudsdkcore==3.1.219'
fi
work="$(mktemp -d /tmp/vpcep-conformance.XXXXXX)"
pid=""
tls_pid=""
cleanup() {
  for p in "$pid" "$tls_pid"; do
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then kill "$p"; wait "$p" 2>/dev/null || true; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT
cat > "$work/credentials.toml" <<CREDS
[[credentials]]
ak = "PROVIDERAK0000000001"
sk = "provider-secret"
domain_id = "dprovider"
project_id = "pprovider"

[[credentials]]
ak = "USERAK00000000000001"
sk = "user-secret"
domain_id = "duser"
project_id = "puser"

[[credentials]]
ak = "STRANGERAK0000000001"
sk = "stranger-secret"
domain_id = "dstranger"
project_id = "pstranger"
CREDS
port=$(( 20000 + RANDOM % 20000 ))
cat > "$work/vpcepd.toml" <<CONF
data_dir = "$work/data"
credentials = "$work/credentials.toml"
api_listen = "127.0.0.1:$port"
admin_listen = "127.0.0.1:$((port + 1))"

[[gateway_services]]
name = "obs"
prefixes = ["100.125.0.0/16"]
vpc_id = "operator-vpc"
CONF
"$target/vpcepd" --config "$work/vpcepd.toml" >"$work/vpcepd.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$((port + 1))/healthz" >/dev/null; then break; fi
  kill -0 "$pid" 2>/dev/null || { cat "$work/vpcepd.log"; exit 1; }
  sleep 0.1
done
export NO_PROXY=127.0.0.1,localhost VPCEP_URL="http://127.0.0.1:$port" VPCEPCTL="$target/vpcepctl"
export HOME="$work"   # the SDK writes ~/.huaweicloud/application_id
"$venv/bin/python" "$here/sdk_story.py"

# The same SDK over https: a second daemon with the API on TLS (the test CA and certificate
# of control/tests/data/tls), the client trusting that CA.
tls="$root/control/tests/data/tls"
tls_port=$(( port + 2 ))
cat > "$work/vpcepd-tls.toml" <<CONF
data_dir = "$work/data-tls"
credentials = "$work/credentials.toml"
api_listen = "127.0.0.1:$tls_port"
admin_listen = "127.0.0.1:$((tls_port + 1))"

[api]
tls_cert = "$tls/cert.pem"
tls_key = "$tls/key.pem"
CONF
"$target/vpcepd" --config "$work/vpcepd-tls.toml" >"$work/vpcepd-tls.log" 2>&1 &
tls_pid=$!
for _ in $(seq 1 100); do
  if curl -sf "http://127.0.0.1:$((tls_port + 1))/healthz" >/dev/null; then break; fi
  kill -0 "$tls_pid" 2>/dev/null || { cat "$work/vpcepd-tls.log"; exit 1; }
  sleep 0.1
done
VPCEP_TLS_URL="https://127.0.0.1:$tls_port" VPCEP_TLS_CA="$tls/ca.pem" \
  "$venv/bin/python" "$here/sdk_tls.py"
