#!/usr/bin/env bash
# vpcep demo: a user VPC and a provider VPC with the same CIDR (10.0.0.0/24), a node
# running vpcepd on its embedded defaults, a real HTTP backend, and curl through an
# endpoint. Run as root:   bash demo.sh            (add --keep to leave the world running)
set -euo pipefail
cd "$(dirname "$0")"
keep=0
[ "${1:-}" = "--keep" ] && keep=1
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (it creates network namespaces)"; exit 1; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
need=()
for c in ip:iproute2 curl:curl python3:python3 socat:socat; do
  command -v "${c%%:*}" >/dev/null || need+=("${c#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

say "building vpcepd and vpcepctl (release)"
cargo build --release --quiet -p control --bins
bin="$PWD/target/release"

P="vpdemo$$"
work="$(mktemp -d /tmp/vpcep-demo.XXXXXX)"
pids=()
cleanup() {
  set +e
  for p in "${pids[@]:-}"; do
    [ -n "$p" ] || continue
    kill "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  for ns in user prov node; do ip netns del "$P-$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
if [ $keep = 0 ]; then trap cleanup EXIT; else trap 'echo; echo "kept: namespaces $P-{user,prov,node}, files $work; remove with: kill ${fwd:-} ${pids[*]:-}; ip netns del $P-user; ip netns del $P-prov; ip netns del $P-node"' EXIT; fi

say "namespaces: $P-user (client 10.0.0.5), $P-prov (backend 10.0.0.10), $P-node (vpcepd)"
for ns in user prov node; do
  ip netns add "$P-$ns"
  ip -n "$P-$ns" link set lo up
  ip netns exec "$P-$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip link add eth0 netns "$P-user" type veth peer name "${P}u" netns "$P-node"
ip link add eth0 netns "$P-prov" type veth peer name "${P}p" netns "$P-node"
for pair in "user eth0" "prov eth0" "node ${P}u" "node ${P}p"; do
  set -- $pair
  # Offloads stay at the veth defaults (TSO/GSO, partial checksums): the daemon's vnet
  # headers carry super-frames through whole.
  ip -n "$P-$1" link set "$2" up
done
ip -n "$P-user" addr add 10.0.0.5/24 dev eth0
ip -n "$P-prov" addr add 10.0.0.10/24 dev eth0
ip -n "$P-prov" route add 198.19.128.0/17 dev eth0   # the SNAT range is on-link in the provider VPC
ip netns exec "$P-node" sysctl -qw net.ipv4.ip_forward=0

# The console's users (user guide 6.2: a user name and a password), one per tenant.
PROVIDER_PW="demo provider pass"
USER_PW="demo user pass"
provider_hash=$(printf '%s\n' "$PROVIDER_PW" | "$bin/vpcepctl" hash-password)
user_hash=$(printf '%s\n' "$USER_PW" | "$bin/vpcepctl" hash-password)
cat > "$work/credentials.toml" <<CREDS
[[credentials]]
ak = "DEMOPROVIDERAK000001"
sk = "demo-provider-secret"
domain_id = "provideraccount"
project_id = "provider-project"

[[credentials]]
ak = "DEMOUSERAK0000000001"
sk = "demo-user-secret"
domain_id = "useraccount"
project_id = "user-project"

[[users]]
name = "provider-admin"
password_hash = "$provider_hash"
domain_id = "provideraccount"
project_id = "provider-project"

[[users]]
name = "user-admin"
password_hash = "$user_hash"
domain_id = "useraccount"
project_id = "user-project"
CREDS

# Embedded defaults but for where the store and the credentials live; attachments are added
# to this file later and taken by a live reload.
printf 'data_dir = "%s"\ncredentials = "%s"\n' "$work/data" "$work/credentials.toml" > "$work/vpcepd.toml"

start_daemon() {
  ip netns exec "$P-node" "$bin/vpcepd" --config "$work/vpcepd.toml" "$@" \
    >>"$work/vpcepd.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    ip netns exec "$P-node" curl -sf -m 1 http://127.0.0.1:9798/healthz >/dev/null && return 0
    sleep 0.1
  done
  cat "$work/vpcepd.log"; exit 1
}
provider() { ip netns exec "$P-node" env VPCEP_AK=DEMOPROVIDERAK000001 VPCEP_SK=demo-provider-secret VPCEP_PROJECT_ID=provider-project "$bin/vpcepctl" "$@"; }
user() { ip netns exec "$P-node" env VPCEP_AK=DEMOUSERAK0000000001 VPCEP_SK=demo-user-secret VPCEP_PROJECT_ID=user-project "$bin/vpcepctl" "$@"; }
id_of() { python3 -c 'import json,sys; d=json.load(sys.stdin); print((d.get(sys.argv[1]) or d)["id"])' "$1"; }

say "vpcepd on its embedded defaults (API 127.0.0.1:9797, admin :9798 in $P-node)"
start_daemon

say "inventory: each tenant's VPC and subnet, the provider's VM port (10.0.0.10)"
PVPC=$(provider -o json vpc create --name provider-vpc --cidr 10.0.0.0/16 | id_of vpc)
PSUB=$(provider -o json subnet create --vpc "$PVPC" --cidr 10.0.0.0/24 | id_of subnet)
PPORT=$(provider -o json port create --subnet "$PSUB" --type VM --ip 10.0.0.10 | id_of port)
UVPC=$(user -o json vpc create --name user-vpc --cidr 10.0.0.0/16 | id_of vpc)
USUB=$(user -o json subnet create --vpc "$UVPC" --cidr 10.0.0.0/24 | id_of subnet)
provider vpc list; user subnet list

say "attach the two VPCs to the node's interfaces: edit the config, reload it live (no restart; SIGHUP does the same)"
printf '\n[[attachments]]\ninterface = "%s"\nvpc_id = "%s"\n' "${P}u" "$UVPC" "${P}p" "$PVPC" >> "$work/vpcepd.toml"
ip netns exec "$P-node" curl -sS -f -m 30 -X POST http://127.0.0.1:9798/reload; echo

say "provider: endpoint service TCP 8080 -> 80 on the VM, approval required; whitelist the user"
SVC=$(provider -o json service create --vpc "$PVPC" --port "$PPORT" --type VM --map TCP:8080:80 --name web | id_of x)
provider service show "$SVC" | grep -E 'service_name|status|ports'
provider permission add "$SVC" iam:domain::useraccount

say "user: find the service by name, create endpoint 10.0.0.200 in the user VPC"
NAME=$(provider -o json service show "$SVC" | python3 -c 'import json,sys; print(json.load(sys.stdin)["service_name"])')
user service describe --name "$NAME"
EP=$(user -o json endpoint create --service "$SVC" --vpc "$UVPC" --subnet "$USUB" --ip 10.0.0.200 | id_of x)
user endpoint list

say "provider: the connection waits for acceptance; accept it"
provider connection list "$SVC"
provider connection accept "$SVC" "$EP"

say "backend: python3 -m http.server on 10.0.0.10:80"
mkdir -p "$work/www"; echo "Hello through vpcep: a private service reached from an overlapping VPC." > "$work/www/index.html"
ip netns exec "$P-prov" python3 -m http.server 80 --bind 10.0.0.10 --directory "$work/www" >"$work/http.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do ip netns exec "$P-prov" ss -ltnH 'sport = :80' | grep -q . && break; sleep 0.1; done

say "wait until the change is live in every worker (/status)"
for _ in $(seq 1 100); do
  st=$(ip netns exec "$P-node" curl -sf http://127.0.0.1:9798/status)
  echo "$st" | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s["applied_revision"]==s["revision"] and s["all_workers_current"] else 1)' && break
  sleep 0.05
done
echo "$st"

say "client (10.0.0.5 in the user VPC): curl http://10.0.0.200:8080/"
ip netns exec "$P-user" curl -sS -m 10 http://10.0.0.200:8080/
echo "backend saw: $(tail -1 "$work/http.log")"

say "client: a 20 MiB download at the veths' default offloads (TSO/GSO super-frames), checked by sha256"
head -c $((20 << 20)) /dev/urandom > "$work/www/big.bin"
want=$(sha256sum < "$work/www/big.bin" | cut -d' ' -f1)
got=$(ip netns exec "$P-user" curl -sS -m 30 http://10.0.0.200:8080/big.bin | sha256sum | cut -d' ' -f1)
echo "sha256 at the backend: $want"; echo "sha256 at the client:  $got"
[ "$want" = "$got" ] || { echo "demo.sh: the download differs"; exit 1; }

say "dataplane counters (/metrics)"
ip netns exec "$P-node" curl -sf http://127.0.0.1:9798/metrics | grep -E '^vpcep_(dataplane|conntrack)' | grep -v ' 0$'

say "the endpoint's own figures (Prometheus; and GET .../vpc-endpoints/{id}/metrics for its owner)"
# The figures are read from the workers once a second: wait for the download's.
for _ in $(seq 50); do
  ip netns exec "$P-node" curl -sf http://127.0.0.1:9798/metrics |
    grep -qE '^vpcep_endpoint_packets_total\{.*to_client.*\} [1-9]' && break
  sleep 0.1
done
ip netns exec "$P-node" curl -sf http://127.0.0.1:9798/metrics | grep -E '^vpcep_endpoint_(packets|bytes)_total' || true

say "the console (user guide 6.2: sign in with a user name and a password)"
ip netns exec "$P-node" curl -sf -o /dev/null http://127.0.0.1:9797/console/ && echo "vpcepd serves the console at /console/ on its API listener"
sign_in=$(ip netns exec "$P-node" curl -sf -D - -o /dev/null -H 'content-type: application/json' \
  -d "{\"auth\":{\"identity\":{\"methods\":[\"password\"],\"password\":{\"user\":{\"name\":\"user-admin\",\"password\":\"$USER_PW\"}}}}}" \
  http://127.0.0.1:9797/v3/auth/tokens | grep -ci '^x-subject-token:' || true)
[ "$sign_in" = 1 ] && echo "user-admin signed in (a session token came back)"
if [ $keep = 1 ]; then
  # The API listens on the node namespace's loopback: a forwarder brings it to this host's.
  socat TCP-LISTEN:9797,bind=127.0.0.1,reuseaddr,fork \
    "EXEC:ip netns exec $P-node socat STDIO TCP\:127.0.0.1\:9797" >/dev/null 2>&1 &
  fwd=$!
  echo "console: http://127.0.0.1:9797/console/  (forwarder pid $fwd)"
  echo "  provider: provider-admin / $PROVIDER_PW"
  echo "  user:     user-admin / $USER_PW"
else
  echo "run bash demo.sh --keep to leave it up: console at http://127.0.0.1:9797/console/,"
  echo "provider-admin / $PROVIDER_PW, user-admin / $USER_PW"
fi

say "done"
[ $keep = 1 ] && echo "the world keeps running; drive it with: ip netns exec $P-node $bin/vpcepctl --help"
exit 0
