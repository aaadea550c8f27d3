#!/usr/bin/env bash
# The benchmarks as BENCHMARKS.md records them; installs what they need (as root).
#   bash bench.sh                 pktbench, apibench, e2ebench and clusterbench, in turn
#   bash bench.sh e2ebench [...]  one of them, with its own flags (e.g. --io af_xdp
#                                 --offloads-off-only, --rx tpacket_v3, --workers 2;
#                                 --identity: vpcepd proxy_open vs HAProxy send-proxy-v2)
set -euo pipefail
cd "$(dirname "$0")"
need=()
for pkg in iproute2 curl ethtool iperf3 nftables python3 haproxy etcd-server; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
run() { cargo run --release --quiet -p bench --bin "$1" -- --json "${@:2}"; }
case "${1:-all}" in
  all) run pktbench; run apibench; run e2ebench; run clusterbench ;;
  pktbench|apibench|e2ebench|clusterbench) run "$@" ;;
  *) echo "usage: bash bench.sh [pktbench|apibench|e2ebench|clusterbench] [flags]" >&2; exit 2 ;;
esac
