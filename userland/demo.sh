#!/usr/bin/env bash
# make demo: the main job on the embedded default, a local cluster on this
# machine. Brings up 3 nodes, shows what every node knows of every other,
# starts CPU-bound jobs on one node and lets mosd spread them (automatic
# load balancing), moves a running program to another node and back by
# hand, and tears everything down.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
export PATH="$build/bin:$PATH"
export ROAM_CLUSTER_DIR=/run/roam-demo
[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (it creates namespaces and cgroups)" >&2; exit 1; }

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
cleanup() { mosctl cluster down >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup  # what an interrupted demo may have left

say "bringing up a 3-node local cluster (each node: own namespaces, own mosd)"
mosctl cluster up -n 3 --set gossip.step_ms=250 --set load.sample_ms=100 --set policy.step_ms=250
mosctl cluster status

say "waiting for gossip: every node learns every other's load and free memory"
converged() {
  mosctl cluster exec node1 -- mosmon --once --json |
    python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if all(n["known"] and n["up"] for n in s["nodes"]) else 1)'
}
for _ in $(seq 100); do converged && break; sleep 0.2; done
for n in 1 2 3; do
  echo "--- as node$n sees the cluster:"
  mosctl cluster exec node$n -- mosmon --once
done

say "automatic load balancing: 6 CPU-bound jobs started on node1 spread over the cluster"
for i in 1 2 3 4 5 6; do
  mosctl cluster exec node1 -- mosrun python3 -c \
    'import time
t = time.monotonic() + 10
while time.monotonic() < t:
    pass' &
done
sleep 1
echo "--- right after the start, as node1 sees the cluster (all 6 on node1):"
mosctl cluster exec node1 -- mosmon --once
mosctl cluster exec node1 -- mosps
spread() {
  mosctl cluster exec node1 -- mosps --json |
    python3 -c 'import collections,json,sys; c=collections.Counter(p["where"] for p in json.load(sys.stdin)); sys.exit(0 if len(c) == 3 and max(c.values()) - min(c.values()) <= 1 else 1)'
}
for _ in $(seq 40); do spread && break; sleep 0.25; done
sleep 2
echo "--- a few seconds later: mosd moved them by itself (WHY policy:load); loads evened out:"
mosctl cluster exec node1 -- mosps
mosctl cluster exec node1 -- mosmon --once
echo "--- the moves node1's mosd decided:"
grep -E 'policy [a-z]+: moving' "$ROAM_CLUSTER_DIR/node1/mosd.log" | sed 's/^[^ ]* //' || true
wait

say "moving a running program by hand: started on node1 (mosrun -L: the policies leave it), moved to node2 and back"
work=$(mktemp -d /var/tmp/roam-demo.XXXXXX)
trap 'cleanup; rm -rf "$work"' EXIT
cat >"$work/counter.py" <<'PY'
# Counts for about 4 s of CPU time, appending each step to a file in its
# node's private /tmp and printing it.
import os, time
print("counter pid", os.getpid(), flush=True)
for i in range(1, 41):
    with open("/tmp/demo-counter.txt", "a") as f:
        f.write("step %d\n" % i)
    print("step", i, flush=True)
    t = time.monotonic() + 0.1
    while time.monotonic() < t:
        pass
PY
mosctl cluster exec node1 -- sh -c \
  "mosrun -L python3 $work/counter.py >$work/counter.out 2>&1 & echo \$! >$work/counter.pid; wait" &
runner=$!
for _ in $(seq 100); do [ -s $work/counter.pid ] && grep -q "counter pid" $work/counter.out 2>/dev/null && break; sleep 0.05; done
pid=$(cat $work/counter.pid)
echo "--- mosps on node1 (the program runs at home):"
mosctl cluster exec node1 -- mosps
echo "--- migrate $pid 2:"
mosctl cluster exec node1 -- migrate "$pid" 2
echo "--- mosps on node1 (it runs on node2; its deputy keeps pid $pid at home):"
mosctl cluster exec node1 -- mosps
echo "--- processes on node2 (the body runs as nobody):"
mosctl cluster exec node2 -- ps -eo pid,user,stat,comm | grep -v " ps$"
sleep 1
echo "--- migrate $pid home:"
mosctl cluster exec node1 -- migrate "$pid" home
mosctl cluster exec node1 -- mosps
wait "$runner" || true
echo "--- its output (printed at home all along):"
tail -n 3 $work/counter.out
echo "--- its file is node1's /tmp/demo-counter.txt ($(mosctl cluster exec node1 -- wc -l </dev/null /tmp/demo-counter.txt | awk '{print $1}') lines);"
echo "    node2's /tmp has none: $(mosctl cluster exec node2 -- sh -c 'ls /tmp/demo-counter.txt 2>&1 || true')"

say "tearing the cluster down"
mosctl cluster down
rm -rf "$work"
trap - EXIT
echo "done: nothing of the cluster is left on this machine"
