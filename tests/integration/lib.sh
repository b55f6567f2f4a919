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
  ROAM_CLUSTER_DIR=${ROAM_TEST_CLUSTER_DIR:-/run/roam-test-cluster}
  export ROAM_CLUSTER_DIR
}

# cluster_up N [mosctl cluster up flags...]: fast gossip unless overridden.
cluster_up() {
  _up_n=$1
  shift
  # The automatic policies are off unless a test turns them on (later
  # settings win): moves of their own would upset the tests of other things.
  mosctl cluster up -n "$_up_n" --set gossip.step_ms=200 --set load.sample_ms=100 \
    --set policy.balance=false --set policy.usher=false --set policy.io_home_calls_per_s=0 "$@" >cluster-up.out 2>&1 || {
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

# job_start NODE NAME CMD...: runs CMD as a roam job on NODE in the
# background, stdout and stderr to NAME.out, its exit status (as its parent
# shell sees it) to NAME.status; prints its pid (in the node's namespace).
job_start() {
  _js_node=$1
  _js_name=$2
  shift 2
  rm -f "$_js_name.pid" "$_js_name.status"
  on_node "$_js_node" sh -c 'out=$1; shift; mosrun "$@" >"$out.out" 2>&1 & echo $! >"$out.pid"; wait $!; echo $? >"$out.status"' \
    sh "$PWD/$_js_name" "$@" </dev/null >/dev/null 2>&1 &
  retry 200 0.05 test -s "$_js_name.pid" || atf_fail "job $_js_name did not start"
  cat "$_js_name.pid"
}

# wait_line FILE REGEX [TRIES]: waits (0.05 s a try, 400 by default) until
# a line of FILE matches REGEX.
wait_line() {
  retry "${3:-400}" 0.05 grep -Eq "$2" "$1" 2>/dev/null || {
    echo "--- $1:"
    cat "$1" 2>/dev/null
    atf_fail "no line matching '$2' in $1"
  }
}

# job_status NAME [TRIES]: waits for the job's exit status and prints it.
job_status() {
  retry "${2:-600}" 0.05 test -s "$1.status" || atf_fail "job $1 did not end"
  cat "$1.status"
}

# where NODE PID: the node where mosps of NODE says PID runs.
where() {
  on_node "$1" mosps --json | python3 -c "import json,sys; print(next(p['where'] for p in json.load(sys.stdin) if p['pid']==$2))"
}

# migrate_ok NODE PID TARGET: migrate, which must succeed, then mosps must agree.
migrate_ok() {
  on_node "$1" migrate "$2" "$3" >>migrate.log 2>&1 || {
    cat migrate.log
    atf_fail "migrate $2 $3 failed"
  }
  _mo_want=$3
  [ "$_mo_want" = home ] && _mo_want=$1
  _mo_want=${_mo_want#node}
  [ "$(where "$1" "$2")" = "$_mo_want" ] || atf_fail "mosps does not show $2 at node $_mo_want"
}

# in_call NODE PID NR...: the process PID of NODE is inside one of the system
# calls numbered NR (the first field of /proc/PID/syscall).
in_call() {
  _ic_nr=$(on_node "$1" cat /proc/"$2"/syscall 2>/dev/null | awk '{ print $1 }')
  shift 2
  for _ic_want in "$@"; do
    [ "$_ic_nr" = "$_ic_want" ] && return 0
  done
  return 1
}

# body_pid NODE: the pid of the (one) body running as nobody on NODE.
body_pid() {
  on_node "$1" ps -eo pid=,user= | awk '$2 == "nobody" { print $1; exit }'
}

# expect_status NAME WANT [TRIES]: the job ends with exit status WANT.
expect_status() {
  _es=$(job_status "$1" "${3:-600}")
  [ "$_es" = "$2" ] || {
    echo "--- $1.out:"
    cat "$1.out" 2>/dev/null
    atf_fail "job $1 ended with status $_es, not $2"
  }
}
