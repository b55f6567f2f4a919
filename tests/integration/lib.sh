# Shared helpers for the ATF shell tests. Each test brings up a real local
# cluster (one mosd per node, each node in its own namespaces) and its cleanup
# takes it down again, also when the test failed.

roam_init() {
  ROAM_TESTS=$(cd "$(atf_get_srcdir)/.." && pwd)
  ROAM_BIN=$(cd "$ROAM_TESTS/../bin" && pwd)
  ROAM_HELPERS="$ROAM_TESTS/helpers"
  PATH="$ROAM_BIN:$ROAM_HELPERS:$PATH"
  export PATH ROAM_BIN ROAM_HELPERS
  # Tests use their own cluster directory, apart from a demo cluster.
  ROAM_CLUSTER_DIR=/run/roam-test-cluster
  export ROAM_CLUSTER_DIR
}

# cluster_up N [mosctl cluster up flags...]: fast gossip unless overridden.
cluster_up() {
  _up_n=$1
  shift
  mosctl cluster up -n "$_up_n" --set gossip.step_ms=200 --set load.sample_ms=100 "$@" >cluster-up.out 2>&1 || {
    cat cluster-up.out
    atf_fail "mosctl cluster up -n $_up_n failed"
  }
}

cluster_down() {
  roam_init
  mosctl cluster down >/dev/null 2>&1 || true
}

on_node() {
  _on_node=$1
  shift
  mosctl cluster exec "$_on_node" -- "$@"
}

# The mosd log of node I (host-visible).
mosd_log() { echo "$ROAM_CLUSTER_DIR/node$1/mosd.log"; }

# retry TRIES DELAY CMD...: runs CMD until it succeeds; fails after TRIES.
retry() {
  _retry_tries=$1
  _retry_delay=$2
  shift 2
  _retry_n=0
  while [ "$_retry_n" -lt "$_retry_tries" ]; do
    if "$@"; then return 0; fi
    _retry_n=$((_retry_n + 1))
    sleep "$_retry_delay"
  done
  return 1
}

# json_get NODE EXPR: evaluates a python expression over node's `mosmon --once --json` (as s).
json_get() {
  _json_node=$1
  on_node "$_json_node" mosmon --once --json >"mosmon-$_json_node.json" 2>/dev/null || return 1
  python3 -c "import json,sys; s=json.load(open('mosmon-$_json_node.json')); print($2)"
}

# node_state OBSERVER SUBJECT: prints up, down or unknown as OBSERVER sees SUBJECT.
node_state() {
  json_get "$1" "next(('up' if n['up'] else 'down') if n['known'] else 'unknown' for n in s['nodes'] if n['node']==$2)"
}

# all_up_at NODE COUNT: NODE knows every one of COUNT nodes and sees them up.
all_up_at() {
  [ "$(json_get "$1" "sum(1 for n in s['nodes'] if n['known'] and n['up'])")" = "$2" ]
}
