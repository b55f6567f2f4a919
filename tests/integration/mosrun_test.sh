#! /usr/bin/env atf-sh
# mosrun execs the program in its own place: exit status, death signal, $!,
# the terminal and ^C are exactly what they would be without it; the job is
# known to mosd through its cgroup.

. "$(atf_get_srcdir)/lib.sh"

atf_test_case exit_status cleanup
exit_status_head() {
  atf_set descr "exit code 3 and death by SIGTERM (143) reach the shell unchanged"
  atf_set require.user root
  atf_set timeout 120
}
exit_status_body() {
  roam_init
  cluster_up 1
  atf_check -s exit:3 mosctl cluster exec 1 -- mosrun sh -c 'exit 3'
  atf_check -o "inline:143\n" -e ignore mosctl cluster exec 1 -- sh -c "mosrun sh -c 'kill -TERM \$\$'; echo \$?"
  atf_check -o "inline:137\n" -e ignore mosctl cluster exec 1 -- sh -c "mosrun sh -c 'kill -KILL \$\$'; echo \$?"
  atf_check -o "inline:hello\n" mosctl cluster exec 1 -- mosrun echo hello
  atf_check -s exit:127 -e "match:^mosrun: cannot run no-such-program" mosctl cluster exec 1 -- mosrun no-such-program
}
exit_status_cleanup() { cluster_down; }

atf_test_case no_wrapper cleanup
no_wrapper_head() {
  atf_set descr "\$! is the program itself, it sits in its job cgroup, and mosps lists it"
  atf_set require.user root
  atf_set timeout 120
}
no_wrapper_body() {
  roam_init
  cluster_up 1
  cat >script.sh <<'SH'
mosrun sleep 30 &
pid=$!
sleep 0.5
echo "comm=$(cat /proc/$pid/comm)"
echo "cgroup=$(grep '^0::' /proc/$pid/cgroup)"
mosps --json > "$1"
kill $pid
wait $pid
echo "status=$?"
SH
  on_node 1 sh script.sh "$PWD/ps.json" >out.txt 2>&1
  cat out.txt
  atf_check -o "match:^comm=sleep$" cat out.txt
  atf_check -o "match:^cgroup=0::/.*roam-jobs/job-[0-9]+$" cat out.txt
  atf_check -o "match:^status=143$" cat out.txt
  python3 -c "import json; p=json.load(open('ps.json')); assert any(x['command']=='sleep 30' and x['home']==1 and x['where']==1 and x['state']=='home' for x in p), p" ||
    atf_fail "mosps did not list the job"
  # A child of the job is in the job too (descendants are tracked).
  on_node 1 sh -c 'mosrun sh -c "sleep 30 & sleep 0.3; mosps --json > '"$PWD"'/ps2.json; kill \$!"'
  python3 -c "import json; p=json.load(open('ps2.json')); jobs={x['job'] for x in p if x['command'].startswith('sleep 30') or x['command'].startswith('sh -c')}; assert len(p)>=2 and len(jobs)==1, p" ||
    atf_fail "the job's child is not in the job"
}
no_wrapper_cleanup() { cluster_down; }

atf_test_case cannot_move_reason cleanup
cannot_move_reason_head() {
  atf_set descr "mosps says why a job could not move (threads, shared memory) and keeps it running"
  atf_set require.user root
  atf_set require.progs python3
  atf_set timeout 120
}
cannot_move_reason_body() {
  roam_init
  cluster_up 1
  cat >threads.py <<'PY'
import threading, time, sys
t = threading.Thread(target=time.sleep, args=(30,), daemon=True)
t.start()
print("READY", flush=True)
time.sleep(30)
PY
  cat >script.sh <<SH
mosrun python3 $PWD/threads.py >$PWD/threads.out &
t=\$!
mosrun sleep 30 &
s=\$!
while ! grep -q READY $PWD/threads.out 2>/dev/null; do sleep 0.05; done
mosps --json >$PWD/ps.json
mosps >$PWD/ps.txt
kill -0 \$t && echo threaded-alive >>$PWD/threads.out
kill \$t \$s
SH
  on_node 1 sh script.sh
  cat ps.txt
  python3 - <<'PY' || atf_fail "mosps does not give the right reasons"
import json
p = json.load(open("ps.json"))
thr = [x for x in p if "threads.py" in x["command"]]
slp = [x for x in p if x["command"] == "sleep 30"]
assert thr and thr[0]["reason"] == "home" and thr[0]["detail"] == "cannot move: has 2 threads", thr
assert slp and slp[0]["reason"] == "home" and slp[0]["detail"] == "", slp
PY
  atf_check -o "match:threaded-alive" cat threads.out
  atf_check -o "match:cannot move: has 2 threads" cat ps.txt
}
cannot_move_reason_cleanup() { cluster_down; }

atf_test_case no_mosd cleanup
no_mosd_head() {
  atf_set descr "without a mosd on the node, mosrun prints one clear line and exits 125"
  atf_set require.user root
  atf_set timeout 120
}
no_mosd_body() {
  roam_init
  cluster_up 1
  atf_check -o ignore -e ignore mosctl cluster stop node1
  atf_check -s exit:125 -e "match:^mosrun: no mosd on this node" mosctl cluster exec 1 -- mosrun true
  on_node 1 mosrun true 2>err.txt
  [ "$(wc -l <err.txt)" -eq 1 ] || atf_fail "more than one line: $(cat err.txt)"
  atf_check -s exit:125 -e "match:^mosrun: no program given" mosctl cluster exec 1 -- mosrun
  atf_check -s not-exit:0 -e "match:^mosps: no mosd" mosctl cluster exec 1 -- mosps
}
no_mosd_cleanup() { cluster_down; }

atf_test_case ctrl_c cleanup
ctrl_c_head() {
  atf_set descr "^C typed at a terminal (tmux) reaches the program started by mosrun"
  atf_set require.user root
  atf_set require.progs tmux
  atf_set timeout 120
}
ctrl_c_body() {
  roam_init
  cluster_up 1
  sess="roam-ctrlc-$$"
  echo "$sess" >session
  out="$PWD/ctrlc.out"
  cat >prog.sh <<SH
trap 'echo caught-INT >>$out; exit 9' INT
echo ready >>$out
while :; do sleep 0.1; done
SH
  tmux new-session -d -s "$sess" -x 120 -y 20 "mosctl cluster exec node1 -- mosrun sh $PWD/prog.sh; echo exit=\$? >>$out; sleep 30"
  ready() { grep -q ready "$out" 2>/dev/null; }
  retry 100 0.1 ready || atf_fail "the program did not start in tmux"
  tmux send-keys -t "$sess" C-c
  done_() { grep -q '^exit=' "$out" 2>/dev/null; }
  retry 100 0.1 done_ || atf_fail "the program did not end after ^C"
  atf_check -o "match:caught-INT" cat "$out"
  atf_check -o "match:^exit=9$" cat "$out"
}
ctrl_c_cleanup() {
  [ -f session ] && tmux kill-session -t "$(cat session)" 2>/dev/null
  cluster_down
}

atf_test_case workloads cleanup
workloads_head() {
  atf_set descr "the workload programs (READY, wait for SIGUSR1, verify, PASS) run as roam jobs on a node"
  atf_set require.user root
  atf_set timeout 120
}
workloads_body() {
  roam_init
  cluster_up 1
  wl="$ROAM_TESTS/workloads"
  for w in cpu_loop "mem_pattern 64" fpu_regs; do
    name=${w%% *}
    cat >run-$name.sh <<SH
mosrun $wl/$w >$PWD/$name.out &
pid=\$!
while ! grep -q READY $PWD/$name.out 2>/dev/null; do sleep 0.05; done
grep -q "^0::.*/roam-jobs/" /proc/\$pid/cgroup || echo "not in a job cgroup" >>$PWD/$name.out
sleep 0.3
kill -USR1 \$pid
wait \$pid
echo "status=\$?" >>$PWD/$name.out
SH
    on_node 1 sh run-$name.sh
    atf_check -o "match:^PASS$" cat $name.out
    atf_check -o "match:^status=0$" -o "not-match:not in a job" cat $name.out
  done
}
workloads_cleanup() { cluster_down; }

atf_init_test_cases() {
  atf_add_test_case workloads
  atf_add_test_case exit_status
  atf_add_test_case no_wrapper
  atf_add_test_case cannot_move_reason
  atf_add_test_case no_mosd
  atf_add_test_case ctrl_c
}
