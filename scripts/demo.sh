#!/usr/bin/env bash
# The tutorial's story (shared/tutorial.md), told by vswitch on a throw-away testbed of network
# namespaces: an nginx pod and a busybox pod, `vswitchctl port list --all-nodes` in the role of
# `kubectl get pods -o wide`, `wget -qO- <nginx pod IP>` from busybox printing the nginx page,
# and the tutorial's service.yaml applied once with `vswitchctl apply -f`, its Service
# nginx-service reached by VIP and by name.
#
#   scripts/demo.sh [--per-node [--nodes 1|2]]        (as root; `make demo` builds and runs it)
#
# By default the cluster runs on a datastore: an etcd in the hub (198.19.0.254), three nodes
# started with `--datastore` and no `--pod-cidr`: each leases its subnet and finds the others
# through etcd (no `peer add`), and `apply -f` on one node stores the Service for all.
# With --per-node the story is the hand-programmed one: `peer add` on each node, the Service
# added on each node (a node's selector sees its own pods only), one or two nodes.
#
# Layout (design.md section 6 address plan only):
#   nodeN  netns <P>nN, underlay 198.19.0.N/24, pods 198.18.N.0/24
#   nginx-server (app=nginx) on node1, busybox-client on node2 (on node1 with --nodes 1)
#   the underlay: a bridge in netns <P>hub joining the nodes' veths; VXLAN between the daemons.
#
# Every name starts with a per-run prefix <P>; a trap removes everything on exit, error,
# Ctrl-C or SIGTERM.
set -euo pipefail

# The datastore story by default (DEMO_PER_NODE=1 make demo, or --per-node: the other one).
PER_NODE="${DEMO_PER_NODE:-0}"
NODES="${DEMO_NODES:-}"

while [[ $# -gt 0 ]]; do
    case "$1" in
        --per-node) PER_NODE=1; shift ;;
        --nodes) NODES="${2:?--nodes needs 1 or 2}"; shift 2 ;;
        --nodes=*) NODES="${1#--nodes=}"; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "demo.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
if [[ "$PER_NODE" == 1 ]]; then
    NODES="${NODES:-2}"
    [[ "$NODES" == 1 || "$NODES" == 2 ]] || { echo "demo.sh: --nodes must be 1 or 2" >&2; exit 2; }
else
    [[ -z "$NODES" ]] || { echo "demo.sh: --nodes goes with --per-node (the datastore story has 3 nodes)" >&2; exit 2; }
    NODES=3
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${VSWITCH_BIN_DIR:-$ROOT/target/release}"
for b in vswitchd vswitchctl; do
    [[ -x "$BIN/$b" ]] || { echo "demo.sh: $BIN/$b not found: run \`make build\` first" >&2; exit 1; }
done
[[ $EUID -eq 0 ]] || { echo "demo.sh: must run as root (it creates network namespaces)" >&2; exit 1; }
TOOLS="ip nginx busybox"
[[ "$PER_NODE" == 1 ]] || TOOLS="$TOOLS etcd etcdctl"
for t in $TOOLS; do
    command -v "$t" >/dev/null || { echo "demo.sh: $t is missing: run \`make deps\`" >&2; exit 1; }
done

# A per-run prefix no existing namespace uses.
while :; do
    # `vz`: z is no hex digit, so no test testbed's prefix (v + 4 hex) can match these names.
    P="vz$(printf '%04x' $(( (RANDOM << 1 ^ $$) & 0xffff )))"
    ip netns list | grep -q "^$P" || break
done
TMP="$(mktemp -d /tmp/vswitch-demo.XXXXXX)"
HUB="${P}hub"
NETNS=()        # created namespaces, in creation order
DAEMONS=()      # vswitchd pids
NGINX_PID=""

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    [[ -n "$NGINX_PID" ]] && kill "$NGINX_PID" 2>/dev/null
    for pid in "${DAEMONS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${DAEMONS[@]}"; do
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    for (( i=${#NETNS[@]}-1; i>=0; i-- )); do
        ns="${NETNS[$i]}"
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf /etc/netns/"$P"-* "$TMP"
    if [[ $rc -ne 0 ]]; then
        echo >&2
        echo "demo.sh: failed (exit $rc); cleaned up everything it had created" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- printing --------------------------------------------------------------------------------
if [[ -t 1 ]]; then B=$'\033[1m' G=$'\033[32m' R=$'\033[0m'; else B="" G="" R=""; fi
section() { printf '\n%s### %s%s\n' "$B" "$*" "$R"; }
say() { printf '%s\n' "$*"; }
# prompt WHERE CMD...: prints the command as a person would type it.
prompt() { local where="$1"; shift; printf '%s%s$%s %s\n' "$G" "$where" "$R" "$*"; }

# ctl N ARGS...: runs vswitchctl against node N's daemon, printing the command and its output.
ctl() {
    local n="$1"; shift
    prompt "node$n " vswitchctl "$@"
    VSWITCH_SOCKET="$TMP/node$n.sock" "$BIN/vswitchctl" "$@"
}
# ctlq N ARGS...: the same, silently (for values the script needs).
ctlq() { local n="$1"; shift; VSWITCH_SOCKET="$TMP/node$n.sock" "$BIN/vswitchctl" "$@"; }
json_field() { sed -n "s/^ *\"$1\": *\"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" | head -n1; }

# --- the testbed -----------------------------------------------------------------------------
add_netns() { ip netns add "$1"; NETNS+=("$1"); ip -n "$1" link set lo up; }

add_node() {
    local n="$1" ns="${P}n$1"
    add_netns "$ns"
    if [[ ! " ${NETNS[*]} " =~ " $HUB " ]]; then
        add_netns "$HUB"
        ip -n "$HUB" link add "${P}br" type bridge
        ip -n "$HUB" link set "${P}br" up
    fi
    ip link add "${P}u$n" netns "$ns" type veth peer name "${P}h$n" netns "$HUB"
    ip -n "$HUB" link set "${P}h$n" master "${P}br" up
    ip -n "$ns" addr add "198.19.0.$n/24" dev "${P}u$n"
    ip -n "$ns" link set "${P}u$n" up
    local subnet=(--pod-cidr "198.18.$n.0/24")
    [[ "$PER_NODE" == 1 ]] || subnet=(--datastore "etcd://$ETCD_IP:2379" --cluster-cidr 198.18.0.0/16)
    ip netns exec "$ns" "$BIN/vswitchd" --node "node$n" "${subnet[@]}" \
        --underlay "198.19.0.$n" --socket "$TMP/node$n.sock" --state-dir "$TMP/node$n" \
        2>"$TMP/node$n.log" &
    DAEMONS+=("$!")
    for _ in $(seq 150); do
        ctlq "$n" --timeout 1 node show >/dev/null 2>&1 && return 0
        kill -0 "$!" 2>/dev/null || break
        sleep 0.1
    done
    echo "vswitchd of node$n did not come up; its log:" >&2
    cat "$TMP/node$n.log" >&2
    return 1
}

ETCD_IP=198.19.0.254
# The datastore: one etcd member in the hub, on the underlay.
start_etcd() {
    add_netns "$HUB"
    ip -n "$HUB" link add "${P}br" type bridge
    ip -n "$HUB" link set "${P}br" up
    ip -n "$HUB" addr add "$ETCD_IP/24" dev "${P}br"
    local c="http://$ETCD_IP:2379" p="http://$ETCD_IP:2380"
    ip netns exec "$HUB" etcd --name "${P}-etcd" --data-dir "$TMP/etcd" \
        --listen-client-urls "$c" --advertise-client-urls "$c" \
        --listen-peer-urls "$p" --initial-advertise-peer-urls "$p" \
        --initial-cluster "${P}-etcd=$p" --initial-cluster-state new \
        --logger zap --log-level warn >"$TMP/etcd.log" 2>&1 &
    DAEMONS+=("$!")
    for _ in $(seq 100); do
        ip netns exec "$HUB" etcdctl --endpoints "$c" endpoint health >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "etcd did not come up; its log:" >&2
    cat "$TMP/etcd.log" >&2
    return 1
}

start_nginx() {
    local ns="$1" d="$TMP/nginx"
    mkdir -p "$d/html" "$d/tmp"
    cat >"$d/html/index.html" <<'EOF'
<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>
</body>
</html>
EOF
    cat >"$d/nginx.conf" <<EOF
user root;
worker_processes 1;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 256; }
http {
    access_log $d/access.log;
    client_body_temp_path $d/tmp/body;
    proxy_temp_path $d/tmp/proxy;
    default_type text/html;
    server { listen 80; server_name _; root $d/html; index index.html; }
}
EOF
    ip netns exec "$ns" nginx -p "$d/" -e "$d/error.log" -c "$d/nginx.conf" -g 'daemon off;' \
        >"$d/out.log" 2>&1 &
    NGINX_PID=$!
    for _ in $(seq 100); do
        ip netns exec "$ns" timeout 2 busybox wget -q -O- http://127.0.0.1/ 2>/dev/null \
            | grep -q 'Welcome to nginx' && return 0
        sleep 0.1
    done
    echo "nginx did not start:" >&2
    cat "$d/out.log" "$d/error.log" >&2
    return 1
}

# --- the story -------------------------------------------------------------------------------
CLIENT_NODE=$(( NODES >= 2 ? 2 : 1 ))
NGINX_NS="$P-nginx-server"
CLIENT_NS="$P-busybox-client"

section "0. The cluster: $NODES node(s), one vswitchd each"
if [[ "$PER_NODE" != 1 ]]; then
    start_etcd
    say "etcd: in netns $HUB at $ETCD_IP:2379; every node starts with --datastore etcd://$ETCD_IP:2379"
fi
for n in $(seq "$NODES"); do
    add_node "$n"
    say "node$n: netns ${P}n$n, underlay 198.19.0.$n, pod subnet $(ctlq "$n" -o json node show | json_field pod_cidr)"
done
ctl 1 node show
if [[ "$PER_NODE" != 1 ]]; then
    say "(kubectl get nodes: each node leased its subnet in etcd and found the others there)"
    for _ in $(seq 100); do
        [[ "$(ctlq 1 -o json peer list | grep -c '"source": *"datastore"')" == 2 ]] && break
        sleep 0.1
    done
    ctl 1 node list
    ctl 1 peer list
elif [[ "$NODES" == 2 ]]; then
    # Each node learns the other: its underlay address, pod subnet and VTEP MAC.
    mac1="$(ctlq 1 -o json node show | json_field vtep_mac)"
    mac2="$(ctlq 2 -o json node show | json_field vtep_mac)"
    ctl 1 peer add node2 --underlay 198.19.0.2 --pod-cidr 198.18.2.0/24 --vtep-mac "$mac2"
    ctl 2 peer add node1 --underlay 198.19.0.1 --pod-cidr 198.18.1.0/24 --vtep-mac "$mac1"
    ctl 1 peer list
fi

section "1. Deploy two pods"
say "(a pod is a network namespace; \`port add\` gives it eth0, an address, a route, an MTU)"
add_netns "$NGINX_NS"
add_netns "$CLIENT_NS"
ctl 1 port add nginx-server --netns "$NGINX_NS" --label app=nginx
ctl "$CLIENT_NODE" port add busybox-client --netns "$CLIENT_NS"
start_nginx "$NGINX_NS"
say "nginx is running in nginx-server; busybox-client waits, like \`sleep 3600\`"

section "2. Get the pod IPs"
say "(kubectl get pods -o wide)"
if [[ "$PER_NODE" == 1 ]]; then
    for n in $(seq "$NODES"); do ctl "$n" port list; done
else
    for _ in $(seq 100); do
        [[ "$(ctlq 2 -o json port list --all-nodes | grep -c '"name"')" -ge 2 ]] && break
        sleep 0.1
    done
    ctl 2 port list --all-nodes
fi
NGINX_IP="$(ctlq 1 -o json port list | tr -d '\n' \
    | sed -n 's/.*"name": *"nginx-server"[^}]*"ip": *"\([0-9.]*\)".*/\1/p')"
[[ -n "$NGINX_IP" ]] || { echo "could not find nginx-server's IP in port list" >&2; exit 1; }

section "3. Test pod-to-pod communication"
say "(kubectl exec -it busybox-client -- sh)"
prompt "busybox-client " wget -qO- "$NGINX_IP"
page="$(ip netns exec "$CLIENT_NS" timeout 10 busybox wget -qO- "http://$NGINX_IP/")"
printf '%s\n' "$page" | head -n 8
printf '%s\n' "$page" | grep -q 'Welcome to nginx' \
    || { echo "the page did not come through" >&2; exit 1; }
say "... the HTML response from nginx: pod-to-pod networking works."

section "4. Using a Service for stable networking"
if [[ "$PER_NODE" == 1 ]]; then
    say "(kubectl apply -f service.yaml: nginx-service, selector app=nginx, port 80 -> targetPort 80)"
    # Per node: the switch DNATs at the client's node, and a node's selector sees only its
    # own pods. So node1 selects its nginx-server by label, and node2 is given nginx-server
    # as an explicit endpoint.
    ctl 1 service add nginx-service --vip 198.19.96.20 --port 80:80/tcp --selector app=nginx
    if [[ "$NODES" == 2 ]]; then
        ctl 2 service add nginx-service --vip 198.19.96.20 --port 80:80/tcp --selector app=nginx \
            --endpoint "$NGINX_IP"
    fi
    VIP=198.19.96.20
else
    say "(the tutorial's service.yaml, applied once, on node1: etcd carries it to every node)"
    prompt "node1 " cat service.yaml
    cat "$ROOT/examples/service.yaml"
    ctl 1 apply -f "$ROOT/examples/service.yaml"
    for _ in $(seq 100); do
        ctlq "$CLIENT_NODE" -o json service list | grep -q "\"$NGINX_IP\"" && break
        sleep 0.1
    done
    VIP="$(ctlq "$CLIENT_NODE" -o json service list | json_field vip)"
fi
ctl "$CLIENT_NODE" service list
say "busybox-client's resolver was written by vswitchd at \`port add\` (the cluster DNS is the switch):"
prompt "busybox-client " cat /etc/resolv.conf
ip netns exec "$CLIENT_NS" cat /etc/resolv.conf

# svc_fetch WHAT: wget -qO- WHAT from busybox-client, printed like the tutorial.
svc_fetch() {
    local page
    prompt "busybox-client " wget -qO- "$1"
    page="$(ip netns exec "$CLIENT_NS" timeout 10 busybox wget -qO- "http://$1/")" \
        || { echo "wget -qO- $1 failed" >&2; exit 1; }
    printf '%s\n' "$page" | head -n 8
    printf '%s\n' "$page" | grep -q 'Welcome to nginx' \
        || { echo "the page did not come through $1" >&2; exit 1; }
}
svc_fetch "$VIP"
svc_fetch nginx-service
say "... the Service's VIP and its name both reach nginx: no pod IP needed."

section "Done"
say "Cleaning up: every namespace, daemon and file this demo created is removed on exit."
