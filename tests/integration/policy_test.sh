#! /usr/bin/env atf-sh
# The automatic policies on a real local cluster (mosd decides the moves
# itself): load balancing spreads jobs started on one node, never moves a
# short-lived process, a -L job or a tagged job to an untagged node, and
# sends nothing to a node that died; I/O homing brings home a process whose
# forwarded I/O stays high; memory ushering moves a process off a node short
# of memory.

. "$(atf_get_srcdir)/lib.sh"

wl() { echo "$ROAM_TESTS/workloads/$1"; }

# The policies on, deciding four times a second.
POLICY="--set policy.balance=true --set policy.usher=false --set policy.step_ms=250 --set policy.cooldown_ms=3000"

# count_at NODE WANT PIDS...: how many of PIDS mosps of NODE shows at node WANT.
count_at() {
  _ca_node=$1
  _ca_want=$2
  shift 2
  on_node "$_ca_node" mosps --json | python3 -c "
import json, sys
pids = {$(echo "$@" | tr ' ' ',')}
print(sum(1 for p in json.load(sys.stdin) if p['pid'] in pids and p['where'] == $_ca_want))"
}

# count_is NODE WANT N PIDS...: exactly N of PIDS are at node WANT (for retry).
count_is() {
  _ci_node=$1
  _ci_want=$2
  _ci_n=$3
  shift 3
  [ "$(count_at "$_ci_node" "$_ci_want" "$@")" = "$_ci_n" ]
}

# any_at NODE WANT: some process of NODE is at node WANT (for retry).
any_at() {
  [ "$(on_node "$1" mosps --json | python3 -c "import json,sys; print(sum(1 for p in json.load(sys.stdin) if p['where']==$2))")" -ge 1 ]
}

# node_is OBSERVER SUBJECT STATE: OBSERVER sees SUBJECT up or down (for retry).
node_is() { [ "$(node_state "$1" "$2")" = "$3" ]; }

# is_at NODE PID WANT: mosps of NODE shows PID at node WANT (for retry).
is_at() { [ "$(where "$1" "$2")" = "$3" ]; }

# node1_has_room MIB: node1 sees its own free memory above MIB (for retry).
node1_has_room() {
  [ "$(json_get 1 "next(n['free_mem'] for n in s['nodes'] if n['self']) >> 20")" -gt "$1" ]
}

# policy_moves NODE: the policy moves node NODE's mosd logged.
policy_moves() { grep -E 'policy [a-z]+: moving process' "$(mosd_log "$1")" || true; }

finish() {
  on_node 1 kill -USR1 "$2"
  expect_status "$1" 0 3000
  atf_check -o "match:^PASS$" cat "$1.out"
}

# finish_all PREFIX PIDS...: finish PREFIX1 PID1, PREFIX2 PID2...
finish_all() {
  _fa_prefix=$1
  shift
  _fa_i=1
  for _fa_p in "$@"; do
    finish "$_fa_prefix$_fa_i" "$_fa_p"
    _fa_i=$((_fa_i + 1))
  done
}

# flagged_start NODE NAME FLAGS PROG...: job_start with mosrun's flags.
flagged_start() {
  _fs_node=$1
  _fs_name=$2
  _fs_flags=$3
  shift 3
  rm -f "$_fs_name.pid" "$_fs_name.status"
  on_node "$_fs_node" sh -c 'out=$1; flags=$2; shift 2; mosrun $flags "$@" >"$out.out" 2>&1 & echo $! >"$out.pid"; wait $!; echo $? >"$out.status"' \
    sh "$PWD/$_fs_name" "$_fs_flags" "$@" </dev/null >/dev/null 2>&1 &
  retry 200 0.05 test -s "$_fs_name.pid" || atf_fail "job $_fs_name did not start"
  cat "$_fs_name.pid"
}

atf_test_case jobs_spread cleanup
jobs_spread_head() {
  atf_set descr "4 CPU-bound jobs started on node1 of 2 nodes (one CPU each) spread 2 and 2 by themselves, shown policy:load, results intact"
  atf_set require.user root
  atf_set timeout 180
}
jobs_spread_body() {
  roam_init
  cluster_up 2 --cpus-per-node 1 $POLICY
  pids=""
  for i in 1 2 3 4; do
    pids="$pids $(job_start 1 "j$i" "$(wl cpu_loop)")"
    wait_line "j$i.out" '^READY'
  done
  retry 300 0.1 count_is 1 2 2 $pids || {
    on_node 1 mosps
    policy_moves 1
    atf_fail "the jobs did not spread 2 and 2"
  }
  # Stable: a few more steps change nothing.
  sleep 2
  [ "$(count_at 1 2 $pids)" = 2 ] || {
    on_node 1 mosps
    policy_moves 1
    atf_fail "the jobs did not stay 2 and 2"
  }
  on_node 1 mosps
  on_node 1 mosps --json | python3 -c "
import json, sys
away = [p for p in json.load(sys.stdin) if p['where'] == 2]
assert away and all(p['reason'] == 'policy:load' for p in away), away" || atf_fail "jobs moved by the balancer are not shown policy:load"
  atf_check -o match:'policies: balance on' mosctl cluster exec 1 -- mosmon --once
  finish_all j $pids
}
jobs_spread_cleanup() { cluster_down; }

atf_test_case short_lived_never_moved cleanup
short_lived_never_moved_head() {
  atf_set descr "processes that end before they ran as long as their move would take are never moved, while a long one beside them is"
  atf_set require.user root
  atf_set timeout 180
}
short_lived_never_moved_body() {
  roam_init
  # Every move is taken to cost 3 s: a job becomes a candidate after 3 s.
  cluster_up 2 --cpus-per-node 1 $POLICY --set policy.move_cost_ms=3000
  long=$(job_start 1 long "$(wl cpu_loop)")
  wait_line long.out '^READY'
  short=""
  for round in 1 2 3 4; do
    for i in 1 2; do
      p=$(job_start 1 "s$round$i" "$(wl cpu_loop)")
      short="$short $p"
    done
    sleep 1
    for i in 1 2; do
      on_node 1 kill -USR1 "$(cat "s$round$i.pid")"
    done
    for i in 1 2; do expect_status "s$round$i" 0; done
  done
  # The long one, busy beside them for 4+ s, did move.
  retry 300 0.1 is_at 1 "$long" 2 || {
    policy_moves 1
    atf_fail "the long job was never moved: the policy did not run"
  }
  for p in $short; do
    if policy_moves 1 | grep -q "moving process $p "; then
      policy_moves 1
      atf_fail "short-lived process $p was moved"
    fi
  done
  finish long "$long"
}
short_lived_never_moved_cleanup() { cluster_down; }

atf_test_case pinned_never_moves cleanup
pinned_never_moves_head() {
  atf_set descr "-L jobs on a loaded node are never moved by the balancer (a job beside them without -L is)"
  atf_set require.user root
  atf_set timeout 180
}
pinned_never_moves_body() {
  roam_init
  cluster_up 2 --cpus-per-node 1 $POLICY
  pinned=""
  for i in 1 2 3; do
    pinned="$pinned $(flagged_start 1 "p$i" -L "$(wl cpu_loop)")"
  done
  free=$(job_start 1 free "$(wl cpu_loop)")
  wait_line free.out '^READY'
  retry 300 0.1 is_at 1 "$free" 2 || {
    policy_moves 1
    atf_fail "the job without -L was never moved: the policy did not run"
  }
  sleep 3
  [ "$(count_at 1 1 $pinned)" = 3 ] || {
    on_node 1 mosps
    atf_fail "a -L job moved"
  }
  for p in $pinned; do
    if policy_moves 1 | grep -q "moving process $p "; then atf_fail "-L process $p was moved"; fi
  done
  finish_all p $pinned
  finish free "$free"
}
pinned_never_moves_cleanup() { cluster_down; }

atf_test_case tagged_stays_on_tagged_nodes cleanup
tagged_stays_on_tagged_nodes_head() {
  atf_set descr "jobs started with -t x spread to the other node tagged x, never to the untagged idle one"
  atf_set require.user root
  atf_set timeout 180
}
tagged_stays_on_tagged_nodes_body() {
  roam_init
  cluster_up 3 --tag 1:x --tag 3:x $POLICY
  pids=""
  for i in 1 2 3 4; do
    pids="$pids $(flagged_start 1 "t$i" "-t x" "$(wl cpu_loop)")"
  done
  retry 300 0.1 any_at 1 3 || {
    on_node 1 mosps
    policy_moves 1
    atf_fail "no tagged job went to node 3"
  }
  sleep 3
  on_node 1 mosps
  [ "$(count_at 1 2 $pids)" = 0 ] || atf_fail "a -t x job is on untagged node 2"
  if policy_moves 1 | grep -q "to node 2:"; then
    policy_moves 1
    atf_fail "the balancer sent a -t x job to untagged node 2"
  fi
  finish_all t $pids
}
tagged_stays_on_tagged_nodes_cleanup() { cluster_down; }

atf_test_case dead_node_gets_nothing cleanup
dead_node_gets_nothing_head() {
  atf_set descr "a node that died ages out; the balancer then spreads jobs over the live nodes only"
  atf_set require.user root
  atf_set timeout 180
}
dead_node_gets_nothing_body() {
  roam_init
  cluster_up 3 $POLICY --set gossip.down_after_steps=5
  retry 200 0.1 all_up_at 1 3 || atf_fail "node1 does not see all 3 nodes up"
  atf_check -o ignore -e ignore mosctl cluster stop node3
  retry 300 0.1 node_is 1 3 down || atf_fail "node1 never saw node3 down"
  pids=""
  for i in 1 2 3 4; do
    pids="$pids $(job_start 1 "d$i" "$(wl cpu_loop)")"
    wait_line "d$i.out" '^READY'
  done
  retry 300 0.1 any_at 1 2 || {
    policy_moves 1
    atf_fail "nothing went to node 2"
  }
  sleep 3
  on_node 1 mosps
  if policy_moves 1 | grep -q "to node 3:"; then
    policy_moves 1
    atf_fail "the balancer sent a job to dead node 3"
  fi
  finish_all d $pids
}
dead_node_gets_nothing_cleanup() { cluster_down; }

atf_test_case io_bound_comes_home cleanup
io_bound_comes_home_head() {
  atf_set descr "an unmodified dd moved away, whose reads and writes all go home, is brought home by I/O homing (logged policy io) and ends well"
  atf_set require.user root
  atf_set timeout 180
}
io_bound_comes_home_body() {
  roam_init
  cluster_up 2 --set policy.balance=false --set policy.step_ms=250 --set policy.io_home_calls_per_s=500
  pid=$(job_start 1 dd dd if=/dev/zero of=/dev/null bs=512 count=2000000000)
  sleep 0.5
  migrate_ok 1 "$pid" 2
  retry 300 0.1 is_at 1 "$pid" 1 || {
    on_node 1 mosps
    policy_moves 1
    atf_fail "the I/O-bound process stayed away"
  }
  policy_moves 1 | grep -E "policy io: moving process $pid from node 2 to node 1: [0-9]+ calls/s forwarded home" ||
    atf_fail "no I/O homing line for $pid"
  on_node 1 kill -TERM "$pid"
  expect_status dd 143
}
io_bound_comes_home_cleanup() { cluster_down; }

atf_test_case away_demand_is_measured cleanup
away_demand_is_measured_head() {
  atf_set descr "the home hears from the body's node how CPU-bound a process away is: a CPU loop near 1000 per mille, a process that mostly sleeps near 0"
  atf_set require.user root
  atf_set timeout 120
}
# demand NODE PID: the third field of the home agent's stats file.
demand() { on_node "$1" cat "/run/roam/agents/$2.stats" 2>/dev/null | awk '{ print $3 }'; }
demand_in() {
  _d=$(demand 1 "$1")
  [ -n "$_d" ] && [ "$_d" -ge "$2" ] && [ "$_d" -le "$3" ]
}
away_demand_is_measured_body() {
  roam_init
  cluster_up 2
  busy=$(job_start 1 busy "$(wl cpu_loop)")
  wait_line busy.out '^READY'
  idle=$(job_start 1 idle "$(wl clock_check)")
  wait_line idle.out '^READY'
  migrate_ok 1 "$busy" 2
  migrate_ok 1 "$idle" 2
  retry 100 0.1 demand_in "$busy" 700 1000 || atf_fail "busy process away: demand '$(demand 1 "$busy")', not 700..1000"
  retry 100 0.1 demand_in "$idle" 0 300 || atf_fail "sleeping process away: demand '$(demand 1 "$idle")', not 0..300"
  echo "demand away: busy $(demand 1 "$busy"), idle $(demand 1 "$idle") per mille"
  finish busy "$busy"
  on_node 1 kill -USR1 "$idle"
  expect_status idle 0
  atf_check -o "match:^PASS" cat idle.out
}
away_demand_is_measured_cleanup() { cluster_down; }

atf_test_case memory_ushering cleanup
memory_ushering_head() {
  atf_set descr "node1 limited to 512 MiB: 150 MiB jobs started there one after another are ushered to node2 as free memory runs low; none is OOM-killed, all verify their memory"
  atf_set require.user root
  atf_set timeout 300
}
memory_ushering_body() {
  roam_init
  cluster_up 2 --mem-per-node 512 --set policy.usher=true --set policy.usher_free_mb=160 --set policy.step_ms=250
  pids=""
  for i in 1 2 3 4 5; do
    # Room for the next one (150 MiB and some): from the third on, it
    # comes only if ushering moved one away when free memory fell below
    # 160 MiB.
    retry 400 0.1 node1_has_room 190 || {
      on_node 1 mosps
      on_node 1 mosmon --once
      policy_moves 1
      atf_fail "node1 never had room for job $i: nothing was ushered"
    }
    p=$(job_start 1 "m$i" "$(wl mem_pattern)" 150)
    wait_line "m$i.out" '^READY'
    pids="$pids $p"
    sleep 1
  done
  on_node 1 mosps
  policy_moves 1
  [ "$(count_at 1 2 $pids)" -ge 2 ] || atf_fail "fewer than 2 jobs were ushered to node2"
  policy_moves 1 | grep -q "policy memory: moving process" || atf_fail "no memory ushering logged"
  finish_all m $pids
}
memory_ushering_cleanup() { cluster_down; }

atf_init_test_cases() {
  atf_add_test_case jobs_spread
  atf_add_test_case short_lived_never_moved
  atf_add_test_case pinned_never_moves
  atf_add_test_case tagged_stays_on_tagged_nodes
  atf_add_test_case dead_node_gets_nothing
  atf_add_test_case io_bound_comes_home
  atf_add_test_case away_demand_is_measured
  atf_add_test_case memory_ushering
}
