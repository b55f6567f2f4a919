#!/usr/bin/env bash
# make demo: the main job on the embedded default, a local cluster on this
# machine. Brings up 3 nodes, shows what every node knows of every other,
# runs a program with mosrun on a node, and tears everything down.
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
mosctl cluster up -n 3 --set gossip.step_ms=250 --set load.sample_ms=100
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

say "running a program with mosrun on node2 (4 CPU-bound workers for 5 s)"
mosctl cluster exec node2 -- mosrun sh -c \
  'echo "job on $(hostname), pid $$"; for i in 1 2 3 4; do timeout 5 yes >/dev/null & done; wait; echo "job done"' &
job=$!
sleep 2
echo "--- mosps on node2:"
mosctl cluster exec node2 -- mosps
sleep 1
echo "--- node1 sees node2's load rise:"
mosctl cluster exec node1 -- mosmon --once
wait "$job"

say "tearing the cluster down"
mosctl cluster down
trap - EXIT
echo "done: nothing of the cluster is left on this machine"
