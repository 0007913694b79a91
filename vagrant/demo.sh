#!/usr/bin/env bash
# demo.sh - tardis's main job, shown: a counter container is stopped and brought back,
# and carries on counting from where it was. Run as root from the repository:
#
#   sudo vagrant/demo.sh
#
# It installs what it needs (vagrant/install.sh), builds tardis, and works in a
# temporary directory that it removes at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (runc and CRIU need it)" >&2; exit 1; }
say "installing runc, CRIU and friends (idempotent)"
vagrant/install.sh --quiet
say "building tardis"
CGO_ENABLED=0 go build -o bin/tardis ./cmd/tardis
tardis="$PWD/bin/tardis"

work=$(mktemp -d /tmp/tardis-demo.XXXXXX)
export TARDIS_CONFIG="$work/config.toml"
cat >"$TARDIS_CONFIG" <<EOF
criu = "$(cat /etc/tardis/criu-path)"
checkpoint_root = "$work/checkpoints"
state_dir = "$work/state"
work_dir = "$work/work"
log_file = "$work/tardis.log"
EOF
root="$work/runc"
cleanup() {
	for id in $(runc --root "$root" list -q 2>/dev/null); do runc --root "$root" delete --force "$id" || true; done
	rm -rf "$work"
}
trap cleanup EXIT

say "a busybox bundle whose container counts, opted in with dev.tardis.enabled=true"
bundle="$work/bundle"
mkdir -p "$bundle/rootfs/bin"
cp "$(command -v busybox)" "$bundle/rootfs/bin/busybox"
for applet in sh sleep cat echo; do ln -s busybox "$bundle/rootfs/bin/$applet"; done
(cd "$bundle" && runc spec)
python3 - "$bundle/config.json" <<'EOF'
import json, sys
p = sys.argv[1]
spec = json.load(open(p))
spec["process"]["terminal"] = False
spec["process"]["args"] = ["sh", "-c", "i=0; while true; do echo $i > /count; i=$((i+1)); sleep 0.1; done"]
spec["root"]["readonly"] = False
spec["annotations"] = {"dev.tardis.enabled": "true", "dev.tardis.key": "demo-counter"}
json.dump(spec, open(p, "w"), indent=2)
EOF

say "tardis run -d demo-1 (no checkpoint yet: a fresh start)"
"$tardis" --root "$root" run -d --bundle "$bundle" demo-1 </dev/null >/dev/null 2>&1
sleep 2
echo "count after 2 s: $(cat "$bundle/rootfs/count")"

say "tardis kill demo-1 TERM (what containerd, Docker and Kubernetes send on stop)"
"$tardis" --root "$root" kill demo-1 TERM
stopped=$(cat "$bundle/rootfs/count")
echo "stopped at count $stopped; checkpoint: $(readlink "$work/checkpoints/default/demo-counter/current")"
"$tardis" --root "$root" delete demo-1
sleep 1
echo "one second later, still $(cat "$bundle/rootfs/count"): nothing runs"

say "tardis run -d demo-2 (same key: restored instead of started fresh)"
"$tardis" --root "$root" run -d --bundle "$bundle" demo-2 </dev/null >/dev/null 2>&1
sleep 1
now=$(cat "$bundle/rootfs/count")
echo "count one second after the restore: $now"
"$tardis" --root "$root" state demo-2 | grep '"status"'
grep -o '"msg":"[a-z ]*","op":"[a-z]*"\|"timings_ms":{[^}]*}' "$work/tardis.log" | paste - -

if [ "$now" -gt "$stopped" ] && [ "$now" -lt "$((stopped + 50))" ]; then
	say "the counter went on from $stopped, not from 0: demo passed"
else
	say "the counter did not carry on (stopped at $stopped, now $now): demo failed"
	exit 1
fi
