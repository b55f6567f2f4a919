#! /usr/bin/env atf-sh
# The information service on a real local cluster: every node learns every
# other's load and free memory by gossip, and a silent node ages out.

. "$(atf_get_srcdir)/lib.sh"

atf_test_case all_see_all cleanup
all_see_all_head() {
  atf_set descr "on 4 nodes every node sees every other within a bounded number of gossip steps"
  atf_set require.user root
  atf_set timeout 180
}
all_see_all_body() {
  roam_init
  cluster_up 4 --set gossip.window=2
  for i in 1 2 3 4; do
    retry 100 0.2 all_up_at $i 4 || atf_fail "node$i does not see all 4 nodes up"
    # The bound is in gossip steps (this node's sent messages), not seconds:
    # with 4 nodes and window 2 each entry needs a few hops.
    steps=$(json_get $i "s['gossip_sent']")
    echo "node$i: converged after at most $steps steps"
    [ "$steps" -le 40 ] || atf_fail "node$i needed $steps steps to see every node"
    # What it knows is real data: memory and CPUs of every node.
    json_get $i "all(n['total_mem'] > 0 and n['free_mem'] > 0 and n['ncpus'] >= 1 for n in s['nodes'])" >ok.txt
    atf_check -o "inline:True\n" cat ok.txt
    # Information is fresh: every entry younger than the down threshold.
    # (Ages are random; "fresh" means all entries under the threshold at one
    # of the samples, not at every instant.)
    fresh() { [ "$(json_get $i "max(n['age_ms'] for n in s['nodes']) < s['down_after_steps'] * s['step_ms']")" = True ]; }
    retry 50 0.2 fresh || atf_fail "node$i holds information older than the down threshold"
  done
  # Gossip carries load: make node2 busy and watch node1 see it rise.
  on_node 2 sh -c 'for k in 1 2 3 4; do (while :; do :; done) & done; sleep 60' >/dev/null 2>&1 &
  busy=$!
  busy_load() { [ "$(json_get 1 "next(n['load'] for n in s['nodes'] if n['node']==2) > 1.0")" = True ]; }
  retry 100 0.2 busy_load || atf_fail "node1 never saw node2's load rise above 1.0"
  kill "$busy" 2>/dev/null
  # The busy loops live in node2's PID namespace; the cluster's cleanup ends them.
}
all_see_all_cleanup() { cluster_down; }

atf_test_case ages_out_and_returns cleanup
ages_out_and_returns_head() {
  atf_set descr "a node whose mosd stops ages out and is marked down, and is up again when it returns"
  atf_set require.user root
  atf_set timeout 180
}
ages_out_and_returns_body() {
  roam_init
  cluster_up 3 --set gossip.down_after_steps=10
  retry 100 0.2 all_up_at 1 3 || atf_fail "node1 does not see all nodes up"
  atf_check -o ignore -e ignore mosctl cluster stop node3
  down_at() { [ "$(node_state "$1" 3)" = down ]; }
  retry 100 0.2 down_at 1 || atf_fail "node1 never marked the stopped node3 down"
  retry 100 0.2 down_at 2 || atf_fail "node2 never marked the stopped node3 down"
  age=$(json_get 1 "next(n['age_ms'] for n in s['nodes'] if n['node']==3)")
  [ "$age" -ge 2000 ] || atf_fail "node3 is down with an age of only $age ms (threshold 10 x 200 ms)"
  # The others stay up meanwhile.
  # With node3 silent, node2 reaches node1 on about half of its steps, so
  # node2's age at node1 can briefly pass the threshold: up is checked as
  # "up again within a bound", not at one instant.
  up_1_2() { [ "$(node_state 1 2)" = up ]; }
  retry 100 0.2 up_1_2 || atf_fail "node1 does not see node2 up"
  atf_check -o ignore -e ignore mosctl cluster start node3
  up_at() { [ "$(node_state "$1" 3)" = up ]; }
  retry 100 0.2 up_at 1 || atf_fail "node1 never saw node3 come back"
  retry 100 0.2 up_at 2 || atf_fail "node2 never saw node3 come back"
  retry 100 0.2 all_up_at 3 3 || atf_fail "the returned node3 does not see the others"
}
ages_out_and_returns_cleanup() { cluster_down; }

atf_test_case mosmon_live cleanup
mosmon_live_head() {
  atf_set descr "mosmon's live ncurses view shows every node in a terminal (tmux) and quits on q"
  atf_set require.user root
  atf_set require.progs tmux
  atf_set timeout 120
}
mosmon_live_body() {
  roam_init
  cluster_up 3
  retry 100 0.2 all_up_at 2 3 || atf_fail "cluster did not converge"
  sess="roam-mosmon-$$"
  echo "$sess" >session
  tmux new-session -d -s "$sess" -x 132 -y 20 "mosctl cluster exec node2 -- mosmon --interval 200; echo mosmon-exit=\$? >$PWD/exit.txt; sleep 30"
  screen_ok() {
    tmux capture-pane -p -t "$sess" >screen.txt
    grep -q "as seen from node2" screen.txt && grep -q "^node1 .* up " screen.txt &&
      grep -q "^node2 .* self " screen.txt && grep -q "^node3 .* up " screen.txt
  }
  retry 100 0.1 screen_ok || { cat screen.txt; atf_fail "mosmon's screen does not show the three nodes"; }
  tmux send-keys -t "$sess" q
  quit() { grep -q "mosmon-exit=0" exit.txt 2>/dev/null; }
  retry 100 0.1 quit || atf_fail "mosmon did not quit on q with status 0"
}
mosmon_live_cleanup() {
  [ -f session ] && tmux kill-session -t "$(cat session)" 2>/dev/null
  cluster_down
}

atf_init_test_cases() {
  atf_add_test_case mosmon_live
  atf_add_test_case all_see_all
  atf_add_test_case ages_out_and_returns
}
