#! /usr/bin/env atf-sh
# Bad input never crashes mosd and never gets in: bad maps, peers without the
# key or not in the map, malformed, truncated and oversized messages.

. "$(atf_get_srcdir)/lib.sh"

atf_test_case bad_config
bad_config_head() {
  atf_set descr "mosd refuses a bad cluster map with file:line, and a bad key"
  atf_set require.user root
}
bad_config_body() {
  roam_init
  mosctl keygen >key
  chmod 600 key
  printf 'node 1 10.1.2.3:4660\n# comment\nnode 2 10.1.2.4:4660\nnode two 10.1.2.5\n' >bad-number.conf
  atf_check -s exit:1 -e "match:^mosd: .*bad-number.conf:4: bad node number 'two'" mosd --config bad-number.conf --key key --node 1
  printf 'node 1 10.1.2.3\ngossip.window = lots\n' >bad-value.conf
  atf_check -s exit:1 -e "match:bad-value.conf:2: bad value 'lots' for gossip.window" mosd --config bad-value.conf --key key --node 1
  printf 'node 1 10.1.2.3\nnode 1 10.1.2.4\n' >dup.conf
  atf_check -s exit:1 -e "match:dup.conf:2: node 1 is listed twice" mosd --config dup.conf --key key --node 1
  printf 'node 1 10.1.2.3\nfrobnicate = 1\n' >unknown.conf
  atf_check -s exit:1 -e "match:unknown.conf:2: unknown setting 'frobnicate'" mosd --config unknown.conf --key key --node 1
  printf 'node 1 not-an-address\n' >addr.conf
  atf_check -s exit:1 -e "match:addr.conf:1: bad address" mosd --config addr.conf --key key --node 1
  printf 'node 1 10.1.2.3\n' >good.conf
  atf_check -s exit:1 -e "match:node 7 is not in the cluster map" mosd --config good.conf --key key --node 7
  atf_check -s exit:1 -e "match:cannot read cluster map" mosd --config missing.conf --key key --node 1
  echo nothex >badkey
  chmod 600 badkey
  atf_check -s exit:1 -e "match:expected 64 hexadecimal digits" mosd --config good.conf --key badkey --node 1
  cp key openkey
  chmod 644 openkey
  atf_check -s exit:1 -e "match:readable by others" mosd --config good.conf --key openkey --node 1
  # One line each, not a stack of text.
  mosd --config bad-number.conf --key key --node 1 2>err.txt
  [ "$(wc -l <err.txt)" -eq 1 ] || atf_fail "more than one error line: $(cat err.txt)"
  atf_check -s not-exit:0 -e match:"mosd:" mosd --no-such-flag
}

# probe MODE [flags]: misbehave towards node1 from node3's namespace, as node3.
probe() {
  mode=$1
  shift
  on_node 3 roam_probe "$mode" 10.77.0.1:4660 --bind 10.77.0.3 --key "$ROAM_CLUSTER_DIR/cluster.key" "$@"
}

# expect_probe WANT MODE [flags]: the probe's first word must be WANT (open or closed).
expect_probe() {
  _want=$1
  shift
  _got=$(probe "$@" 2>&1)
  case "$_got" in
    "$_want"*) ;;
    *) atf_fail "probe $*: expected mosd to leave the link $_want, got: $_got" ;;
  esac
}

atf_test_case hostile_peers cleanup
hostile_peers_head() {
  atf_set descr "wrong key, unknown node, impostor, malformed, truncated and oversized input are refused and logged; mosd keeps serving"
  atf_set require.user root
  atf_set timeout 240
}
hostile_peers_body() {
  roam_init
  cluster_up 3
  retry 100 0.2 all_up_at 1 3 || atf_fail "cluster did not converge"
  log=$(mosd_log 1)
  # Positive control: a well-behaved peer with the key stays connected.
  expect_probe open valid --node 3
  expect_probe closed wrong-key --node 3
  expect_probe closed unknown-node --node 9
  expect_probe closed valid --node 2  # claims node2 from node3's address
  expect_probe closed bad-magic --node 3
  expect_probe closed bad-version --node 3
  expect_probe closed garbage
  expect_probe closed truncated
  expect_probe closed oversized
  expect_probe closed malformed-gossip --node 3
  for why in "does not hold the cluster key" "node 9 is not in the cluster map" "claims node 2 but node 2 is at 10.77.0.2" \
    "bad magic" "protocol versions do not overlap" "truncated frame" "oversized frame" "cannot fit"; do
    grep -q "refused.*$why" "$log" || { cat "$log"; atf_fail "node1 did not log a refusal for: $why"; }
  done
  # Still alive and serving everyone else.
  pid=$(on_node 1 cat /run/roam/mosd.pid)
  on_node 1 kill -0 "$pid" || atf_fail "node1's mosd died"
  retry 100 0.2 all_up_at 1 3 || atf_fail "node1 no longer sees the cluster after the attacks"
  [ "$(json_get 1 "s['refused']")" -ge 9 ] || atf_fail "refusals were not counted"
}
hostile_peers_cleanup() { cluster_down; }

atf_test_case node_without_key cleanup
node_without_key_head() {
  atf_set descr "a node running mosd with another key never joins: it stays down everywhere"
  atf_set require.user root
  atf_set timeout 240
}
node_without_key_body() {
  roam_init
  cluster_up 3 --set gossip.down_after_steps=10
  retry 100 0.2 all_up_at 1 3 || atf_fail "cluster did not converge"
  atf_check -o ignore -e ignore mosctl cluster stop node3
  down_at() { [ "$(node_state "$1" 3)" = down ]; }
  retry 100 0.2 down_at 1 || atf_fail "node3 never aged out"
  # node3 comes back with a key that is not the cluster's.
  mosctl keygen >"$PWD/other.key"
  chmod 600 "$PWD/other.key"
  on_node 3 sh -c "mosd --config $ROAM_CLUSTER_DIR/cluster.conf --key $PWD/other.key --node 3 --state-dir /run/roam >>$ROAM_CLUSTER_DIR/node3/mosd.log 2>&1 &"
  refused() { grep -q "refused 10.77.0.3.*does not hold the cluster key" "$(mosd_log 1)"; }
  retry 150 0.2 refused || atf_fail "node1 never refused the keyless node3"
  [ "$(node_state 1 3)" = down ] || atf_fail "node1 does not see node3 down"
  [ "$(node_state 2 3)" = down ] || atf_fail "node2 does not see node3 down"
  # With node3 silent, node2 reaches node1 on about half of its steps, so
  # node2's age at node1 can briefly pass the threshold: up is checked as
  # "up again within a bound", not at one instant.
  up_1_2() { [ "$(node_state 1 2)" = up ]; }
  retry 100 0.2 up_1_2 || atf_fail "node1 does not see node2 up"
}
node_without_key_cleanup() { cluster_down; }

atf_test_case daemon_signals cleanup
daemon_signals_head() {
  atf_set descr "SIGHUP leaves mosd serving (with a log line); SIGTERM stops it cleanly, removing its socket"
  atf_set require.user root
  atf_set timeout 120
}
daemon_signals_body() {
  roam_init
  cluster_up 1
  pid=$(on_node 1 cat /run/roam/mosd.pid)
  on_node 1 kill -HUP "$pid"
  hup_logged() { grep -q "SIGHUP: mosd does not reload" "$(mosd_log 1)"; }
  retry 50 0.1 hup_logged || atf_fail "no log line for SIGHUP"
  atf_check -o ignore mosctl cluster exec 1 -- mosmon --once
  on_node 1 kill -TERM "$pid"
  gone() { ! on_node 1 test -e /run/roam/mosd.sock; }
  retry 50 0.1 gone || atf_fail "mosd's control socket is still there after SIGTERM"
  grep -q "shutting down" "$(mosd_log 1)" || atf_fail "no log line for SIGTERM"
  atf_check -s exit:125 -e "match:no mosd on this node" mosctl cluster exec 1 -- mosrun true
}
daemon_signals_cleanup() { cluster_down; }

atf_init_test_cases() {
  atf_add_test_case daemon_signals
  atf_add_test_case bad_config
  atf_add_test_case hostile_peers
  atf_add_test_case node_without_key
}
