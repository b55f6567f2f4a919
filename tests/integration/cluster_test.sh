#! /usr/bin/env atf-sh
# The local cluster: every node is its own set of namespaces with its own mosd,
# and `down` leaves nothing behind, even after crashes.

. "$(atf_get_srcdir)/lib.sh"

host_snapshot() {
  ip -o link show | awk -F': ' '{print $2}' | sort >"$1.links"
  awk '{print $5}' /proc/self/mountinfo | sort >"$1.mounts"
  ls /run/netns 2>/dev/null | sort >"$1.netns"
  find /sys/fs/cgroup -maxdepth 3 -type d -name 'roam*' 2>/dev/null | sort >"$1.cgroups"
}

# Nothing the cluster made may remain: processes, interfaces, mounts, named
# network namespaces, cgroups, its directory.
assert_nothing_left() {
  host_snapshot after
  for kind in links mounts netns cgroups; do
    diff -u "before.$kind" "after.$kind" >"diff.$kind" || {
      cat "diff.$kind"
      atf_fail "cluster left $kind behind"
    }
  done
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "--config $ROAM_CLUSTER_DIR/"; then
      atf_fail "process ${p#/proc/} still runs: $(tr '\0' ' ' <"$p/cmdline")"
    fi
  done
  [ ! -e "$ROAM_CLUSTER_DIR" ] || atf_fail "$ROAM_CLUSTER_DIR still exists"
}

atf_test_case up_down cleanup
up_down_head() {
  atf_set descr "3 nodes with their own hostname, /tmp, PIDs, network and clocks; down removes all"
  atf_set require.user root
  atf_set timeout 180
}
up_down_body() {
  roam_init
  host_snapshot before
  cluster_up 3
  for i in 1 2 3; do
    atf_check -o "inline:node$i\n" mosctl cluster exec $i -- hostname
    # A private PID namespace: the node's mosd is a low PID there, not the host's.
    atf_check -o "match:^[0-9]+$" mosctl cluster exec $i -- cat /run/roam/mosd.pid
    [ "$(on_node $i cat /run/roam/mosd.pid)" -lt 100 ] || atf_fail "node$i's PIDs are not its own"
  done
  # Private /tmp: a file made on node1 is not on node2 nor on the host.
  on_node 1 sh -c 'echo one >/tmp/roam-node-file'
  atf_check -o "inline:one\n" mosctl cluster exec 1 -- cat /tmp/roam-node-file
  atf_check -s not-exit:0 -e ignore mosctl cluster exec 2 -- cat /tmp/roam-node-file
  [ ! -e /tmp/roam-node-file ] || atf_fail "node1's /tmp is the host's"
  # Own network: node addresses, and nothing else than the cluster's bridge.
  atf_check -o "match:10\.77\.0\.2/24" mosctl cluster exec 2 -- ip -o -4 addr show dev eth0
  atf_check -o "not-match:default" mosctl cluster exec 2 -- ip route
  # Own clocks: CLOCK_MONOTONIC of node1 and node3 differ by their offsets.
  u1=$(on_node 1 cut -d. -f1 /proc/uptime)
  u3=$(on_node 3 cut -d. -f1 /proc/uptime)
  [ $((u3 - u1)) -gt 100 ] || atf_fail "node1 and node3 share one monotonic clock ($u1 vs $u3)"
  # The host sees none of the nodes' interfaces.
  host_snapshot during
  diff -q before.links during.links >/dev/null || atf_fail "node interfaces leaked into the host namespace"
  atf_check -o ignore mosctl cluster status
  atf_check -o ignore -e ignore mosctl cluster down
  assert_nothing_left
}
up_down_cleanup() { cluster_down; }

atf_test_case shared_folder cleanup
shared_folder_head() {
  atf_set descr "--share keeps a host folder under /tmp visible in every node; the rest of /tmp stays private"
  atf_set require.user root
  atf_set timeout 180
}
shared_folder_body() {
  roam_init
  shared=$(mktemp -d /tmp/roam-shared.XXXXXX)
  private=$(mktemp -d /tmp/roam-private.XXXXXX)
  echo "$shared $private" >dirs
  echo data >"$shared/f"
  echo data >"$private/f"
  cluster_up 2 --share "$shared"
  atf_check -o "inline:data\n" mosctl cluster exec 2 -- cat "$shared/f"
  atf_check -s not-exit:0 -e ignore mosctl cluster exec 2 -- cat "$private/f"
  # Written in a node, seen on the host: it is the same folder, not a copy.
  mosctl cluster exec 1 -- sh -c "echo from-node1 >$shared/g"
  atf_check -o "inline:from-node1\n" cat "$shared/g"
}
shared_folder_cleanup() {
  cluster_down
  [ -f dirs ] && rm -rf $(cat dirs)
}

atf_test_case down_after_crash cleanup
down_after_crash_head() {
  atf_set descr "down cleans up after a crashed mosd and a crashed node init"
  atf_set require.user root
  atf_set timeout 180
}
down_after_crash_body() {
  roam_init
  host_snapshot before
  cluster_up 2
  # mosd of node1 dies by SIGKILL, as in a crash.
  pid=$(on_node 1 cat /run/roam/mosd.pid)
  on_node 1 kill -KILL "$pid"
  # node2's init dies too: the kernel ends every process of that node.
  init2=$(mosctl cluster status --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(next(n["init_pid"] for n in s["nodes"] if n["node"]==2))')
  kill -KILL "$init2"
  atf_check -o ignore -e ignore mosctl cluster down
  assert_nothing_left
  # down is idempotent.
  atf_check -o ignore -e ignore mosctl cluster down
}
down_after_crash_cleanup() { cluster_down; }

atf_test_case cpus_per_node cleanup
cpus_per_node_head() {
  atf_set descr "--cpus-per-node pins each node to its own CPUs"
  atf_set require.user root
  atf_set timeout 180
}
cpus_per_node_body() {
  roam_init
  [ "$(nproc)" -ge 2 ] || atf_skip "needs 2 CPUs"
  cluster_up 2 --cpus-per-node 1
  atf_check -o "inline:0\n" mosctl cluster exec 1 -- sh -c "grep Cpus_allowed_list /proc/self/status | awk '{print \$2}'"
  atf_check -o "inline:1\n" mosctl cluster exec 2 -- sh -c "grep Cpus_allowed_list /proc/self/status | awk '{print \$2}'"
  # mosd reports what it may use.
  retry 50 0.2 all_up_at 1 2 || atf_fail "node1 never saw both nodes"
  [ "$(json_get 1 "next(n['ncpus'] for n in s['nodes'] if n['node']==2)")" = 1 ] || atf_fail "node2 does not report 1 CPU"
}
cpus_per_node_cleanup() { cluster_down; }

atf_test_case bad_usage cleanup
bad_usage_head() {
  atf_set descr "mosctl cluster refuses bad input with one clear line"
  atf_set require.user root
}
bad_usage_body() {
  roam_init
  atf_check -s not-exit:0 -e match:"." mosctl cluster up -n 0
  atf_check -s not-exit:0 -e match:"no cluster|not up" mosctl cluster exec node1 -- true
  cluster_up 1
  atf_check -s not-exit:0 -e match:"already" mosctl cluster up -n 1
  atf_check -s not-exit:0 -e match:"node9|9" mosctl cluster exec node9 -- true
  atf_check -s exit:3 mosctl cluster exec 1 -- sh -c 'exit 3'
}
bad_usage_cleanup() { cluster_down; }

atf_init_test_cases() {
  atf_add_test_case up_down
  atf_add_test_case shared_folder
  atf_add_test_case down_after_crash
  atf_add_test_case cpus_per_node
  atf_add_test_case bad_usage
}
