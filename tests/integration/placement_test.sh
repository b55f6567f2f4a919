#! /usr/bin/env atf-sh
# Placement on a real local cluster: mosrun's placement flags (-h -L -t -m
# -r -b), migrate PID best, node commands (stay, nostay, expel, bring),
# guests as the node that runs them sees them, and why mosps says a
# process is where it is.

. "$(atf_get_srcdir)/lib.sh"

wl() { echo "$ROAM_TESTS/workloads/$1"; }

# reason NODE PID: the WHY mosps of NODE gives for PID.
reason() {
  on_node "$1" mosps --json | python3 -c "import json,sys; print(next(p['reason'] for p in json.load(sys.stdin) if p['pid']==$2))"
}

# wait_where NODE PID WANT: mosps of NODE comes to show PID at node WANT.
wait_where() {
  retry 200 0.05 sh -c "[ \"\$(mosctl cluster exec $1 -- mosps --json | python3 -c 'import json,sys; print(next(p[\"where\"] for p in json.load(sys.stdin) if p[\"pid\"]==$2))')\" = $3 ]" ||
    atf_fail "process $2 of node $1 is at node $(where "$1" "$2"), not $3"
}

# pjob_start NODE NAME "FLAGS" PROG ARGS...: job_start with mosrun's flags.
pjob_start() {
  _pj_node=$1
  _pj_name=$2
  _pj_flags=$3
  shift 3
  rm -f "$_pj_name.pid" "$_pj_name.status"
  on_node "$_pj_node" sh -c 'out=$1; flags=$2; shift 2; mosrun $flags "$@" >"$out.out" 2>&1 & echo $! >"$out.pid"; wait $!; echo $? >"$out.status"' \
    sh "$PWD/$_pj_name" "$_pj_flags" "$@" </dev/null >/dev/null 2>&1 &
  retry 200 0.05 test -s "$_pj_name.pid" || atf_fail "job $_pj_name did not start"
  cat "$_pj_name.pid"
}

# one_line FILE: FILE holds exactly one line.
one_line() {
  [ "$(wc -l <"$1")" = 1 ] || {
    cat "$1"
    atf_fail "$1 does not hold exactly one line"
  }
}

# finish NAME PID: SIGUSR1 at home; the job passes.
finish() {
  on_node 1 kill -USR1 "$2"
  expect_status "$1" 0
  atf_check -o "match:^PASS$" cat "$1.out"
}

atf_test_case stay_home_and_manual_only cleanup
stay_home_and_manual_only_head() {
  atf_set descr "mosrun -h: migrate refuses with one line and the job stays pinned at home; -L: migrate still moves it"
  atf_set require.user root
  atf_set timeout 120
}
stay_home_and_manual_only_body() {
  roam_init
  cluster_up 2
  hpid=$(pjob_start 1 h "-h" "$(wl cpu_loop)")
  wait_line h.out '^READY'
  [ "$(reason 1 "$hpid")" = pinned ] || atf_fail "a -h job at home is not shown pinned"
  atf_check -s exit:1 -e "match:^migrate: mosd: process $hpid stays home \(mosrun -h\): it may not move$" \
    mosctl cluster exec 1 -- migrate "$hpid" 2
  atf_check -s exit:1 -e "match:stays home" mosctl cluster exec 1 -- migrate "$hpid" best
  [ "$(where 1 "$hpid")" = 1 ] || atf_fail "the -h job moved"
  finish h "$hpid"

  mpid=$(pjob_start 1 man "-L" "$(wl cpu_loop)")
  wait_line man.out '^READY'
  [ "$(reason 1 "$mpid")" = pinned ] || atf_fail "a -L job at home is not shown pinned"
  migrate_ok 1 "$mpid" 2
  [ "$(reason 1 "$mpid")" = user ] || atf_fail "a -L job moved by migrate is not shown 'user'"
  on_node 1 mosps
  finish man "$mpid"
}
stay_home_and_manual_only_cleanup() { cluster_down; }

atf_test_case tag_only cleanup
tag_only_head() {
  atf_set descr "mosrun -t gpu from an untagged home starts on the gpu node, migrate to an untagged node is refused with the reason, best stays on gpu nodes"
  atf_set require.user root
  atf_set timeout 120
}
tag_only_body() {
  roam_init
  cluster_up 3 --tag 3:gpu
  retry 100 0.1 all_up_at 1 3 || atf_fail "the nodes did not see each other"
  pid=$(pjob_start 1 gpu "-t gpu" "$(wl cpu_loop)")
  wait_line gpu.out '^READY'
  wait_where 1 "$pid" 3
  [ "$(reason 1 "$pid")" = tag:gpu ] || atf_fail "mosps does not say tag:gpu"
  atf_check -s exit:1 -o empty -e "match:^migrate: mosd: process $pid may not go to node 2: node 2 lacks tag gpu \(mosrun -t gpu\)$" \
    mosctl cluster exec 1 -- migrate "$pid" 2
  [ "$(where 1 "$pid")" = 3 ] || atf_fail "the refused process left node 3"
  migrate_ok 1 "$pid" home
  atf_check -s exit:0 -o ignore mosctl cluster exec 1 -- migrate "$pid" best
  [ "$(where 1 "$pid")" = 3 ] || atf_fail "best took a -t gpu job to node $(where 1 "$pid")"
  [ -z "$(body_pid 2)" ] || atf_fail "a body runs on the untagged node 2"
  atf_check -s exit:125 -e "match:^mosrun: mosd: no node of the cluster map has tag nosuch$" \
    mosctl cluster exec 1 -- mosrun -t nosuch true
  finish gpu "$pid"
}
tag_only_cleanup() { cluster_down; }

atf_test_case start_remote cleanup
start_remote_head() {
  atf_set descr "mosrun -r 2 starts the job at home and moves it to node 2 right after the exec; it runs correctly there"
  atf_set require.user root
  atf_set timeout 120
}
start_remote_body() {
  roam_init
  cluster_up 3
  pid=$(pjob_start 1 r "-r 2" "$(wl cpu_loop)")
  wait_line r.out '^READY'
  wait_where 1 "$pid" 2
  [ "$(reason 1 "$pid")" = user ] || atf_fail "a -r job is not shown 'user'"
  [ -n "$(body_pid 2)" ] || atf_fail "no body on node 2"
  pid3=$(pjob_start 1 r3 "-rnode3" "$(wl cpu_loop)")
  wait_line r3.out '^READY'
  wait_where 1 "$pid3" 3
  finish r "$pid"
  finish r3 "$pid3"
}
start_remote_cleanup() { cluster_down; }

# busy NODE: a CPU hog (not a roam job) on NODE, until the cluster goes down.
busy() {
  on_node "$1" sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 &
}

# load_at OBSERVER NODE: NODE's load as OBSERVER knows it.
load_at() { json_get "$1" "next(n.get('load', 0) for n in s['nodes'] if n['node']==$2)"; }

atf_test_case best_start_and_migrate_best cleanup
best_start_and_migrate_best_head() {
  atf_set descr "with node 1 loaded, mosrun -b starts on the idle node 2; migrate PID best moves a job off the loaded node and back home when home is best"
  atf_set require.user root
  atf_set timeout 180
}
best_start_and_migrate_best_body() {
  roam_init
  cluster_up 2 --cpus-per-node 1
  retry 100 0.1 all_up_at 1 2 || atf_fail "the nodes did not see each other"
  busy 1
  busy 1
  retry 100 0.1 sh -c "python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 1.5 else 1)' \$(mosctl cluster exec 1 -- mosmon --once --json | python3 -c 'import json,sys; print(next(n[\"load\"] for n in json.load(sys.stdin)[\"nodes\"] if n[\"node\"]==1))')" ||
    atf_fail "node 1's load did not rise"
  bpid=$(pjob_start 1 b "-b" "$(wl cpu_loop)")
  wait_line b.out '^READY'
  wait_where 1 "$bpid" 2
  [ "$(reason 1 "$bpid")" = best ] || atf_fail "a -b job is not shown 'best'"

  mpid=$(pjob_start 1 m "" "$(wl cpu_loop)")
  wait_line m.out '^READY'
  [ "$(where 1 "$mpid")" = 1 ] || atf_fail "a plain mosrun job did not start at home"
  atf_check -s exit:0 -o "match:moved to node 2" mosctl cluster exec 1 -- migrate "$mpid" best
  [ "$(reason 1 "$mpid")" = best ] || atf_fail "a job moved by best is not shown 'best'"
  # Node 1 becomes idle: best brings the job home.
  mosctl cluster exec 1 -- sh -c 'for p in $(pgrep -x sh); do [ "$(cat /proc/$p/cmdline | tr "\0" " ")" = "sh -c while :; do :; done " ] && kill $p; done'
  # Home is best once node 1, as it sees the loads, would carry the job
  # more lightly than node 2 does: node 2's gossiped load climbs towards
  # its two jobs only over some seconds after the move.
  # The loads are sampled and gossiped, so they wobble: the wait asks for a
  # clear margin, and best is asked again (a few times) if a wobble at the
  # moment of asking kept the job at node 2.
  retry 300 0.1 sh -c "mosctl cluster exec 1 -- mosmon --once --json | python3 -c 'import json,sys; l={n[\"node\"]: n[\"load\"] for n in json.load(sys.stdin)[\"nodes\"]}; sys.exit(0 if l[1] + 1.5 < l[2] else 1)'" ||
    atf_fail "node 1 did not come to see itself less loaded than node 2 by more than one job"
  tries=0
  while [ "$(where 1 "$mpid")" != 1 ] && [ $tries -lt 10 ]; do
    mosctl cluster exec 1 -- migrate "$mpid" best || atf_fail "migrate $mpid best failed"
    tries=$((tries + 1))
    [ "$(where 1 "$mpid")" = 1 ] || sleep 0.5
  done
  [ "$(where 1 "$mpid")" = 1 ] || atf_fail "best did not bring the job home to the idle node 1 ($tries tries)"
  finish b "$bpid"
  finish m "$mpid"
}
best_start_and_migrate_best_cleanup() { cluster_down; }

atf_test_case guests_seen cleanup
guests_seen_head() {
  atf_set descr "a node lists the bodies it runs (mosps --guests: home node and pid) and counts them in its gossiped load and processes"
  atf_set require.user root
  atf_set timeout 120
}
guests_seen_body() {
  roam_init
  cluster_up 2
  pid=$(job_start 1 g "$(wl cpu_loop)")
  wait_line g.out '^READY'
  migrate_ok 1 "$pid" 2
  on_node 2 mosps --guests
  atf_check -o "match:^node1 +$pid +[0-9]+ +[0-9]+ +[0-9]+K +.*cpu_loop" mosctl cluster exec 2 -- mosps --guests
  [ "$(on_node 2 mosps --guests --json | python3 -c 'import json,sys; g=json.load(sys.stdin); print(len(g), g[0]["home"], g[0]["home_pid"])')" = "1 1 $pid" ] ||
    atf_fail "mosps --guests --json on node 2 does not list the guest"
  retry 100 0.1 sh -c "[ \"\$(mosctl cluster exec 1 -- mosmon --once --json | python3 -c 'import json,sys; n=next(n for n in json.load(sys.stdin)[\"nodes\"] if n[\"node\"]==2); print(n.get(\"guests\"), n.get(\"procs\"), n.get(\"load\", 0) >= 0.5)')\" = '1 1 True' ]" ||
    atf_fail "node 1 does not learn that node 2 runs one busy guest"
  retry 100 0.1 sh -c "[ \"\$(mosctl cluster exec 1 -- mosmon --once --json | python3 -c 'import json,sys; n=next(n for n in json.load(sys.stdin)[\"nodes\"] if n[\"node\"]==1); print(n.get(\"procs\"))')\" = 0 ]" ||
    atf_fail "node 1 still counts its away process as running there"
  finish g "$pid"
  retry 100 0.1 sh -c "[ -z \"\$(mosctl cluster exec 2 -- mosps --guests --json | python3 -c 'import json,sys; print(json.load(sys.stdin) or \"\")')\" ]" ||
    atf_fail "the ended guest is still listed"
}
guests_seen_cleanup() { cluster_down; }

atf_test_case stay_and_nostay cleanup
stay_and_nostay_head() {
  atf_set descr "mosctl stay: the node takes no guests (refused with the reason, shown in mosmon everywhere), also after its mosd restarts; nostay: it takes them again"
  atf_set require.user root
  atf_set timeout 120
}
stay_and_nostay_body() {
  roam_init
  cluster_up 2
  pid=$(job_start 1 s "$(wl cpu_loop)")
  wait_line s.out '^READY'
  atf_check -o "match:^node 2 takes no new guests" mosctl cluster exec 2 -- mosctl stay
  retry 100 0.1 sh -c "mosctl cluster exec 1 -- mosmon --once | grep -Eq '^node2 .* up,stay '" ||
    atf_fail "node 1's mosmon does not show node 2 stayed"
  atf_check -s exit:1 -e "match:node 2 takes no guests \(mosctl stay\)" mosctl cluster exec 1 -- migrate "$pid" 2
  atf_check -s exit:0 -o "match:already at home" mosctl cluster exec 1 -- migrate "$pid" best
  [ "$(where 1 "$pid")" = 1 ] || atf_fail "the refused process is not at home"
  # A restarted mosd stays as it was told.
  atf_check -o ignore -e ignore mosctl cluster stop 2
  atf_check -o ignore -e ignore mosctl cluster start 2
  retry 100 0.1 sh -c "mosctl cluster exec 2 -- mosmon --once | grep -Eq '^node2 .* self,stay '" ||
    atf_fail "node 2's restarted mosd does not stay"
  atf_check -s exit:1 -e "match:node 2 takes no guests \(mosctl stay\)" mosctl cluster exec 1 -- migrate "$pid" 2
  atf_check -o "match:^node 2 takes guests again" mosctl cluster exec 2 -- mosctl nostay
  retry 100 0.1 sh -c "! mosctl cluster exec 1 -- mosmon --once | grep -q 'stay'" ||
    atf_fail "node 1 still sees node 2 stayed"
  migrate_ok 1 "$pid" 2
  finish s "$pid"
  atf_check -s exit:1 -e "match:^mosctl: mosd: mosctl stay needs root$" mosctl cluster exec 2 -- setpriv --reuid=65534 --regid=65534 --clear-groups mosctl stay
}
stay_and_nostay_cleanup() { cluster_down; }

atf_test_case stay_refused_by_the_remote cleanup
stay_refused_by_the_remote_head() {
  atf_set descr "a stayed node refuses a migration itself when the home has not heard of the stay yet (slow gossip)"
  atf_set require.user root
  atf_set timeout 120
}
stay_refused_by_the_remote_body() {
  roam_init
  cluster_up 2 --set gossip.step_ms=60000
  pid=$(job_start 1 sr "$(wl cpu_loop)")
  wait_line sr.out '^READY'
  atf_check -o ignore mosctl cluster exec 2 -- mosctl stay
  atf_check -s exit:1 -e "match:stays at node 1: .*node 2 takes no guests \(mosctl stay\)" mosctl cluster exec 1 -- migrate "$pid" 2
  grep -q "refused a process from node 1: node 2 takes no guests" "$(mosd_log 2)" || atf_fail "node 2 did not log the refusal"
  [ "$(where 1 "$pid")" = 1 ] || atf_fail "the refused process is not at home"
  finish sr "$pid"
}
stay_refused_by_the_remote_cleanup() { cluster_down; }

atf_test_case expel_empties_a_node cleanup
expel_empties_a_node_head() {
  atf_set descr "mosctl expel on node 2 sends every guest home (from two homes, one blocked in a forwarded read) and they run on correctly there"
  atf_set require.user root
  atf_set timeout 180
}
expel_empties_a_node_body() {
  roam_init
  cluster_up 3
  a=$(job_start 1 ea "$(wl cpu_loop)")
  wait_line ea.out '^READY'
  c=$(job_start 3 ec "$(wl cpu_loop)")
  wait_line ec.out '^READY'
  cat >br.sh <<SH
rm -f /tmp/br.fifo; mkfifo /tmp/br.fifo
exec 7<>/tmp/br.fifo
mosrun $(wl blocking_read) restart </tmp/br.fifo >$PWD/br.out 2>&1 &
echo \$! >$PWD/br.pid
while [ ! -e $PWD/br.go ]; do sleep 0.05; done
echo hello >&7
wait \$!
echo \$? >$PWD/br.status
SH
  on_node 1 sh br.sh </dev/null >/dev/null 2>&1 &
  wait_line br.out '^READY'
  b=$(cat br.pid)
  migrate_ok 1 "$a" 2
  migrate_ok 1 "$b" 2
  migrate_ok 3 "$c" 2
  sleep 0.3
  [ "$(on_node 2 mosps --guests --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 3 ] ||
    atf_fail "node 2 does not list three guests"
  atf_check -o "match:^node 2: 3 guests sent home$" mosctl cluster exec 2 -- mosctl expel
  [ "$(on_node 2 mosps --guests --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')" = 0 ] ||
    atf_fail "guests are left on node 2"
  [ -z "$(body_pid 2)" ] || atf_fail "a body is left on node 2"
  [ "$(where 1 "$a")" = 1 ] || atf_fail "process $a is not home"
  [ "$(where 1 "$b")" = 1 ] || atf_fail "process $b is not home"
  [ "$(where 3 "$c")" = 3 ] || atf_fail "process $c is not home"
  grep -q "expelled from node 2" "$(mosd_log 1)" || atf_fail "node 1's log does not say why its processes came home"
  atf_check -o "match:^node 2: 0 guests sent home$" mosctl cluster exec 2 -- mosctl expel
  on_node 1 kill -USR2 "$b"
  sleep 0.3
  touch br.go
  expect_status br 0
  atf_check -o "match:^HANDLER [1-9]" -o "match:^PASS" cat br.out
  finish ea "$a"
  on_node 3 kill -USR1 "$c"
  expect_status ec 0
  atf_check -o "match:^PASS$" cat ec.out
}
expel_empties_a_node_cleanup() { cluster_down; }

atf_test_case bring_brings_all_home cleanup
bring_brings_all_home_head() {
  atf_set descr "mosctl bring on node 1 brings home every process of node 1 that is away, from several nodes"
  atf_set require.user root
  atf_set timeout 180
}
bring_brings_all_home_body() {
  roam_init
  cluster_up 3
  p1=$(job_start 1 b1 "$(wl cpu_loop)")
  wait_line b1.out '^READY'
  p2=$(job_start 1 b2 "$(wl file_append)" /tmp/roam-bring.txt)
  wait_line b2.out '^READY'
  p3=$(job_start 1 b3 "$(wl cpu_loop)")
  wait_line b3.out '^READY'
  migrate_ok 1 "$p1" 2
  migrate_ok 1 "$p2" 3
  atf_check -o "match:^node 1: 2 processes brought home$" mosctl cluster exec 1 -- mosctl bring
  for p in "$p1" "$p2" "$p3"; do
    [ "$(where 1 "$p")" = 1 ] || atf_fail "process $p is not home"
  done
  [ -z "$(body_pid 2)$(body_pid 3)" ] || atf_fail "a body is left away"
  atf_check -o "match:^node 1: 0 processes brought home$" mosctl cluster exec 1 -- mosctl bring
  finish b1 "$p1"
  on_node 1 kill -USR1 "$p2"
  expect_status b2 0
  atf_check -o "match:^PASS [0-9]+ records" cat b2.out
  finish b3 "$p3"
}
bring_brings_all_home_cleanup() { cluster_down; }

atf_test_case bad_flags cleanup
bad_flags_head() {
  atf_set descr "bad placement flags and targets get one clear line and mosrun's exit status 125 (migrate: 1)"
  atf_set require.user root
  atf_set timeout 120
}
bad_flags_body() {
  roam_init
  cluster_up 2
  for args in "-x true" "-h -L true" "-h -r 2 true" "-r 2 -b true" "-L -l true" "-r foo true" "-r 0 true" \
    "-m abc true" "-m 0 true" "-t nosuch true" "-r 9 true" "-m 99999999 -b true" "-t" "-r"; do
    # shellcheck disable=SC2086
    if mosctl cluster exec 1 -- mosrun $args >out 2>err; then
      atf_fail "mosrun $args succeeded"
    else
      st=$?
    fi
    [ "$st" = 125 ] || atf_fail "mosrun $args exited $st, not 125"
    one_line err
    grep -q '^mosrun: ' err || atf_fail "mosrun $args: $(cat err)"
    echo "mosrun $args -> $(cat err)"
  done
  pid=$(job_start 1 bf "$(wl cpu_loop)")
  wait_line bf.out '^READY'
  for t in nowhere node 9 0x2; do
    atf_check -s exit:1 -e save:err mosctl cluster exec 1 -- migrate "$pid" "$t"
    one_line err
    echo "migrate $pid $t -> $(cat err)"
  done
  [ "$(where 1 "$pid")" = 1 ] || atf_fail "the process moved"
  finish bf "$pid"
  # mosd is still there and answers.
  atf_check -o ignore mosctl cluster exec 1 -- mosps
}
bad_flags_cleanup() { cluster_down; }

atf_init_test_cases() {
  atf_add_test_case stay_home_and_manual_only
  atf_add_test_case tag_only
  atf_add_test_case start_remote
  atf_add_test_case best_start_and_migrate_best
  atf_add_test_case guests_seen
  atf_add_test_case stay_and_nostay
  atf_add_test_case stay_refused_by_the_remote
  atf_add_test_case expel_empties_a_node
  atf_add_test_case bring_brings_all_home
  atf_add_test_case bad_flags
}
