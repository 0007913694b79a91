#!/usr/bin/env bash
# e2e-gpu.sh - a GPU container stopped and brought back by tardis: a PyTorch program holds
# several GiB on the GPU with a known pattern and counts; `tardis kill ID TERM` checkpoints
# it (tardis suspends its CUDA state with cuda-checkpoint, then runc and CRIU dump it);
# `tardis run -d` with the same key restores it (tardis resumes the CUDA state). The count
# must go on from where it stopped, in the same process, with the tensor intact. It prints
# a timing table.
#
# Meant for a machine with an NVIDIA GPU and nothing of tardis's (notes/gpu.md): no runc,
# no CRIU, no iptables, no network. Everything comes from the carry folder, prepared on a
# build machine:
#
#   make gpu-carry CUDA_CHECKPOINT_GIT=<git dir of NVIDIA/cuda-checkpoint>   # build machine
#   sudo vagrant/e2e-gpu.sh          # or: sudo make e2e-gpu                  # GPU machine
#
# The carry (default bin/gpu-carry): tardis (static), runc, tardis-criu/ (a CRIU prefix
# with its own loader), tardis-criu.sh (its wrapper), cuda-checkpoint.
#
# Environment:
#   CARRY=bin/gpu-carry   the carry folder
#   PY=/opt/torch/.venv/bin/python3   the python with PyTorch (the host's, bound read-only)
#   GIB=4                 GiB the program holds on the GPU
#   RUNC=$CARRY/runc      the runc tardis runs
#   E2E_WORK=/var/tmp     where the work directory (checkpoints included) is made
#   KEEP=1                keep the work directory
#   DRY=1                 no GPU, nothing run: prepare the bundle and program, print the commands
#   NOGPU=1               run it all for real without a GPU: a CPU program holding GIB of
#                         bytes in memory (default 0.25), no devices, GPU support off
#
# The script never calls cuda-checkpoint itself: it only tells tardis where it is
# (cuda_checkpoint in the config), and tardis suspends and resumes the container's CUDA
# processes.
set -euo pipefail
cd "$(dirname "$0")/.."

DRY=${DRY:-0}
NOGPU=${NOGPU:-0}
KEEP=${KEEP:-0}
CARRY=$(realpath -m "${CARRY:-bin/gpu-carry}")
if [ "$NOGPU" = 1 ]; then
	PY=${PY:-/usr/bin/python3}
	GIB=${GIB:-0.25}
else
	PY=${PY:-/opt/torch/.venv/bin/python3}
	GIB=${GIB:-4}
fi
RUNC=${RUNC:-$CARRY/runc}
TARDIS=$CARRY/tardis
CUDA_CHECKPOINT=$CARRY/cuda-checkpoint
DEVICES=(/dev/nvidia0 /dev/nvidiactl /dev/nvidia-uvm /dev/nvidia-uvm-tools)
KEY=gpu-e2e-$$

say() { printf '\n== %s\n' "$*"; }
die() {
	printf 'e2e-gpu: %s\n' "$*" >&2
	exit 1
}
dry() { [ "$DRY" = 1 ]; }
now_ns() { date +%s%N; }
# secs T0 T1: the seconds between two now_ns, with 2 decimals.
secs() {
	local ms=$((($2 - $1) / 1000000))
	printf '%d.%02d' $((ms / 1000)) $((ms % 1000 / 10))
}

# --- what is needed --------------------------------------------------------------------
host_python=$(command -v python3 || true)
[ -x "$PY" ] || dry || die "no python at $PY (set PY)"
[ -n "$host_python" ] || [ -x "$PY" ] || die "a python is needed to write the bundle's config.json"
tool_python=$PY
[ -x "$tool_python" ] || tool_python=$host_python
if ! dry; then
	[ "$(id -u)" = 0 ] || die "run as root (runc and CRIU need it)"
fi
missing=()
for f in "$TARDIS" "$RUNC" "$CARRY/tardis-criu/usr/sbin/criu" "$CARRY/tardis-criu.sh"; do
	[ -e "$f" ] || missing+=("$f")
done
[ "$NOGPU" = 1 ] || [ -e "$CUDA_CHECKPOINT" ] || missing+=("$CUDA_CHECKPOINT")
if [ ${#missing[@]} -gt 0 ]; then
	dry || die "missing from the carry: ${missing[*]} (run make gpu-carry on a build machine)"
	echo "DRY: missing from the carry (make gpu-carry): ${missing[*]}"
fi
smi=""
if [ "$NOGPU" != 1 ]; then
	smi=$(command -v nvidia-smi || true)
	[ -n "$smi" ] || [ ! -x /usr/local/nvidia/bin/nvidia-smi ] || smi=/usr/local/nvidia/bin/nvidia-smi
	if ! dry; then
		for d in "${DEVICES[@]}"; do [ -c "$d" ] || die "no device $d: is this a GPU machine? (NOGPU=1 runs without one)"; done
		[ -n "$smi" ] || die "no nvidia-smi on PATH or in /usr/local/nvidia/bin"
	fi
fi

# --- work directory and cleanup --------------------------------------------------------
mkdir -p "${E2E_WORK:-/var/tmp}"
work=$(mktemp -d "${E2E_WORK:-/var/tmp}/tardis-gpu-e2e.XXXXXX")
root=$work/runc
bundle=$work/bundle
data=$work/data
result=FAIL
cleanup() {
	local rc=$?
	set +e
	if [ "$rc" != 0 ] && ! dry; then
		say "failed (exit $rc): what there is to see"
		echo "-- tardis.log (last 20 lines)"
		tail -n 20 "$work/tardis.log" 2>/dev/null
		echo "-- the program's log (last 10 lines)"
		tail -n 10 "$data/program.log" 2>/dev/null
		for f in $(find "$work/work" -name '*.log' 2>/dev/null | head -n 4); do
			echo "-- $f (errors)"
			grep -E 'Error|error' "$f" | tail -n 5
		done
	fi
	if [ -x "$RUNC" ] && ! dry; then
		for id in $("$RUNC" --root "$root" list -q 2>/dev/null); do
			"$RUNC" --root "$root" kill "$id" KILL >/dev/null 2>&1
			"$RUNC" --root "$root" delete --force "$id" >/dev/null 2>&1
		done
		left=$("$RUNC" --root "$root" list -q 2>/dev/null)
		[ -z "$left" ] || { echo "containers left: $left; keeping $work"; KEEP=1; }
	fi
	if [ "$KEEP" = 1 ]; then
		echo "work directory kept: $work"
	else
		rm -rf "$work"
	fi
	echo "e2e-gpu: $result"
	exit "$rc"
}
trap cleanup EXIT

# --- CRIU from the carry, as "criu" on PATH (runc 1.2 and later look for it there) -----
mkdir -p "$work/bin" "$data/home"
sed "s#/opt/tardis-criu#$CARRY/tardis-criu#g" "$CARRY/tardis-criu.sh" >"$work/bin/criu" 2>/dev/null ||
	dry || die "cannot write the criu wrapper"
chmod 0755 "$work/bin/criu" 2>/dev/null || true
export PATH="$work/bin:$PATH"

# --- tardis's configuration ------------------------------------------------------------
export TARDIS_CONFIG=$work/config.toml
{
	echo "runc = \"$RUNC\""
	echo "checkpoint_root = \"$work/checkpoints\""
	echo "state_dir = \"$work/state\""
	echo "work_dir = \"$work/work\""
	echo "log_file = \"$work/tardis.log\""
	if [ "$NOGPU" != 1 ]; then
		echo "cuda_checkpoint = \"$CUDA_CHECKPOINT\""
		[ -z "$smi" ] || echo "nvidia_smi = \"$smi\""
	fi
} >"$TARDIS_CONFIG"

# --- the program -----------------------------------------------------------------------
cat >"$data/counter.py" <<'EOF'
# Holds GIB on the GPU (or, with --cpu, in memory) filled with a known pattern, and counts:
# each step adds one to a counter kept on the GPU, checks the whole pattern, and writes
# "COUNT TOKEN OK|BAD" to /data/status. TOKEN is drawn at the start: a restored process
# keeps it, a fresh one draws another.
import argparse, os, secrets, sys, time

ap = argparse.ArgumentParser()
ap.add_argument("--gib", type=float, default=4)
ap.add_argument("--cpu", action="store_true")
ap.add_argument("--data", default="/data")
ap.add_argument("--interval", type=float, default=0.1)
a = ap.parse_args()
log = open(os.path.join(a.data, "program.log"), "a", buffering=1)
sys.stdout = sys.stderr = log
token = secrets.token_hex(8)
P = 1000003  # the pattern: element i holds i mod P


def status(line):
    tmp = os.path.join(a.data, ".status.tmp")
    with open(tmp, "w") as f:
        f.write(line + "\n")
    os.replace(tmp, os.path.join(a.data, "status"))


if a.cpu:
    n = int(a.gib * 2**30)
    unit = bytes(range(256))
    x = bytearray(unit * (n // 256))
    block = unit * 4096
    counter = [0]

    def step():
        counter[0] += 1
        ok = all(x[i:i + len(block)] == block for i in range(0, len(x), len(block)))
        return counter[0], ok
else:
    import torch
    dev = torch.device("cuda")
    n = int(a.gib * 2**30) // 4
    chunk = 2**26

    def pattern(i, j):
        return (torch.arange(i, j, dtype=torch.int64, device=dev) % P).to(torch.int32)

    x = torch.empty(n, dtype=torch.int32, device=dev)
    for i in range(0, n, chunk):
        x[i:min(n, i + chunk)] = pattern(i, min(n, i + chunk))
    counter = torch.zeros(1, dtype=torch.int64, device=dev)
    torch.cuda.synchronize()
    print(f"holding {x.numel() * 4 / 2**30:.2f} GiB, reserved {torch.cuda.memory_reserved() / 2**30:.2f} GiB", flush=True)

    def step():
        counter.add_(1)
        ok = all(torch.equal(x[i:min(n, i + chunk)], pattern(i, min(n, i + chunk))) for i in range(0, n, chunk))
        return int(counter.item()), ok

print(f"pid {os.getpid()} token {token} started", flush=True)
while True:
    count, ok = step()
    verdict = "OK" if ok else "BAD"
    status(f"{count} {token} {verdict}")
    print(f"count {count} token {token} {verdict} t={time.time():.3f}", flush=True)
    time.sleep(a.interval)
EOF
"$tool_python" -m py_compile "$data/counter.py"
rm -rf "$data/__pycache__"

# --- the bundle (notes/gpu.md section 2) -----------------------------------------------
say "bundle: a rootfs of directories and symlinks, the host's /usr /etc /opt bound read-only"
mkdir -p "$bundle"
if [ -x "$RUNC" ]; then
	(cd "$bundle" && "$RUNC" spec) || die "$RUNC spec failed"
else
	dry || die "no runc at $RUNC"
	echo "DRY: no runc at $RUNC for 'runc spec': a minimal spec stands in"
	echo '{"ociVersion":"1.0.2","process":{"args":["sh"],"env":["PATH=/usr/bin:/bin"],"cwd":"/"},"root":{"path":"rootfs"},"mounts":[],"linux":{"namespaces":[{"type":"pid"},{"type":"network"},{"type":"mount"}],"resources":{"devices":[{"allow":false,"access":"rwm"}]}}}' >"$bundle/config.json"
fi
devices_arg=""
[ "$NOGPU" = 1 ] || devices_arg=$(printf '%s,' "${DEVICES[@]}")
program=("$PY" /data/counter.py --gib "$GIB")
[ "$NOGPU" != 1 ] || program+=(--cpu)
BUNDLE=$bundle DATA=$data KEY=$KEY DEVICES_ARG=$devices_arg DRY=$DRY LD_PATH=${LD_LIBRARY_PATH:-} \
	"$tool_python" - "${program[@]}" <<'EOF'
import json, os, stat, sys

bundle, data, key = os.environ["BUNDLE"], os.environ["DATA"], os.environ["KEY"]
devices = [d for d in os.environ["DEVICES_ARG"].split(",") if d]
dry = os.environ["DRY"] == "1"
rootfs = os.path.join(bundle, "rootfs")
spec = json.load(open(os.path.join(bundle, "config.json")))


def unescape(s):  # mountinfo writes space, tab, newline and backslash as \ooo
    out, i = "", 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) + 1 and s[i + 1:i + 4].isdigit():
            out += chr(int(s[i + 1:i + 4], 8))
            i += 4
        else:
            out += s[i]
            i += 1
    return out


mounts = [unescape(l.split()[4]) for l in open("/proc/self/mountinfo")]


def under(p, top):
    return p == top or p.startswith(top.rstrip("/") + "/")


# The top: directories and symlinks; the host's own directories bound read-only, each
# mount under them bound on its own (non-recursive binds: CRIU must see every mount runc
# declared).
tops = ["/usr", "/etc", "/opt"]
for name in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"]:
    p = "/" + name
    if os.path.islink(p):
        if not os.path.lexists(os.path.join(rootfs, name)):
            os.makedirs(rootfs, exist_ok=True)
            os.symlink(os.readlink(p), os.path.join(rootfs, name))
    elif os.path.isdir(p):
        tops.append(p)
py = os.path.realpath(sys.argv[1])
if not any(under(py, t) for t in tops) and os.path.exists(py):
    tops.append(os.path.dirname(os.path.dirname(py)))  # the interpreter's own prefix
for d in ["proc", "sys", "dev", "tmp", "run", "var/tmp", "root", "data"]:
    os.makedirs(os.path.join(rootfs, d), exist_ok=True)

binds = []
for top in tops:
    if os.path.isdir(top):
        binds.append(top)
    binds += [m for m in mounts if under(m, top) and m != top and os.path.isdir(m)]
binds = sorted(set(binds), key=lambda p: (p.count("/"), p))
for b in binds:
    os.makedirs(os.path.join(rootfs, b.lstrip("/")), exist_ok=True)
spec["mounts"] = [m for m in spec.get("mounts", []) if m["destination"] != "/tmp"]
spec["mounts"] += [{"destination": b, "type": "bind", "source": b, "options": ["bind", "ro"]} for b in binds]
spec["mounts"] += [
    {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "mode=1777"]},
    {"destination": "/data", "type": "bind", "source": data, "options": ["bind", "rw"]},
]

# The GPU's device nodes, and a device-cgroup rule allowing each.
linux = spec.setdefault("linux", {})
res = linux.setdefault("resources", {})
rules = res.setdefault("devices", [{"allow": False, "access": "rwm"}])
typical = {"/dev/nvidia0": (195, 0), "/dev/nvidiactl": (195, 255), "/dev/nvidia-uvm": (510, 0), "/dev/nvidia-uvm-tools": (510, 1)}
for d in devices:
    try:
        st = os.stat(d)
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    except FileNotFoundError:
        if not dry:
            raise
        major, minor = typical[d]  # DRY on a machine without the GPU: typical numbers
    linux.setdefault("devices", []).append(
        {"path": d, "type": "c", "major": major, "minor": minor, "fileMode": 0o666, "uid": 0, "gid": 0})
    rules.append({"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"})

# Host network: CRIU locks a network namespace with iptables, which the GPU machine lacks.
linux["namespaces"] = [n for n in linux.get("namespaces", []) if n["type"] != "network"]

env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/data/home", "PYTHONUNBUFFERED=1"]
ld = [p for p in os.environ.get("LD_PATH", "").split(":") if p]
ld += [p for p in ["/usr/local/nvidia/lib64", "/usr/local/nvidia/lib"] if os.path.isdir(p) and p not in ld]
if ld:
    env.append("LD_LIBRARY_PATH=" + ":".join(ld))
spec["process"].update({"terminal": False, "args": sys.argv[1:], "env": env, "cwd": "/data"})
spec["root"] = {"path": "rootfs", "readonly": False}
spec["annotations"] = {"dev.tardis.enabled": "true", "dev.tardis.key": key}
json.dump(spec, open(os.path.join(bundle, "config.json"), "w"), indent=2)
for b in binds:
    print(f"  ro bind {b}")
for d in devices:
    print(f"  device {d}")
print(f"  rw bind {data} on /data; host network; key {key}")
EOF

# --- does this tardis know the GPU settings? -------------------------------------------
if [ -x "$TARDIS" ]; then
	probe=$("$TARDIS" --root "$root" list 2>&1 >/dev/null || true)
	if grep -q 'unknown setting' <<<"$probe"; then
		dry || die "this tardis is older than its GPU support (make gpu-carry again): $probe"
		echo "DRY: this tardis is older than its GPU support: $probe"
	fi
fi

# --- the run ---------------------------------------------------------------------------
# The program's status: COUNT TOKEN OK|BAD.
status() { cat "$data/status" 2>/dev/null || true; }
field() {
	local f
	read -r -a f <<<"$(status)" || true
	echo "${f[$1]:-}"
}
count() { field 0; }
token() { field 1; }
# wait_count_above N SECONDS: until the program's count is above N.
wait_count_above() {
	local end=$((SECONDS + $2)) c
	while [ $SECONDS -lt $end ]; do
		c=$(count)
		if [ -n "$c" ] && [ "$c" -gt "$1" ]; then return 0; fi
		sleep 0.05
	done
	return 1
}
gpu_mem() {
	[ -n "$smi" ] || return 0
	"$smi" --query-compute-apps=pid,used_memory --format=csv,noheader,nounits 2>/dev/null | paste -sd ';' -
}
id1=gpu-e2e-1-$$
id2=gpu-e2e-2-$$

if dry; then
	say "DRY: what a real run does (TARDIS_CONFIG=$TARDIS_CONFIG, PATH=$work/bin:...)"
	cat <<-EOF
		+ $TARDIS --root $root --log $work/run1.log --log-format json run -d --bundle $bundle $id1 </dev/null >/dev/null 2>&1   # fresh; wait for $data/status
		+ $TARDIS --root $root kill $id1 TERM      # checkpoint published at $work/checkpoints/default/$KEY/current
		+ $TARDIS --root $root delete $id1
		+ $TARDIS --root $root --log $work/run2.log --log-format json run -d --bundle $bundle $id2 </dev/null >/dev/null 2>&1   # restored; the count goes on
		+ $RUNC --root $root kill $id2 KILL; $RUNC --root $root delete --force $id2   # cleanup, no checkpoint
	EOF
	echo "bundle: $bundle/config.json ($(wc -c <"$bundle/config.json") bytes); program: $data/counter.py"
	echo "config:"
	sed 's/^/  /' "$TARDIS_CONFIG"
	result="DRY (nothing run)"
	exit 0
fi

say "tardis run -d $id1 (fresh: no checkpoint for key $KEY yet)"
t0=$(now_ns)
"$TARDIS" --root "$root" --log "$work/run1.log" --log-format json run -d --bundle "$bundle" "$id1" </dev/null >/dev/null 2>&1 ||
	die "tardis run failed: $(cat "$work/run1.log")"
t1=$(now_ns)
wait_count_above 0 300 || die "no count within 300 s of the start"
t2=$(now_ns)
fresh_cmd=$(secs "$t0" "$t1")
fresh_first=$(secs "$t0" "$t2")
sleep 3
token1=$(token)
mem_before=$(gpu_mem)
echo "counting: $(status); GPU memory (pid,MiB): ${mem_before:-n/a}"

say "tardis kill $id1 TERM (what a stop sends: tardis checkpoints the container)"
t0=$(now_ns)
"$TARDIS" --root "$root" kill "$id1" TERM
t1=$(now_ns)
kill_time=$(secs "$t0" "$t1")
ckpt=$(readlink "$work/checkpoints/default/$KEY/current" || true)
[ -n "$ckpt" ] || die "no checkpoint published for $KEY"
stopped=$(count)
ckpt_size=$(du -sh "$work/checkpoints/default/$KEY/$ckpt" | cut -f1)
# The manifest's GPU side (driver, model, what each CUDA process held): present exactly
# when the container had CUDA state.
gpu_side=$(grep -o '"gpu_model": *"[^"]*"\|"total_bytes": *[0-9]*' "$work/checkpoints/default/$KEY/$ckpt/manifest.json" | paste -sd ' ' - || true)
echo "checkpoint $ckpt ($ckpt_size); stopped at count $stopped; GPU side: ${gpu_side:-none}"
sleep 1
[ "$(count)" = "$stopped" ] || die "the count moved after the stop: $(count) (was $stopped)"
"$TARDIS" --root "$root" delete "$id1"

say "tardis run -d $id2 (same key: restored)"
t0=$(now_ns)
"$TARDIS" --root "$root" --log "$work/run2.log" --log-format json run -d --bundle "$bundle" "$id2" </dev/null >/dev/null 2>&1 ||
	die "tardis run (restore) failed: $(cat "$work/run2.log")"
t1=$(now_ns)
restore_cmd=$(secs "$t0" "$t1")
grep -q '"started": *"restored"' "$work"/state/"$id2".*.json ||
	die "$id2 was not restored: $(grep -ho '"fallback": *"[^"]*"' "$work"/state/"$id2".*.json || cat "$work/run2.log")"
wait_count_above "$stopped" 120 || die "the restored program does not count on from $stopped (its CUDA state not resumed?)"
t2=$(now_ns)
restore_next=$(secs "$t0" "$t2")
first_after=$(count)
sleep 2
after=$(count)
token2=$(token)
verdict=$(field 2)
mem_after=$(gpu_mem)
bad=$(grep -c ' BAD ' "$data/program.log" || true)

say "checks"
ok=1
# check WHAT TEST...: runs TEST and reports it.
check() {
	local what=$1
	shift
	if "$@"; then echo "ok   $what"; else
		echo "FAIL $what"
		ok=0
	fi
}
counted_on() { [ "$first_after" -gt "$stopped" ] && [ "$first_after" -le "$((stopped + 20))" ] && [ "$after" -gt "$first_after" ]; }
check "counted on from $stopped (first count seen after the restore: $first_after, 2 s later: $after)" counted_on
check "the same process (token $token1 before, $token2 after)" [ "$token1" = "$token2" ]
intact() { [ "$verdict" = OK ] && [ "$bad" = 0 ]; }
check "the tensor intact (last check $verdict, $bad BAD lines)" intact
if [ "$NOGPU" = 1 ]; then
	check "no GPU side in the manifest (${gpu_side:-none})" [ -z "$gpu_side" ]
else
	check "the manifest records the GPU side ($gpu_side)" [ -n "$gpu_side" ]
fi

say "timings ($(uname -n), $GIB GiB$([ "$NOGPU" = 1 ] && echo ', NOGPU'))"
printf '%-58s %10s\n' "step" "seconds"
printf '%-58s %10s\n' "tardis run -d (fresh), the command" "$fresh_cmd"
printf '%-58s %10s\n' "tardis run -d (fresh) to the first count" "$fresh_first"
printf '%-58s %10s\n' "tardis kill TERM: suspend + checkpoint published ($ckpt_size)" "$kill_time"
printf '%-58s %10s\n' "tardis run -d (same key): restored + resumed" "$restore_cmd"
printf '%-58s %10s\n' "tardis run -d (same key) to the next count" "$restore_next"
echo "GPU memory (pid,MiB) before the stop: ${mem_before:-n/a}; after the restore: ${mem_after:-n/a}"
echo "tardis's own timings (ms), from its log:"
grep -o '"msg":"[^"]*"\|"timings_ms":{[^}]*}' "$work/tardis.log" | grep -B1 timings_ms | paste - - | sed 's/^/  /' || true

[ "$ok" = 1 ] || die "checks failed"
result=PASS
