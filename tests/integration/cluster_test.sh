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

# The cgroup name of this cluster (local_cluster.hpp): DIR's base name when it
# starts with "roam", else roam-cluster-BASENAME.
cluster_cgroup_name() {
  _ccn=$(basename "$ROAM_CLUSTER_DIR")
  case $_ccn in
  roam*) echo "$_ccn" ;;
  *) echo "roam-cluster-$_ccn" ;;
  esac
}

# The file holding node I's memory limit: memory.max in the cgroup2 tree when
# its root offers the memory controller (pure v2), else memory.limit_in_bytes
# in the v1 memory hierarchy (hybrid hosts), as the local cluster chooses.
memory_limit_file() {
  _mlf_name=$(cluster_cgroup_name)
  _mlf_v2=$(awk '$(NF-2) == "cgroup2" { print $5; exit }' /proc/self/mountinfo)
  if [ -n "$_mlf_v2" ] && grep -qw memory "$_mlf_v2/cgroup.controllers" 2>/dev/null; then
    echo "$_mlf_v2/$_mlf_name/node$1/memory.max"
    return
  fi
  _mlf_v1=$(awk '$(NF-2) == "cgroup" && $NF ~ /(^|,)memory(,|$)/ { print $5; exit }' /proc/self/mountinfo)
  [ -n "$_mlf_v1" ] || atf_skip "no memory controller (neither cgroup v2 nor v1)"
  echo "$_mlf_v1/$_mlf_name/node$1/memory.limit_in_bytes"
}

atf_test_case mem_per_node cleanup
mem_per_node_head() {
  atf_set descr "--mem-per-node limits each node's memory: a memory cgroup, gossiped free memory within it, OOM kill past it; down removes it"
  atf_set require.user root
  atf_set timeout 180
}
mem_per_node_body() {
  roam_init
  limit_file=$(memory_limit_file 1)
  cluster_up 2 --mem-per-node 256
  for i in 1 2; do
    f=$(memory_limit_file $i)
    [ -f "$f" ] || atf_fail "node$i has no memory cgroup ($f)"
    atf_check -o "inline:268435456\n" cat "$f"
  done
  # Every process of the node is in it (mosd maybe in a v2 child): its
  # mosd, a command exec'd there.
  case $limit_file in
  */memory.max) hier="0:" ;;
  *) hier="[0-9]+:([a-z_]+,)*memory(,[a-z_=]+)*" ;;
  esac
  in_node1_memcg="^$hier:/$(cluster_cgroup_name)/node1(/|\$)"
  mosd1=$(mosctl cluster status --json | python3 -c 'import json,sys; print(next(n["mosd_pid"] for n in json.load(sys.stdin)["nodes"] if n["node"]==1))')
  grep -Eq "$in_node1_memcg" "/proc/$mosd1/cgroup" || atf_fail "node1's mosd ($mosd1) is not in node1's memory cgroup"
  on_node 1 cat /proc/self/cgroup >exec.cgroup
  grep -Eq "$in_node1_memcg" exec.cgroup || atf_fail "a command exec'd in node1 is not in node1's memory cgroup"
  # node1's free memory as node2 learned it by gossip is within the limit.
  retry 50 0.2 all_up_at 2 2 || atf_fail "node2 never saw both nodes"
  free=$(json_get 2 "next(n['free_mem'] for n in s['nodes'] if n['node']==1)")
  total=$(json_get 2 "next(n['total_mem'] for n in s['nodes'] if n['node']==1)")
  [ "$free" -le 268435456 ] || atf_fail "node1 gossips $free bytes free, more than its 256 MiB limit"
  [ "$total" -le 268435456 ] || atf_fail "node1 gossips $total bytes in all, more than its 256 MiB limit"
  # A job touching more than the limit is OOM-killed on its node (SIGKILL).
  job_start 1 big "$ROAM_TESTS/workloads/mem_pattern" 300 >/dev/null
  expect_status big 137
  # Below the limit, a job lives on and verifies its memory.
  small=$(job_start 1 small "$ROAM_TESTS/workloads/mem_pattern" 64)
  wait_line small.out "^READY"
  on_node 1 kill -USR1 "$small"
  expect_status small 0
  atf_check -o ignore -e ignore mosctl cluster down
  name=$(cluster_cgroup_name)
  left=$(find /sys/fs/cgroup -maxdepth 2 -name "$name" 2>/dev/null)
  [ -z "$left" ] || atf_fail "down left cgroups behind: $left"
}
mem_per_node_cleanup() { cluster_down; }

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
  atf_add_test_case mem_per_node
  atf_add_test_case bad_usage
}
