#! /usr/bin/env atf-sh
# Transparent migration on a real local cluster: unmodified workload
# programs started with mosrun on node1 move to other nodes and back while
# they run, and what they see (memory, registers, files, pipes, sockets,
# signals, clocks, exit status) is what they would see at home.

. "$(atf_get_srcdir)/lib.sh"

wl() { echo "$ROAM_TESTS/workloads/$1"; }

atf_test_case cpu_round_trip cleanup
cpu_round_trip_head() {
  atf_set descr "a CPU loop moves 1 -> 2 -> 3 -> home while it computes; its body runs as nobody, filtered, with no descriptors"
  atf_set require.user root
  atf_set timeout 180
}
cpu_round_trip_body() {
  roam_init
  cluster_up 3
  pid=$(job_start 1 cpu "$(wl cpu_loop)")
  wait_line cpu.out '^READY'
  migrate_ok 1 "$pid" 2
  body=$(body_pid 2)
  [ -n "$body" ] || atf_fail "no body runs as nobody on node 2"
  atf_check -o "match:NoNewPrivs:[[:space:]]+1" -o "match:Seccomp:[[:space:]]+2" mosctl cluster exec 2 -- cat /proc/"$body"/status
  atf_check -o empty mosctl cluster exec 2 -- ls /proc/"$body"/fd
  # The deputy at home keeps its pid but no longer its memory.
  rss=$(on_node 1 mosps --json | python3 -c "import json,sys; print(next(p['rss'] for p in json.load(sys.stdin) if p['pid']==$pid))")
  [ "$rss" -lt 262144 ] || atf_fail "the deputy still holds $rss bytes"
  migrate_ok 1 "$pid" node3
  [ -z "$(body_pid 2)" ] || atf_fail "a body is left on node 2"
  migrate_ok 1 "$pid" home
  [ -z "$(body_pid 3)" ] || atf_fail "a body is left on node 3"
  migrate_ok 1 "$pid" 2
  on_node 1 kill -USR1 "$pid"
  expect_status cpu 0
  atf_check -o "match:^PASS$" cat cpu.out
}
cpu_round_trip_cleanup() { cluster_down; }

atf_test_case memory_1g cleanup
memory_1g_head() {
  atf_set descr "a 1 GiB memory pattern survives a move out and back, byte for byte"
  atf_set require.user root
  atf_set timeout 300
}
memory_1g_body() {
  roam_init
  cluster_up 2
  pid=$(job_start 1 mem "$(wl mem_pattern)" 1024)
  wait_line mem.out '^READY' 1200
  migrate_ok 1 "$pid" 2
  migrate_ok 1 "$pid" home
  on_node 1 kill -USR1 "$pid"
  expect_status mem 0 2400
  atf_check -o "match:^PASS$" cat mem.out
  cat migrate.log
  # Its 1 GiB was faulted in at home before the body froze to come back.
  grep "faulted in at home" "$(mosd_log 1)" | grep -Eq ': (10[0-9][0-9]|9[0-9][0-9]) MiB faulted' ||
    atf_fail "home did not fault the memory in before the freeze: $(grep 'coming home' "$(mosd_log 1)")"
}
memory_1g_cleanup() { cluster_down; }

atf_test_case fpu_registers cleanup
fpu_registers_head() {
  atf_set descr "live x87/SSE/AVX registers survive two moves"
  atf_set require.user root
  atf_set timeout 120
}
fpu_registers_body() {
  roam_init
  cluster_up 3
  pid=$(job_start 1 fpu "$(wl fpu_regs)")
  wait_line fpu.out '^READY'
  migrate_ok 1 "$pid" 2
  migrate_ok 1 "$pid" 3
  on_node 1 kill -USR1 "$pid"
  expect_status fpu 0
  atf_check -o "match:^PASS" cat fpu.out
}
fpu_registers_cleanup() { cluster_down; }

atf_test_case file_at_home cleanup
file_at_home_head() {
  atf_set descr "a file appended to while away is home's file (node /tmp dirs differ), byte for byte"
  atf_set require.user root
  atf_set timeout 120
}
file_at_home_body() {
  roam_init
  cluster_up 2
  pid=$(job_start 1 app "$(wl file_append)" /tmp/roam-append.txt)
  wait_line app.out '^READY'
  sleep 0.3
  migrate_ok 1 "$pid" 2
  sleep 0.5
  on_node 2 test ! -e /tmp/roam-append.txt || atf_fail "the file was created on the remote node"
  migrate_ok 1 "$pid" home
  sleep 0.2
  migrate_ok 1 "$pid" 2
  sleep 0.3
  on_node 1 kill -USR1 "$pid"
  expect_status app 0
  atf_check -o "match:^PASS [0-9]+ records" cat app.out
  n=$(sed -n 's/^PASS \([0-9]*\) records.*/\1/p' app.out)
  [ "$(on_node 1 wc -c </dev/null /tmp/roam-append.txt | awk '{print $1}')" = "$((n * 13))" ] ||
    atf_fail "the file at home does not hold $n records"
  # It came home while it wrote: home laid the deputy out first, and the
  # writes made meanwhile found their memory there.
  grep -q "faulted in at home" "$(mosd_log 1)" || atf_fail "home did not prepare for the coming home"
}
file_at_home_cleanup() { cluster_down; }

atf_test_case identity_away cleanup
identity_away_head() {
  atf_set descr "away, a process still sees home: its hostname, cwd, pid, home's /tmp; directories, pipes and epoll work"
  atf_set require.user root
  atf_set timeout 120
}
identity_away_body() {
  roam_init
  cluster_up 3
  on_node 1 sh -c "touch /tmp/roam-marker; mkdir -p /tmp/roam-dir; touch /tmp/roam-dir/a /tmp/roam-dir/b /tmp/roam-dir/c"
  pid=$(job_start 1 who "$(wl whereami)")
  wait_line who.out '^host '
  home=$(grep '^host ' who.out | head -n 1)
  echo "at home: $home"
  for n in 2 3; do
    migrate_ok 1 "$pid" "$n"
    before=$(grep -c '^host ' who.out)
    on_node 1 kill -USR2 "$pid"
    retry 100 0.05 sh -c "[ \$(grep -c '^host ' who.out) -gt $before ]" || atf_fail "no report from node $n"
    away=$(grep '^host ' who.out | tail -n 1)
    echo "at node $n: $away"
    [ "$away" = "$home" ] || atf_fail "away at node $n it saw '$away', at home '$home'"
  done
  case $home in
    "host node1 cwd $PWD pid $pid marker 1 entries 5 epoll 1 tty 0") ;;
    *) atf_fail "unexpected report at home: $home" ;;
  esac
  on_node 1 kill -USR1 "$pid"
  expect_status who 0
}
identity_away_cleanup() { cluster_down; }

atf_test_case pipe_with_home cleanup
pipe_with_home_head() {
  atf_set descr "a pipe between the migrated process and home processes keeps every line, in order"
  atf_set require.user root
  atf_set timeout 120
}
pipe_with_home_body() {
  roam_init
  cluster_up 2
  cat >pipe.sh <<SH
i=1
while [ \$i -le 300 ]; do echo \$i; i=\$((i + 1)); sleep 0.005; done | mosrun $(wl pipe_peer) >$PWD/pipe.out &
echo \$! >$PWD/pipe.pid
wait \$!
echo \$? >$PWD/pipe.status
SH
  on_node 1 sh pipe.sh </dev/null >/dev/null 2>&1 &
  wait_line pipe.out '^READY'
  pid=$(cat pipe.pid)
  wait_line pipe.out '^20$'
  migrate_ok 1 "$pid" 2
  wait_line pipe.out '^200$'
  migrate_ok 1 "$pid" home
  expect_status pipe 0
  python3 - <<'PY' || atf_fail "pipe output is wrong"
lines = [l for l in open("pipe.out").read().split("\n") if l and not l.startswith("READY")]
assert lines == [str(2 * i) for i in range(1, 301)], lines[:5]
PY
}
pipe_with_home_cleanup() { cluster_down; }

atf_test_case tcp_connection cleanup
tcp_connection_head() {
  atf_set descr "an open TCP connection to a server at home keeps working across two moves"
  atf_set require.user root
  atf_set timeout 120
}
tcp_connection_body() {
  roam_init
  cluster_up 3
  on_node 1 sh -c "$(wl tcp_echo) 0 >$PWD/echo.out 2>&1 & echo \$! >$PWD/echo.pid" </dev/null >/dev/null 2>&1
  wait_line echo.out '^LISTENING'
  port=$(awk '/^LISTENING/ {print $2}' echo.out)
  pid=$(job_start 1 tcp "$(wl tcp_client)" 127.0.0.1 "$port")
  wait_line tcp.out '^READY'
  sleep 0.3
  migrate_ok 1 "$pid" 2
  sleep 0.5
  migrate_ok 1 "$pid" 3
  sleep 0.5
  on_node 1 kill -USR1 "$pid"
  expect_status tcp 0
  atf_check -o "match:^PASS [0-9]+" cat tcp.out
  # The remote node cannot reach the home's loopback server by itself.
  on_node 2 "$(wl tcp_client)" 127.0.0.1 "$port" </dev/null >direct.out 2>&1 && atf_fail "node 2 reached node 1's loopback"
  atf_check -o "match:FAIL: connect" cat direct.out
}
tcp_connection_cleanup() {
  roam_init
  [ -f echo.pid ] && on_node 1 kill "$(cat echo.pid)" 2>/dev/null
  cluster_down
}

atf_test_case signal_storm cleanup
signal_storm_head() {
  atf_set descr "a handler counts a storm of signals sent to the home pid during moves (out, on to another node through home, back): every queued one arrives"
  atf_set require.user root
  atf_set timeout 180
}
signal_storm_body() {
  roam_init
  cluster_up 3
  pid=$(job_start 1 storm "$(wl signal_storm)")
  wait_line storm.out '^READY'
  on_node 1 "$(wl signal_sender)" "$pid" 1000 >sender.out 2>&1 &
  sender=$!
  # Round trips for as long as the storm lasts (signals cross every move).
  moves=0
  while kill -0 $sender 2>/dev/null || [ $moves -lt 2 ]; do
    migrate_ok 1 "$pid" 2
    migrate_ok 1 "$pid" 3
    migrate_ok 1 "$pid" home
    moves=$((moves + 1))
  done
  migrate_ok 1 "$pid" 2
  wait $sender
  echo "$moves round trips during the storm"
  on_node 1 kill -USR1 "$pid"
  expect_status storm 0
  cat sender.out storm.out
  atf_check -o "match:^PASS" cat storm.out
  atf_check -o "match:rt=1000 rtsum=500500" cat storm.out
  usr2=$(sed -n 's/^COUNTS usr2=\([0-9]*\).*/\1/p' storm.out)
  [ "$usr2" -ge 1 ] && [ "$usr2" -le 1000 ] || atf_fail "SIGUSR2 count $usr2"
}
signal_storm_cleanup() { cluster_down; }

atf_test_case instant_calls_under_signals cleanup
instant_calls_under_signals_head() {
  atf_set descr "calls that never block (times, getrusage, CPU clocks), answered by the body's agent, never fail with EINTR under a storm of signals whose handlers lack SA_RESTART"
  atf_set require.user root
  atf_set timeout 300
}
instant_calls_under_signals_body() {
  roam_init
  cluster_up 2
  pid=$(job_start 1 inst "$(wl signal_storm)" instant)
  wait_line inst.out '^READY'
  migrate_ok 1 "$pid" 2
  on_node 1 "$(wl signal_sender)" "$pid" 2000 >sender.out 2>&1 || { cat sender.out inst.out; atf_fail "the sender failed"; }
  [ "$(where 1 "$pid")" = 2 ] || atf_fail "the process left node 2 during the storm"
  on_node 1 kill -USR1 "$pid"
  expect_status inst 0
  cat inst.out
  atf_check -o "match:^PASS" cat inst.out
  atf_check -o "match:rt=2000 rtsum=2001000" cat inst.out
}
instant_calls_under_signals_cleanup() { cluster_down; }

atf_test_case blocking_read cleanup
blocking_read_head() {
  atf_set descr "a read blocked at home while away is interrupted by a signal exactly as Linux would (EINTR / SA_RESTART)"
  atf_set require.user root
  atf_set timeout 120
}
blocking_read_body() {
  roam_init
  cluster_up 2
  for mode in norestart restart; do
    cat >br-$mode.sh <<SH
rm -f /tmp/br.fifo; mkfifo /tmp/br.fifo
exec 7<>/tmp/br.fifo
mosrun $(wl blocking_read) $mode </tmp/br.fifo >$PWD/br-$mode.out 2>&1 &
echo \$! >$PWD/br-$mode.pid
while [ ! -e $PWD/br-$mode.go ]; do sleep 0.05; done
echo hello >&7
wait \$!
echo \$? >$PWD/br-$mode.status
SH
    on_node 1 sh br-$mode.sh </dev/null >/dev/null 2>&1 &
    wait_line br-$mode.out '^READY'
    pid=$(cat br-$mode.pid)
    sleep 0.2
    migrate_ok 1 "$pid" 2
    sleep 0.2
    on_node 1 kill -USR2 "$pid"
    sleep 0.3
    touch br-$mode.go
    expect_status br-$mode 0
    cat br-$mode.out
    atf_check -o "match:^PASS" cat br-$mode.out
  done
  atf_check -o "match:^EINTR" cat br-norestart.out
  atf_check -o "match:^HANDLER [1-9]" cat br-restart.out
}
blocking_read_cleanup() { cluster_down; }

atf_test_case blocking_calls_interrupted cleanup
blocking_calls_interrupted_head() {
  atf_set descr "poll, accept and wait4 blocked at home while away are interrupted by a signal exactly as Linux would (EINTR / SA_RESTART), go on after a stop, and let the process come home"
  atf_set require.user root
  atf_set require.progs python3
  atf_set timeout 240
}
blocking_calls_interrupted_body() {
  roam_init
  cluster_up 2
  body_stopped() { on_node 2 grep -q '^State:[[:space:]]*T' /proc/"$1"/status; }
  for mode in norestart restart; do
    out=bc-$mode.out
    pid=$(job_start 1 bc-$mode "$(wl blocking_calls)" $mode)
    wait_line $out '^CHILD'
    port=$(awk '/^PORT/ {print $2}' $out)
    child=$(awk '/^CHILD/ {print $2}' $out)
    migrate_ok 1 "$pid" 2
    on_node 1 kill -USR1 "$pid"
    # Each call is seen blocked in the deputy at home (its /proc/PID/syscall)
    # before the signal goes to the home pid.
    wait_line $out '^POLL'
    retry 400 0.05 in_call 1 "$pid" 7 271 || atf_fail "$mode: poll does not block at home"
    on_node 1 kill -USR2 "$pid"
    wait_line $out '^poll EINTR'

    wait_line $out '^ACCEPT'
    retry 400 0.05 in_call 1 "$pid" 43 288 || atf_fail "$mode: accept does not block at home"
    # Stopped and continued with no handler to run, it goes on (the kernel
    # restarts it), SA_RESTART or not.
    body=$(body_pid 2)
    [ -n "$body" ] || atf_fail "$mode: no body on node 2"
    on_node 1 kill -STOP "$pid"
    retry 400 0.05 body_stopped "$body" || atf_fail "$mode: the body did not stop"
    on_node 1 kill -CONT "$pid"
    retry 400 0.05 in_call 1 "$pid" 43 288 || atf_fail "$mode: accept does not block at home again after SIGCONT"
    on_node 1 kill -USR2 "$pid"
    wait_line $out '^HANDLER 2'
    if [ $mode = restart ]; then
      retry 400 0.05 in_call 1 "$pid" 43 288 || atf_fail "restart: accept is not restarted at home"
    else
      wait_line $out '^accept EINTR'
    fi
    on_node 1 python3 -c "import socket; s = socket.create_connection(('127.0.0.1', $port)); s.sendall(b'hi'); s.close()"
    wait_line $out '^accept (restarted|done)'

    wait_line $out '^WAIT'
    retry 400 0.05 in_call 1 "$pid" 61 || atf_fail "$mode: wait4 does not block at home"
    on_node 1 kill -USR2 "$pid"
    wait_line $out '^HANDLER 3'
    if [ $mode = restart ]; then
      retry 400 0.05 in_call 1 "$pid" 61 || atf_fail "restart: wait4 is not restarted at home"
      [ "$(where 1 "$pid")" = 2 ] || atf_fail "restart: the process left node 2"
    else
      wait_line $out '^wait4 EINTR'
      # Called again, it blocks at home; brought home meanwhile, the process
      # goes on waiting there, natively.
      retry 400 0.05 in_call 1 "$pid" 61 || atf_fail "norestart: the second wait4 does not block at home"
      migrate_ok 1 "$pid" home
    fi
    on_node 1 kill -TERM "$child"
    expect_status bc-$mode 0
    cat $out
    atf_check -o "match:^PASS" cat $out
  done
  atf_check -o "match:^poll EINTR" -o "match:^accept EINTR" -o "match:^wait4 EINTR" cat bc-norestart.out
  atf_check -o "match:^poll EINTR" -o "match:^accept restarted" -o "match:^wait4 restarted" \
    -o "not-match:(accept|wait4) EINTR" cat bc-restart.out
}
blocking_calls_interrupted_cleanup() { cluster_down; }

atf_test_case blocking_write cleanup
blocking_write_head() {
  atf_set descr "a write to a full pipe at home blocks while away and is interrupted (EINTR) or restarted (SA_RESTART) by a signal as Linux does; a write to a pipe without reader kills with SIGPIPE"
  atf_set require.user root
  atf_set timeout 180
}
blocking_write_body() {
  roam_init
  cluster_up 2
  for mode in norestart restart; do
    out=bw-$mode.out
    pid=$(job_start 1 bw-$mode "$(wl blocking_write)" $mode)
    wait_line $out '^CHILD'
    child=$(awk '/^CHILD [0-9]/ {print $2}' $out)
    migrate_ok 1 "$pid" 2
    body=$(body_pid 2)
    [ -n "$body" ] || atf_fail "$mode: no body on node 2"
    on_node 1 kill -USR1 "$pid"
    wait_line $out '^WRITE'
    # The body waits in its write (1) for home's answer.
    retry 400 0.05 in_call 2 "$body" 1 || atf_fail "$mode: the write does not block"
    sleep 0.3
    in_call 2 "$body" 1 || atf_fail "$mode: the write to a full pipe did not stay blocked"
    on_node 1 kill -USR2 "$pid"
    wait_line $out '^HANDLER 1'
    if [ $mode = norestart ]; then
      wait_line $out '^write EINTR'
    fi
    retry 400 0.05 in_call 2 "$body" 1 || atf_fail "$mode: the write is not blocked (again) after the handler"
    [ "$(where 1 "$pid")" = 2 ] || atf_fail "$mode: the process left node 2"
    on_node 1 kill -USR1 "$child"
    wait_line $out '^write done 65536'
    wait_line $out '^CHILD READ'
    full=$(awk '/^FULL/ {print $2}' $out)
    read_all=$(awk '/^CHILD READ/ {print $3}' $out)
    [ "$read_all" = $((full + 65536)) ] || atf_fail "$mode: the reader got $read_all bytes, not $full + 65536"
    expect_status bw-$mode 141
    cat $out
    atf_check -o "match:^SIGPIPE" -o "not-match:FAIL" cat $out
  done
  atf_check -o "match:^write EINTR" cat bw-norestart.out
  atf_check -o "not-match:EINTR" cat bw-restart.out
}
blocking_write_cleanup() { cluster_down; }

atf_test_case fsize_limit cleanup
fsize_limit_head() {
  atf_set descr "a file size limit set while away applies at home: a write stops at it, the next fails with EFBIG, and SIGXFSZ kills"
  atf_set require.user root
  atf_set timeout 120
}
fsize_limit_body() {
  roam_init
  cluster_up 2
  pid=$(job_start 1 fs "$(wl fsize_limit)" /tmp/roam-fsize.txt)
  wait_line fs.out '^READY'
  migrate_ok 1 "$pid" 2
  on_node 1 kill -USR1 "$pid"
  expect_status fs 153
  cat fs.out
  atf_check -o "match:^EFBIG" -o "not-match:FAIL" cat fs.out
  [ "$(on_node 1 wc -c </dev/null /tmp/roam-fsize.txt | awk '{print $1}')" = 4096 ] ||
    atf_fail "the file at home does not hold the 4096 bytes up to the limit"
  on_node 2 test ! -e /tmp/roam-fsize.txt || atf_fail "the file was created on the remote node"
}
fsize_limit_cleanup() { cluster_down; }

atf_test_case terminal cleanup
terminal_head() {
  atf_set descr "an interactive program on a terminal (tmux) is moved and keeps talking"
  atf_set require.user root
  atf_set require.progs tmux
  atf_set timeout 120
}
terminal_body() {
  roam_init
  cluster_up 2
  sess="roam-term-$$"
  echo "$sess" >session
  tmux new-session -d -s "$sess" -x 120 -y 20 \
    "mosctl cluster exec node1 -- sh -c 'mosrun $(wl interactive) | tee $PWD/term.out'; sleep 30"
  wait_line term.out '^READY'
  pid=$(awk '/^READY/ {print $2}' term.out)
  tmux send-keys -t "$sess" "before" Enter
  wait_line term.out 'echo: before'
  migrate_ok 1 "$pid" 2
  tmux send-keys -t "$sess" "while away" Enter
  wait_line term.out 'echo: while away'
  migrate_ok 1 "$pid" home
  tmux send-keys -t "$sess" "quit" Enter
  wait_line term.out 'bye'
}
terminal_cleanup() {
  [ -f session ] && tmux kill-session -t "$(cat session)" 2>/dev/null
  cluster_down
}

# node1_shell SESSION: an interactive bash on node 1 in a tmux session (its
# terminal), named in ./session for the cleanup.
node1_shell() {
  echo "$1" >session
  tmux new-session -d -s "$1" -x 150 -y 30 "mosctl cluster exec node1 -- bash --norc --noprofile -i; sleep 30"
  sleep 0.5
}

atf_test_case job_control cleanup
job_control_head() {
  atf_set descr "^Z at the terminal stops a moved job (the shell sees it stop), fg continues it away, and it keeps talking"
  atf_set require.user root
  atf_set require.progs tmux bash
  atf_set timeout 120
}
job_control_body() {
  roam_init
  cluster_up 2
  sess="roam-jc-$$"
  node1_shell "$sess"
  tmux send-keys -t "$sess" "mosrun $(wl interactive) | tee $PWD/jc.out" Enter
  wait_line jc.out '^READY'
  pid=$(awk '/^READY/ {print $2}' jc.out)
  migrate_ok 1 "$pid" 2
  tmux send-keys -t "$sess" "before stop" Enter
  wait_line jc.out 'echo: before stop'
  tmux send-keys -t "$sess" C-z
  stopped() { tmux capture-pane -p -t "$sess" | grep -q Stopped; }
  retry 100 0.1 stopped || { tmux capture-pane -p -t "$sess"; atf_fail "the shell did not see the job stop"; }
  body=$(body_pid 2)
  [ -n "$body" ] || atf_fail "the body is gone"
  on_node 2 grep -q '^State:.*T' /proc/"$body"/status || atf_fail "the body is not stopped"
  tmux send-keys -t "$sess" "fg" Enter
  tmux send-keys -t "$sess" "after fg" Enter
  wait_line jc.out 'echo: after fg'
  [ "$(where 1 "$pid")" = 2 ] || atf_fail "the job is no longer at node 2"
  tmux send-keys -t "$sess" "quit" Enter
  wait_line jc.out 'bye'
}
job_control_cleanup() {
  [ -f session ] && tmux kill-session -t "$(cat session)" 2>/dev/null
  cluster_down
}

atf_test_case background_tty_read cleanup
background_tty_read_head() {
  atf_set descr "a moved job put in the background (bg) that reads its terminal is stopped by job control (SIGTTIN) and takes none of the shell's input; fg gives it the terminal back"
  atf_set require.user root
  atf_set require.progs tmux bash
  atf_set timeout 120
}
background_tty_read_body() {
  roam_init
  cluster_up 2
  sess="roam-bg-$$"
  node1_shell "$sess"
  tmux send-keys -t "$sess" "mosrun $(wl interactive) > $PWD/bg.out" Enter
  wait_line bg.out '^READY'
  pid=$(awk '/^READY/ {print $2}' bg.out)
  migrate_ok 1 "$pid" 2
  tmux send-keys -t "$sess" "first" Enter
  wait_line bg.out 'echo: first'
  pane() { tmux capture-pane -p -t "$sess"; }
  tmux send-keys -t "$sess" C-z
  retry 100 0.1 sh -c "tmux capture-pane -p -t $sess | grep -q Stopped" || { pane; atf_fail "the job did not stop on ^Z"; }
  # In the background it reads its terminal again: Linux stops it (SIGTTIN).
  tmux send-keys -t "$sess" "bg" Enter
  sleep 1
  tmux send-keys -t "$sess" 'echo shell-has-it-$((6*7))' Enter
  retry 100 0.1 sh -c "tmux capture-pane -p -t $sess | grep -q '^shell-has-it-42'" ||
    { pane; cat bg.out; atf_fail "the shell's input went to the background job"; }
  grep -q 'shell-has-it' bg.out && atf_fail "the background job read the shell's input"
  tmux send-keys -t "$sess" "jobs" Enter
  retry 100 0.1 sh -c "tmux capture-pane -p -t $sess | grep -q 'Stopped.*interactive'" ||
    { pane; atf_fail "the background job reading its terminal was not stopped"; }
  [ "$(where 1 "$pid")" = 2 ] || atf_fail "the job is no longer at node 2"
  tmux send-keys -t "$sess" "fg" Enter
  tmux send-keys -t "$sess" "after fg" Enter
  wait_line bg.out 'echo: after fg'
  tmux send-keys -t "$sess" "quit" Enter
  wait_line bg.out 'bye'
}
background_tty_read_cleanup() {
  [ -f session ] && tmux kill-session -t "$(cat session)" 2>/dev/null
  cluster_down
}

atf_test_case fork_exec_goes_home cleanup
fork_exec_goes_home_head() {
  atf_set descr "a program that forks and execs while away goes home to do it and runs on correctly"
  atf_set require.user root
  atf_set timeout 120
}
fork_exec_goes_home_body() {
  roam_init
  cluster_up 2
  pid=$(job_start 1 fe "$(wl fork_exec)")
  wait_line fe.out '^READY'
  on_node 1 migrate "$pid" 2 >>migrate.log 2>&1 || atf_fail "migrate failed"
  # Its next fork brings it home.
  retry 100 0.05 sh -c "[ \"\$(mosctl cluster exec 1 -- mosps --json | python3 -c 'import json,sys; print(next(p[\"where\"] for p in json.load(sys.stdin) if p[\"pid\"]==$pid))')\" = 1 ]" ||
    atf_fail "the process did not come home for its fork"
  grep -q "clone needs home\|fork needs home" "$(mosd_log 1)" || atf_fail "no reason logged for going home"
  sleep 0.3
  on_node 1 kill -USR1 "$pid"
  expect_status fe 0
  atf_check -o "match:^PASS [0-9]+ children" cat fe.out
}
fork_exec_goes_home_cleanup() { cluster_down; }

atf_test_case scripts cleanup
scripts_head() {
  atf_set descr "python3 and /bin/sh scripts moved mid-run, forking and execing while away, give the native output"
  atf_set require.user root
  atf_set require.progs python3
  atf_set timeout 180
}
scripts_body() {
  roam_init
  cluster_up 2
  cat >work.py <<'PY'
import subprocess, sys, time, hashlib
print("READY", flush=True)
h = hashlib.sha256()
for i in range(60):
    h.update(str(i).encode())
    out = subprocess.run(["echo", "step", str(i)], capture_output=True, text=True).stdout
    h.update(out.encode())
    time.sleep(0.02)
print(h.hexdigest(), flush=True)
PY
  cat >work.sh <<'SH'
echo READY
i=0; acc=0
while [ $i -lt 60 ]; do acc=$(( (acc * 31 + $(echo $i | wc -c)) % 1000003 )); i=$((i + 1)); sleep 0.02; done
echo "acc=$acc"
SH
  python3 work.py | tail -n 1 >py.native
  sh work.sh | tail -n 1 >sh.native
  pid=$(job_start 1 py python3 "$PWD/work.py")
  wait_line py.out '^READY'
  on_node 1 migrate "$pid" 2 >>migrate.log 2>&1 || true
  pid2=$(job_start 1 shs sh "$PWD/work.sh")
  wait_line shs.out '^READY'
  on_node 1 migrate "$pid2" 2 >>migrate.log 2>&1 || true
  expect_status py 0
  expect_status shs 0
  cat migrate.log
  [ "$(tail -n 1 py.out)" = "$(cat py.native)" ] || atf_fail "python3 output differs"
  [ "$(tail -n 1 shs.out)" = "$(cat sh.native)" ] || atf_fail "sh output differs"
}
scripts_cleanup() { cluster_down; }

atf_test_case dlopen_away cleanup
dlopen_away_head() {
  atf_set descr "a moved python3 imports C extensions (dlopen) and stays away, its node mapping its own copy of each library, or a copy read at home of one only home has; a private mapping of a file too big to copy brings it home"
  atf_set require.user root
  atf_set require.progs python3
  atf_set timeout 180
}
dlopen_away_body() {
  roam_init
  cluster_up 2
  cat >mods.py <<'PY'
import signal, sys
def work():
    import bz2, decimal, hashlib, json, lzma
    blob = json.dumps({"n": [i * i for i in range(2000)]}).encode()
    assert lzma.decompress(lzma.compress(blob)) == blob and bz2.decompress(bz2.compress(blob)) == blob
    d = decimal.Decimal(1) / decimal.Decimal(7)
    return hashlib.sha256(blob + str(d).encode()).hexdigest()
if sys.argv[1] == "native":
    print(work())
    sys.exit(0)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
print("READY", flush=True)
signal.sigwait({signal.SIGUSR1})
print("IMPORTED", work(), flush=True)
import mmap, os
try:  # the error home's kernel gives: not open for reading
    mmap.mmap(os.open(sys.argv[1], os.O_WRONLY), 4096, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
    print("WRONLY mapped", flush=True)
except PermissionError:
    print("WRONLY EACCES", flush=True)
signal.sigwait({signal.SIGUSR1})
import ctypes, zlib
z = ctypes.CDLL(sys.argv[1])
z.zlibVersion.restype = ctypes.c_char_p
print("LOADED", z.zlibVersion().decode() == zlib.ZLIB_RUNTIME_VERSION, flush=True)
signal.sigwait({signal.SIGUSR1})
import mmap, os
big = mmap.mmap(os.open(sys.argv[2], os.O_RDONLY), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
print("BIG", big[-1] == ord("z") and big[0] == 0, flush=True)
signal.sigwait({signal.SIGUSR1})
PY
  want=$(python3 mods.py native)
  # A library that only home has: each node has its own /tmp.
  lib=/tmp/roam-dlopen-$$.so
  on_node 1 cp -L /lib/x86_64-linux-gnu/libz.so.1 "$lib" ||
    atf_fail "cannot copy libz into node 1's /tmp"
  on_node 2 test ! -e "$lib" || atf_fail "node 2 sees node 1's /tmp"
  big=/tmp/roam-big-$$.dat  # above the 64 MiB a node copies for a mapping
  on_node 1 sh -c "truncate -s 65M $big && printf z >>$big" || atf_fail "cannot make $big"
  pid=$(job_start 1 mods python3 "$PWD/mods.py" "$lib" "$big")
  wait_line mods.out '^READY'
  migrate_ok 1 "$pid" 2
  on_node 1 kill -USR1 "$pid"
  wait_line mods.out '^IMPORTED'
  [ "$(where 1 "$pid")" = 2 ] || { cat mods.out; atf_fail "importing C extensions sent the process home"; }
  grep -qx "IMPORTED $want" mods.out || { cat mods.out; atf_fail "the extensions computed another result away (want $want)"; }
  wait_line mods.out '^WRONLY'
  grep -qx "WRONLY EACCES" mods.out || { cat mods.out; atf_fail "mapping a write-only descriptor away did not fail with EACCES"; }
  [ "$(where 1 "$pid")" = 2 ] || atf_fail "a failed mmap sent the process home"
  on_node 1 kill -USR1 "$pid"
  wait_line mods.out '^LOADED'
  grep -qx "LOADED True" mods.out || { cat mods.out; atf_fail "the library only home has did not load right"; }
  [ "$(where 1 "$pid")" = 2 ] || atf_fail "a library only home has brought the process home"
  on_node 1 kill -USR1 "$pid"
  wait_line mods.out '^BIG'
  grep -qx "BIG True" mods.out || { cat mods.out; atf_fail "the big file read wrong"; }
  [ "$(where 1 "$pid")" = 1 ] || atf_fail "a private mapping of a 65 MiB file only home has did not bring the process home"
  on_node 1 kill -USR1 "$pid"
  expect_status mods 0
  # Which way each file came (the body's agent logs each once, as it ends).
  retry 100 0.05 grep -q "roam-dlopen-$$.so served here: a copy read at home" "$(mosd_log 2)" ||
    atf_fail "node 2 did not map a copy of the library read at home"
  grep -q "_json.*served here: this node has the same file" "$(mosd_log 2)" ||
    atf_fail "node 2 did not map its own copy of _json"
  on_node 1 rm -f "$lib" "$big"
}
dlopen_away_cleanup() { cluster_down; }

atf_test_case file_versions cleanup
file_versions_head() {
  atf_set descr "a private file mapping keeps the version it mapped: moved to a node with another version of the file, and brought home after home's copy was replaced, its pages travel"
  atf_set require.user root
  atf_set require.progs python3
  atf_set timeout 120
}
file_versions_body() {
  roam_init
  cluster_up 2
  # Each node has its own /tmp: `same` is the same file on both nodes,
  # `other` is another version on node 2.
  same=/tmp/roam-same-$$.dat
  other=/tmp/roam-other-$$.dat
  for n in 1 2; do
    on_node $n python3 -c "open('$same', 'wb').write(b'S' * 40960); open('$other', 'wb').write(b'AB'[$n - 1:$n] * 40960)" ||
      atf_fail "cannot write node $n's files"
  done
  cat >ver.py <<'PY'
import mmap, os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
maps = [mmap.mmap(os.open(p, os.O_RDONLY), 0, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ) for p in sys.argv[1:3]]
print("READY", maps[0][:1].decode(), maps[1][:1].decode(), flush=True)  # one page of each read at home
for step in ("AWAY", "HOME"):
    signal.sigwait({signal.SIGUSR1})
    print(step, bytes(maps[0]) == b"S" * 40960 and bytes(maps[1]) == b"A" * 40960, flush=True)
signal.sigwait({signal.SIGUSR1})
PY
  pid=$(job_start 1 ver python3 "$PWD/ver.py" "$same" "$other")
  wait_line ver.out '^READY S A'
  migrate_ok 1 "$pid" 2
  on_node 1 kill -USR1 "$pid"
  wait_line ver.out '^AWAY'
  # Home's copy of `same` is replaced (as a package upgrade does) while the
  # process maps node 2's.
  on_node 1 sh -c "python3 -c \"open('$same.new', 'wb').write(b'N' * 40960)\" && mv $same.new $same" ||
    atf_fail "cannot replace $same"
  migrate_ok 1 "$pid" home
  on_node 1 kill -USR1 "$pid"
  wait_line ver.out '^HOME'
  on_node 1 kill -USR1 "$pid"
  expect_status ver 0
  cat ver.out migrate.log
  grep -qx "AWAY True" ver.out || atf_fail "away, the process saw node 2's version of a file it mapped at home"
  grep -qx "HOME True" ver.out || atf_fail "back home, the process saw home's new version of a file it had mapped"
  grep -q "changed here since it left; its pages travel" "$(mosd_log 1)" || atf_fail "home did not notice its copy changed"
  retry 100 0.05 grep -q "differs here: its pages travel" "$(mosd_log 2)" || atf_fail "node 2 did not notice its version differs"
  for n in 1 2; do on_node $n rm -f "$same" "$other"; done
}
file_versions_cleanup() { cluster_down; }

atf_test_case sigchld_ignored_away cleanup
sigchld_ignored_away_head() {
  atf_set descr "SIGCHLD set to SIG_IGN while away reaches home, whose kernel then reaps the children itself: a child at home leaves no zombie and wait() says ECHILD"
  atf_set require.user root
  atf_set require.progs python3
  atf_set timeout 120
}
sigchld_ignored_away_body() {
  roam_init
  cluster_up 2
  cat >chld.py <<'PY'
import os, signal, sys, time
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
r, w = os.pipe()
kid = os.fork()
if kid == 0:
    os.close(w)
    os.read(r, 1)
    os._exit(0)
os.close(r)
print("READY", kid, flush=True)
signal.sigwait({signal.SIGUSR1})
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
os.write(w, b"x")  # the child, at home, exits now
time.sleep(0.3)
print("GONE", not os.path.exists(f"/proc/{kid}"), flush=True)
try:
    os.waitpid(kid, 0)
    print("WAIT reaped a zombie", flush=True)
except ChildProcessError:
    print("WAIT ECHILD", flush=True)
signal.sigwait({signal.SIGUSR1})
PY
  pid=$(job_start 1 chld python3 "$PWD/chld.py")
  wait_line chld.out '^READY'
  migrate_ok 1 "$pid" 2
  on_node 1 kill -USR1 "$pid"
  wait_line chld.out '^WAIT'
  [ "$(where 1 "$pid")" = 2 ] || atf_fail "the process went home"
  on_node 1 kill -USR1 "$pid"
  expect_status chld 0
  cat chld.out
  grep -qx "GONE True" chld.out || atf_fail "the child stayed a zombie at home"
  grep -qx "WAIT ECHILD" chld.out || atf_fail "wait() found the child that SIG_IGN should have reaped"
}
sigchld_ignored_away_cleanup() { cluster_down; }

atf_test_case sleep_keeps_its_length cleanup
sleep_keeps_its_length_head() {
  atf_set descr "a relative sleep (sleep 8: nanosleep with a rem pointer) moved out and back home mid-sleep sleeps only what was left, not its whole length again after each move"
  atf_set require.user root
  atf_set timeout 120
}
sleep_keeps_its_length_body() {
  roam_init
  cluster_up 2
  # Moved at 3 s and home at 5 s: 8 s in all; restarted in full after each
  # move it would take 13 s. The bounds leave seconds of slack either way.
  on_node 1 sh -c 'start=$(date +%s%N)
    mosrun sleep 8 & p=$!
    sleep 3; migrate "$p" 2 || exit 1
    sleep 2; migrate "$p" home || exit 1
    wait "$p"; rc=$?
    end=$(date +%s%N)
    echo "status $rc elapsed_ms $(( (end - start) / 1000000 ))"' >sl.out 2>&1 || { cat sl.out; atf_fail "a move failed"; }
  cat sl.out
  grep -q "moved to node 2" sl.out || atf_fail "the sleep did not move to node 2"
  grep -q "came home" sl.out || atf_fail "the sleep did not come home"
  grep -q "^status 0 " sl.out || atf_fail "sleep did not exit 0"
  ms=$(sed -n 's/^status 0 elapsed_ms \([0-9]*\)$/\1/p' sl.out)
  [ -n "$ms" ] || atf_fail "no elapsed time"
  [ "$ms" -ge 7900 ] || atf_fail "the 8 s sleep ended after $ms ms: cut short"
  [ "$ms" -lt 10500 ] || atf_fail "the 8 s sleep took $ms ms: it started over after a move"
}
sleep_keeps_its_length_cleanup() { cluster_down; }

atf_test_case clocks cleanup
clocks_head() {
  atf_set descr "CLOCK_MONOTONIC and CLOCK_BOOTTIME never jump across nodes whose clocks differ by 1000 s"
  atf_set require.user root
  atf_set timeout 120
}
clocks_body() {
  roam_init
  cluster_up 3
  pid=$(job_start 1 clk "$(wl clock_check)")
  wait_line clk.out '^READY'
  for n in 2 3 home 3 2 home; do
    migrate_ok 1 "$pid" "$n"
    sleep 0.1
  done
  on_node 1 kill -USR1 "$pid"
  expect_status clk 0
  cat clk.out
  atf_check -o "match:^PASS" cat clk.out
}
clocks_cleanup() { cluster_down; }

atf_test_case cpu_clocks cleanup
cpu_clocks_head() {
  atf_set descr "its own CPU time (CPU-time clocks, getrusage, times) counts what it used at home and never goes back while away, also moving on from one remote node to another"
  atf_set require.user root
  atf_set timeout 120
}
cpu_clocks_body() {
  roam_init
  cluster_up 3
  pid=$(job_start 1 cpu "$(wl cpu_clocks)")
  wait_line cpu.out '^READY'
  # Away only, on from node 2 to node 3 (relayed, never home): back home
  # the kernel's own figures lack the body's part, which this workload
  # would report (docs/architecture.md, "Usage").
  migrate_ok 1 "$pid" 2
  sleep 0.5
  migrate_ok 1 "$pid" 3
  sleep 0.5
  on_node 1 kill -USR1 "$pid"
  expect_status cpu 0
  cat cpu.out
  atf_check -o "match:^PASS cpu_ms=" cat cpu.out
}
cpu_clocks_cleanup() { cluster_down; }

atf_test_case timers cleanup
timers_head() {
  atf_set descr "an interval timer and a POSIX timer keep firing across moves, neither lost nor doubled"
  atf_set require.user root
  atf_set timeout 120
}
timers_body() {
  roam_init
  cluster_up 3
  pid=$(job_start 1 tm "$(wl timers)")
  wait_line tm.out '^READY'
  for n in 2 3 home 2; do
    sleep 0.3
    migrate_ok 1 "$pid" "$n"
  done
  sleep 0.5
  on_node 1 kill -USR1 "$pid"
  expect_status tm 0
  cat tm.out
  atf_check -o "match:^PASS$" cat tm.out
}
timers_cleanup() { cluster_down; }

atf_test_case hundred_moves cleanup
hundred_moves_head() {
  atf_set descr "100 moves back and forth leave the result unchanged"
  atf_set require.user root
  atf_set timeout 300
}
hundred_moves_body() {
  roam_init
  cluster_up 2
  pid=$(job_start 1 many "$(wl mem_pattern)" 16)
  wait_line many.out '^READY'
  cat >moves.sh <<SH
i=0
while [ \$i -lt 50 ]; do
  migrate $pid 2 >/dev/null || { echo "move \$i out failed"; exit 1; }
  migrate $pid home >/dev/null || { echo "move \$i home failed"; exit 1; }
  i=\$((i + 1))
done
SH
  atf_check mosctl cluster exec 1 -- sh moves.sh
  on_node 1 kill -USR1 "$pid"
  expect_status many 0
  atf_check -o "match:^PASS" cat many.out
}
hundred_moves_cleanup() { cluster_down; }

atf_test_case exit_status_away cleanup
exit_status_away_head() {
  atf_set descr "exit codes and death signals (SIGSEGV, SIGABRT) of a body reach the parent at home"
  atf_set require.user root
  atf_set timeout 120
}
exit_status_away_body() {
  roam_init
  cluster_up 2
  for m in code:7 segv abort sig:15; do
    name=ex-$(echo "$m" | tr ':' '-')
    pid=$(job_start 1 "$name" "$(wl exit_with)" "$m")
    wait_line "$name.out" '^READY'
    migrate_ok 1 "$pid" 2
    on_node 1 kill -USR1 "$pid"
    case $m in
      code:7) want=7 ;;
      segv) want=139 ;;
      abort) want=134 ;;
      sig:15) want=143 ;;
    esac
    expect_status "$name" $want
    [ -z "$(body_pid 2)" ] || atf_fail "a body is left on node 2"
  done
}
exit_status_away_cleanup() { cluster_down; }

atf_test_case killed_during_move cleanup
killed_during_move_head() {
  atf_set descr "a process killed while it moves leaves nothing behind, and its parent sees SIGKILL"
  atf_set require.user root
  atf_set timeout 120
}
killed_during_move_body() {
  roam_init
  cluster_up 2
  pid=$(job_start 1 kdm "$(wl mem_pattern)" 256)
  wait_line kdm.out '^READY' 600
  on_node 1 migrate --async "$pid" 2 >/dev/null 2>&1
  sleep 0.05
  on_node 1 kill -KILL "$pid"
  expect_status kdm 137
  retry 100 0.1 sh -c "[ -z \"\$(mosctl cluster exec 2 -- ps -eo pid=,user= | awk '\$2 == \"nobody\"')\" ]" ||
    atf_fail "a body is left on node 2"
  retry 100 0.1 sh -c "! mosctl cluster exec 1 -- ps -eo comm= | grep -qx roam-agent" || atf_fail "an agent is left on node 1"
  retry 100 0.1 sh -c "! mosctl cluster exec 2 -- ps -eo comm= | grep -qx roam-agent" || atf_fail "an agent is left on node 2"
}
killed_during_move_cleanup() { cluster_down; }

atf_test_case remote_mosd_killed cleanup
remote_mosd_killed_head() {
  atf_set descr "mosd killed on the remote node: the body dies, the deputy ends with SIGKILL, and home logs why"
  atf_set require.user root
  atf_set timeout 120
}
remote_mosd_killed_body() {
  roam_init
  cluster_up 2 --set migrate.link_timeout_ms=2000
  pid=$(job_start 1 rk "$(wl cpu_loop)")
  wait_line rk.out '^READY'
  migrate_ok 1 "$pid" 2
  on_node 2 sh -c 'kill -KILL $(cat /run/roam/mosd.pid)'
  expect_status rk 137 400
  grep -q "lost its body" "$(mosd_log 1)" || atf_fail "home did not log why the process died"
  [ -z "$(body_pid 2)" ] || atf_fail "the body runs on without its deputy"
}
remote_mosd_killed_cleanup() { cluster_down; }

atf_test_case silent_link cleanup
silent_link_head() {
  atf_set descr "a link that goes silent (home agent stopped) ends the body after the link timeout, then the deputy with SIGKILL"
  atf_set require.user root
  atf_set timeout 120
}
silent_link_body() {
  roam_init
  cluster_up 2 --set migrate.link_timeout_ms=1000
  pid=$(job_start 1 sl "$(wl cpu_loop)")
  wait_line sl.out '^READY'
  migrate_ok 1 "$pid" 2
  agent=$(on_node 1 ps -eo pid=,comm= | awk '$2 == "roam-agent" { print $1; exit }')
  [ -n "$agent" ] || atf_fail "no home agent on node 1"
  on_node 1 kill -STOP "$agent"
  retry 100 0.1 sh -c "[ -z \"\$(mosctl cluster exec 2 -- ps -eo pid=,user= | awk '\$2 == \"nobody\"')\" ]" ||
    atf_fail "the body runs on without word from home"
  grep -q "no word from home" "$(mosd_log 2)" || atf_fail "node 2 did not log why it ended the body"
  on_node 1 kill -CONT "$agent"
  expect_status sl 137 400
  grep -q "lost its body" "$(mosd_log 1)" || atf_fail "home did not log why the process died"
}
silent_link_cleanup() { cluster_down; }

atf_test_case cannot_move cleanup
cannot_move_head() {
  atf_set descr "a process that cannot move is refused with its reason and keeps running; bad requests get one line"
  atf_set require.user root
  atf_set require.progs python3
  atf_set timeout 120
}
cannot_move_body() {
  roam_init
  cluster_up 2
  cat >threads.py <<'PY'
import threading, time
t = threading.Thread(target=time.sleep, args=(60,), daemon=True)
t.start()
print("READY", flush=True)
time.sleep(60)
PY
  pid=$(job_start 1 thr python3 "$PWD/threads.py")
  wait_line thr.out '^READY'
  atf_check -s exit:1 -e "match:cannot move: has 2 threads" mosctl cluster exec 1 -- migrate "$pid" 2
  on_node 1 kill -0 "$pid" || atf_fail "the refused process died"
  [ "$(where 1 "$pid")" = 1 ] || atf_fail "the refused process is not at home"
  atf_check -s exit:1 -e "match:not a roam job" mosctl cluster exec 1 -- migrate 1 2
  atf_check -s exit:1 -e "match:not in the cluster map" mosctl cluster exec 1 -- migrate "$pid" 9
  atf_check -s exit:1 -e "match:is not a node" mosctl cluster exec 1 -- migrate "$pid" nowhere
  atf_check -s exit:2 -e "match:^migrate: " mosctl cluster exec 1 -- migrate
  on_node 1 kill "$pid"
}
cannot_move_cleanup() { cluster_down; }

atf_test_case hostile_migrations cleanup
hostile_migrations_head() {
  atf_set descr "connections to the migration port without the key, without the migration feature, or with garbage are refused and logged; moves still work"
  atf_set require.user root
  atf_set timeout 120
}
hostile_migrations_body() {
  roam_init
  cluster_up 3
  for how in "wrong-key --node 3" "valid --node 3" "garbage" "truncated" "oversized" "bad-magic --node 3"; do
    mode=${how%% *}
    flags=${how#"$mode"}
    # shellcheck disable=SC2086
    got=$(on_node 3 roam_probe "$mode" 10.77.0.1:4661 --bind 10.77.0.3 --key "$ROAM_CLUSTER_DIR/cluster.key" $flags 2>&1)
    case "$got" in
      closed*) ;;
      *) atf_fail "migration port, probe $how: expected the connection closed, got: $got" ;;
    esac
  done
  # With the key and the migration feature, but claiming node 2 from node 3's address.
  got=$(on_node 3 roam_probe valid 10.77.0.1:4661 --bind 10.77.0.3 --key "$ROAM_CLUSTER_DIR/cluster.key" --node 2 --features 4 2>&1)
  case "$got" in
    closed*) ;;
    *) atf_fail "an impostor of node 2 was not refused: $got" ;;
  esac
  retry 50 0.1 sh -c "[ \$(grep -c 'migration connection refused' $(mosd_log 1)) -ge 7 ]" ||
    { cat "$(mosd_log 1)"; atf_fail "node 1 did not log one refusal per probe"; }
  grep -q "claims node 2 but connects from 10.77.0.3" "$(mosd_log 1)" || atf_fail "the impostor's refusal does not say why"
  [ -z "$(body_pid 1)" ] || atf_fail "a probe left a body on node 1"
  pid=$(job_start 1 hm "$(wl cpu_loop)")
  wait_line hm.out '^READY'
  migrate_ok 1 "$pid" 2
  migrate_ok 1 "$pid" home
  on_node 1 kill -USR1 "$pid"
  expect_status hm 0
}
hostile_migrations_cleanup() { cluster_down; }

atf_test_case cpu_feature_refused cleanup
cpu_feature_refused_head() {
  atf_set descr "a node whose CPU lacks a feature of the home CPU (cpu-lacks:sse2 in the map) is refused with the feature's name"
  atf_set require.user root
  atf_set timeout 120
}
cpu_feature_refused_body() {
  roam_init
  cluster_up 3 --tag 2:cpu-lacks:sse2
  pid=$(job_start 1 cf "$(wl cpu_loop)")
  wait_line cf.out '^READY'
  atf_check -s exit:1 -e "match:node 2's CPU lacks sse2" mosctl cluster exec 1 -- migrate "$pid" 2
  [ "$(where 1 "$pid")" = 1 ] || atf_fail "the refused process is not at home"
  migrate_ok 1 "$pid" 3
  on_node 1 kill -USR1 "$pid"
  expect_status cf 0
  atf_check -o "match:^PASS$" cat cf.out
}
cpu_feature_refused_cleanup() { cluster_down; }

atf_test_case real_programs cleanup
real_programs_head() {
  atf_set descr "unmodified sha256sum, xz and sort moved mid-run give the output of a native run"
  atf_set require.user root
  atf_set require.progs xz sha256sum sort
  atf_set timeout 300
}
real_programs_body() {
  roam_init
  cluster_up 2
  python3 -c "
import random
r = random.Random(7)
with open('big.txt', 'w') as f:
    for i in range(600000):
        f.write('%08x %s\\n' % (r.getrandbits(32), 'x' * r.randint(0, 40)))
"
  # sha256sum is fast: it reads from a home process that feeds it for ~3 s.
  cat >feed.py <<'PY'
import sys, time
data = open(sys.argv[1], 'rb').read()
step = len(data) // 60
for i in range(0, len(data), step):
    sys.stdout.buffer.write(data[i:i + step])
    sys.stdout.flush()
    time.sleep(0.05)
PY
  for prog in sha xz sort; do
    case $prog in
      sha) cmd="sha256sum"; src="python3 $PWD/feed.py $PWD/big.txt" ;;
      xz) cmd="xz -6 -T1 -c"; src="cat $PWD/big.txt" ;;
      sort) cmd="sort --parallel=1 -S 256M"; src="cat $PWD/big.txt $PWD/big.txt $PWD/big.txt $PWD/big.txt" ;;
    esac
    $src | $cmd | sha256sum >$prog.native
    cat >run-$prog.sh <<SH
$src | mosrun $cmd | sha256sum >$PWD/$prog.moved
echo done >$PWD/$prog.done
SH
    on_node 1 sh "$PWD/run-$prog.sh" </dev/null >run-$prog.log 2>&1 &
    # The job is the roam process of node 1.
    retry 400 0.05 sh -c "mosctl cluster exec 1 -- mosps --json | python3 -c 'import json,sys; p=json.load(sys.stdin); sys.exit(0 if p else 1)'" ||
      { cat run-$prog.log; atf_fail "$prog did not start"; }
    pid=$(on_node 1 mosps --json | python3 -c "import json,sys; print(json.load(sys.stdin)[0]['pid'])")
    sleep 0.3
    on_node 1 migrate "$pid" 2 >$prog.migrate 2>&1 || { cat $prog.migrate; atf_fail "$prog could not be moved"; }
    cat $prog.migrate
    grep -q "moved to node 2" $prog.migrate || atf_fail "$prog was not moved"
    if [ $prog = sha ]; then
      # Fed for ~3 s, it is brought home while it reads: home lays it out
      # while its reads go on, into the memory home prepared.
      sleep 0.5
      on_node 1 migrate "$pid" home >$prog.home 2>&1 || { cat $prog.home; atf_fail "$prog could not come home"; }
      cat $prog.home
      grep -q "came home (laid out at home" $prog.home || atf_fail "$prog came home without a prepare phase"
    fi
    retry 1200 0.05 test -e $prog.done || atf_fail "$prog did not end"
    [ "$(cat $prog.moved)" = "$(cat $prog.native)" ] || atf_fail "$prog output differs after the move"
  done
}
real_programs_cleanup() { cluster_down; }

atf_test_case home_restore_fails cleanup
home_restore_fails_head() {
  atf_set descr "a coming home whose restore fails at home (a fault injected after the first run of pages) leaves the process computing at its node with its deputy released again; asked again, it comes home and moves on as usual, also when laying the deputy out before the freeze fails (injected)"
  atf_set require.user root
  atf_set timeout 240
}
home_restore_fails_body() {
  roam_init
  cluster_up 3
  pid=$(job_start 1 hf "$(wl mem_pattern)" 64)
  wait_line hf.out '^READY'
  migrate_ok 1 "$pid" 2
  on_node 1 sh -c "echo home-restore >/run/roam/agents/$pid.fault"
  atf_check -s exit:1 -o ignore -e "match:process $pid stays at node 2: coming home failed: fault injected after the first run of pages" \
    mosctl cluster exec 1 -- migrate "$pid" home
  on_node 1 test ! -e "/run/roam/agents/$pid.fault" || atf_fail "the fault was not taken"
  [ "$(where 1 "$pid")" = 2 ] || atf_fail "mosps does not show $pid at node 2 after the failed coming home"
  [ -n "$(body_pid 2)" ] || atf_fail "no body runs on node 2 after the failed coming home"
  # The deputy holds part of the 64 MiB the restore had mapped: released again.
  rss=$(on_node 1 mosps --json | python3 -c "import json,sys; print(next(p['rss'] for p in json.load(sys.stdin) if p['pid']==$pid))")
  [ "$rss" -lt 262144 ] || atf_fail "the deputy still holds $rss bytes after the failed coming home"
  # The same deputy takes a full restore, though laying it out before the
  # freeze fails (injected): the restore goes without.
  on_node 1 sh -c "echo home-prepare >/run/roam/agents/$pid.fault"
  migrate_ok 1 "$pid" home
  on_node 1 test ! -e "/run/roam/agents/$pid.fault" || atf_fail "the second fault was not taken"
  [ -z "$(body_pid 2)" ] || atf_fail "a body is left on node 2"
  migrate_ok 1 "$pid" 3
  migrate_ok 1 "$pid" home
  on_node 1 kill -USR1 "$pid"
  expect_status hf 0
  atf_check -o "match:^PASS$" cat hf.out
  grep -q "coming home failed, the body runs on at its node: fault injected" "$(mosd_log 1)" ||
    atf_fail "node 1's mosd log does not tell the failed coming home"
  grep -q "going home failed: fault injected.*; it runs on here" "$(mosd_log 2)" ||
    atf_fail "node 2's mosd log does not tell that the body ran on"
  grep -q "preparing the deputy for the coming home failed (fault injected before the layout): restoring without" "$(mosd_log 1)" ||
    atf_fail "node 1's mosd log does not tell the failed prepare"
}
home_restore_fails_cleanup() { cluster_down; }

atf_test_case forced_home_fails cleanup
forced_home_fails_head() {
  atf_set descr "a fork while away whose coming home fails at home (injected fault) fails with EAGAIN and the process runs on at its node; its next fork goes home and succeeds"
  atf_set require.user root
  atf_set require.progs python3
  atf_set timeout 180
}
forced_home_fails_body() {
  roam_init
  cluster_up 2
  cat >forks.py <<'PY'
import errno, os, sys, time
print("READY", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.05)
for attempt in (1, 2):
    try:
        child = os.fork()
    except OSError as e:
        print(f"fork {attempt}: {errno.errorcode[e.errno]}", flush=True)
        continue
    if child == 0:
        os._exit(7)
    _, status = os.waitpid(child, 0)
    print(f"fork {attempt}: child exited {os.waitstatus_to_exitcode(status)}", flush=True)
PY
  pid=$(job_start 1 ff python3 "$PWD/forks.py" "$PWD/go")
  wait_line ff.out '^READY'
  migrate_ok 1 "$pid" 2
  on_node 1 sh -c "echo home-restore >/run/roam/agents/$pid.fault"
  touch go
  expect_status ff 0
  cat ff.out
  grep -qx "fork 1: EAGAIN" ff.out || atf_fail "the first fork did not fail with EAGAIN"
  grep -qx "fork 2: child exited 7" ff.out || atf_fail "the second fork did not succeed at home"
  grep -q "going home failed: fault injected.*its clone fails with EAGAIN" "$(mosd_log 2)" ||
    atf_fail "node 2's mosd log does not tell that the clone failed with EAGAIN"
}
forced_home_fails_cleanup() { cluster_down; }

atf_test_case called_off_fork cleanup
called_off_fork_head() {
  atf_set descr "a fork that needs home while a move on to another node is in the air waits; when that node refuses and the move is called off, the fork is issued again and goes home (it never sees errno 513)"
  atf_set require.user root
  atf_set require.progs python3
  atf_set timeout 180
}
called_off_fork_body() {
  roam_init
  # Slow gossip: node 1 does not learn node 3's stay, node 3 refuses itself.
  cluster_up 3 --set gossip.step_ms=60000
  # After "go" it says GO, computes for 1.5 s (no forwarded call: home is
  # busy holding the plan), then forks.
  cat >fork1.py <<'PY'
import errno, os, sys, time
print("READY", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
print("GO", flush=True)
end = time.monotonic() + 1.5
while time.monotonic() < end:
    pass
try:
    child = os.fork()
except OSError as e:
    print(f"fork: {errno.errorcode.get(e.errno, e.errno)}", flush=True)
    sys.exit(1)
if child == 0:
    os._exit(7)
_, status = os.waitpid(child, 0)
print(f"fork: child exited {os.waitstatus_to_exitcode(status)}", flush=True)
PY
  pid=$(job_start 1 co python3 "$PWD/fork1.py" "$PWD/go")
  wait_line co.out '^READY'
  migrate_ok 1 "$pid" 2
  atf_check -o ignore mosctl cluster exec 3 -- mosctl stay
  # Home holds the body's plan 3 s before node 3 sees it (and refuses):
  # the fork comes to need home meanwhile, 1.5 s after GO. The move starts
  # once GO is out, so that the wait for "go" (forwarded calls) is over
  # before home stops serving to hold the plan.
  on_node 1 sh -c "echo move-on-slow >/run/roam/agents/$pid.fault"
  touch go
  wait_line co.out '^GO'
  mosctl cluster exec 1 -- migrate "$pid" 3 >mig.out 2>mig.err
  rc=$?
  cat mig.out mig.err
  [ "$rc" = 1 ] || atf_fail "migrate to the refusing node 3 exited $rc, not 1"
  grep -q "process $pid stays at node 2: moving on to node 3 failed: .*node 3 takes no guests" mig.err ||
    atf_fail "migrate did not say why the process stays at node 2"
  expect_status co 0
  cat co.out
  grep -qx "fork: child exited 7" co.out || atf_fail "the fork did not go home and succeed"
  grep -q "the move was called off: node 3 takes no guests.*; the call that waited for home is issued again" "$(mosd_log 2)" ||
    atf_fail "node 2 did not hold the fork while the move was in the air, or did not issue it again"
  grep -q "coming home (clone needs home)" "$(mosd_log 1)" || atf_fail "the fork did not bring the process home"
}
called_off_fork_cleanup() { cluster_down; }

atf_test_case mlockall_future cleanup
mlockall_future_head() {
  atf_set descr "mlockall(MCL_FUTURE) moves: what the process maps away, and after coming home, is locked (faulted in at mmap); with MCL_ONFAULT, locked and not faulted in; a root process (CAP_IPC_LOCK) is not given it in a body under a finite RLIMIT_MEMLOCK (logged), and has it again at home"
  atf_set require.user root
  atf_set require.progs prlimit setpriv
  atf_set timeout 180
}
mlockall_future_body() {
  roam_init
  cluster_up 2
  # a and b lock under the limit, as their bodies will (no CAP_IPC_LOCK);
  # c is root with CAP_IPC_LOCK under an 8 MiB limit.
  a=$(job_start 1 mla setpriv --bounding-set -ipc_lock "$(wl mlock_future)")
  b=$(job_start 1 mlb setpriv --bounding-set -ipc_lock "$(wl mlock_future)" onfault)
  c=$(job_start 1 mlc prlimit --memlock=8388608 "$(wl mlock_future)")
  wait_line mla.out '^READY'
  wait_line mlb.out '^READY'
  wait_line mlc.out '^READY'
  migrate_ok 1 "$a" 2
  on_node 1 kill -USR1 "$a"
  expect_status mla 0
  atf_check -o "match:^PASS$" cat mla.out
  migrate_ok 1 "$b" 2
  migrate_ok 1 "$b" home
  on_node 1 kill -USR1 "$b"
  expect_status mlb 0
  atf_check -o "match:^PASS$" cat mlb.out
  migrate_ok 1 "$c" 2
  migrate_ok 1 "$c" home
  grep -q "mlockall(MCL_FUTURE) left out: the process locked without bound (CAP_IPC_LOCK)" "$(mosd_log 2)" ||
    atf_fail "node 2 did not log leaving mlockall(MCL_FUTURE) out for the root process under an 8 MiB RLIMIT_MEMLOCK"
  on_node 1 kill -USR1 "$c"
  expect_status mlc 0
  atf_check -o "match:^PASS$" cat mlc.out
}
mlockall_future_cleanup() { cluster_down; }

atf_test_case seccomp_sandbox cleanup
seccomp_sandbox_head() {
  atf_set descr "a program in a seccomp sandbox of its own (ERRNO, TRAP and KILL_PROCESS rules, one filter with the LOG flag) moves with it, out and back, the body running under both of its filters and roam's, and roam's injections not tripping its KILL rule on getitimer; one whose filter hands calls to a supervisor (USER_NOTIF) is refused and runs on at home"
  atf_set require.user root
  atf_set timeout 180
}
seccomp_sandbox_body() {
  roam_init
  cluster_up 2
  pid=$(job_start 1 sb "$(wl seccomp_sandbox)")
  wait_line sb.out '^READY'
  migrate_ok 1 "$pid" 2
  body=$(body_pid 2)
  [ -n "$body" ] || atf_fail "no body runs on node 2"
  atf_check -o "match:Seccomp_filters:[[:space:]]+3" mosctl cluster exec 2 -- cat /proc/"$body"/status
  migrate_ok 1 "$pid" home
  atf_check -o "match:Seccomp_filters:[[:space:]]+2" mosctl cluster exec 1 -- cat /proc/"$pid"/status
  migrate_ok 1 "$pid" 2
  on_node 1 kill -USR1 "$pid"
  expect_status sb 0
  atf_check -o "match:^PASS$" cat sb.out
  n=$(job_start 1 sn "$(wl seccomp_sandbox)" notify)
  wait_line sn.out '^READY'
  atf_check -s exit:1 -o ignore -e "match:runs under a seccomp filter that hands calls to a supervisor \(SECCOMP_RET_USER_NOTIF\), which roam cannot carry" \
    mosctl cluster exec 1 -- migrate "$n" 2
  [ "$(where 1 "$n")" = 1 ] || atf_fail "the refused process is not at home"
  on_node 1 kill -USR1 "$n"
  expect_status sn 0
  atf_check -o "match:^PASS$" cat sn.out
}
seccomp_sandbox_cleanup() { cluster_down; }

atf_test_case move_on cleanup
move_on_head() {
  atf_set descr "a process away moves on to another remote node with its image relayed through home, nothing restored at home (the deputy stays small); a next node that refuses leaves it running where it was, unfrozen (the move is called off), and so does a link to it that breaks after the freeze (injected)"
  atf_set require.user root
  atf_set timeout 180
}
move_on_body() {
  roam_init
  # Slow gossip: node 1 does not learn node 3's stay, node 3 refuses itself.
  cluster_up 3 --set gossip.step_ms=60000
  pid=$(job_start 1 mo "$(wl mem_pattern)" 64)
  wait_line mo.out '^READY'
  migrate_ok 1 "$pid" 2
  atf_check -o ignore mosctl cluster exec 3 -- mosctl stay
  atf_check -s exit:1 -o ignore -e "match:process $pid stays at node 2: moving on to node 3 failed: .*node 3 takes no guests \(mosctl stay\)" \
    mosctl cluster exec 1 -- migrate "$pid" 3
  [ "$(where 1 "$pid")" = 2 ] || atf_fail "the process is not at node 2 after node 3 refused it"
  [ -n "$(body_pid 2)" ] || atf_fail "no body runs on node 2 after node 3 refused it"
  atf_check -o ignore mosctl cluster exec 3 -- mosctl nostay
  # The link to node 3 breaks after the body froze (injected): it runs on at node 2.
  on_node 1 sh -c "echo move-on >/run/roam/agents/$pid.fault"
  atf_check -s exit:1 -o ignore -e "match:process $pid stays at node 2: moving on to node 3 failed: node 3: fault injected after the first run relayed" \
    mosctl cluster exec 1 -- migrate "$pid" 3
  [ "$(where 1 "$pid")" = 2 ] || atf_fail "the process is not at node 2 after the link to node 3 broke"
  [ -n "$(body_pid 2)" ] || atf_fail "no body runs on node 2 after the link to node 3 broke"
  [ -z "$(body_pid 3)" ] || atf_fail "a stub is left on node 3"
  migrate_ok 1 "$pid" 3
  [ -z "$(body_pid 2)" ] || atf_fail "a body is left on node 2"
  [ -n "$(body_pid 3)" ] || atf_fail "no body runs on node 3"
  grep -q "moved from node 2 to node 3 through home" "$(mosd_log 1)" || atf_fail "node 1 did not relay the move"
  grep -q "the move was called off: node 3 takes no guests" "$(mosd_log 2)" ||
    atf_fail "node 2 did not learn before its freeze that the move was off"
  grep -q "moved on to node 3 through home: asked to node 3" "$(mosd_log 2)" ||
    atf_fail "node 2 does not log that its body moved on to node 3"
  ! grep -q "coming home (asked to node 3)" "$(mosd_log 1)" || atf_fail "the process came home on its way to node 3"
  rss=$(on_node 1 mosps --json | python3 -c "import json,sys; print(next(p['rss'] for p in json.load(sys.stdin) if p['pid']==$pid))")
  [ "$rss" -lt 262144 ] || atf_fail "the deputy holds $rss bytes after the move on"
  migrate_ok 1 "$pid" 2
  migrate_ok 1 "$pid" home
  on_node 1 kill -USR1 "$pid"
  expect_status mo 0
  atf_check -o "match:^PASS$" cat mo.out
}
move_on_cleanup() { cluster_down; }

atf_init_test_cases() {
  atf_add_test_case cpu_round_trip
  atf_add_test_case memory_1g
  atf_add_test_case fpu_registers
  atf_add_test_case file_at_home
  atf_add_test_case identity_away
  atf_add_test_case pipe_with_home
  atf_add_test_case tcp_connection
  atf_add_test_case signal_storm
  atf_add_test_case instant_calls_under_signals
  atf_add_test_case blocking_read
  atf_add_test_case blocking_calls_interrupted
  atf_add_test_case blocking_write
  atf_add_test_case fsize_limit
  atf_add_test_case terminal
  atf_add_test_case job_control
  atf_add_test_case background_tty_read
  atf_add_test_case fork_exec_goes_home
  atf_add_test_case scripts
  atf_add_test_case dlopen_away
  atf_add_test_case home_restore_fails
  atf_add_test_case forced_home_fails
  atf_add_test_case called_off_fork
  atf_add_test_case mlockall_future
  atf_add_test_case seccomp_sandbox
  atf_add_test_case move_on
  atf_add_test_case file_versions
  atf_add_test_case sigchld_ignored_away
  atf_add_test_case sleep_keeps_its_length
  atf_add_test_case clocks
  atf_add_test_case cpu_clocks
  atf_add_test_case timers
  atf_add_test_case hundred_moves
  atf_add_test_case exit_status_away
  atf_add_test_case killed_during_move
  atf_add_test_case remote_mosd_killed
  atf_add_test_case silent_link
  atf_add_test_case cannot_move
  atf_add_test_case hostile_migrations
  atf_add_test_case cpu_feature_refused
  atf_add_test_case real_programs
}
