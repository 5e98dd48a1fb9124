#!/usr/bin/env bash
# The GPU checks, prepared to start the moment a CUDA GPU is there, in one command of at most 8 minutes
# (4 with --quick). In order, each under its own time limit (the table LIMITS below):
#   1. tests      the CUDA-only tests: python -m pytest -q -m gpu
#   2. train      the training-step benchmark, 784 -> 8000x6 and 784 -> 64000x6 at batch 100 and 1000,
#                 Triton kernels against the reference mixture on the same GPU, with the launch-parameter
#                 sweep (benchmarks/bench_gpu.py --skip-inference --sweep-training), one run per width
#   3. infer      packed inference of the 48K-gate net with its launch sweep, bit-exact against the numpy
#                 evaluator before and after timing (benchmarks/bench_gpu.py --skip-training --sweep)
#   4. mnist      when time remains: a chunk of the 384K-gate MNIST run (diffgates train --preset
#                 mnist_large --device cuda), stopped at its limit after a checkpoint; the next call resumes it
# A failing or timed-out step is recorded and the next one runs. Everything measured goes to $OUT (or
# --out DIR; else runs/gpu_check/out) as three files: gpu_check.json (every step, its status and
# figures, the GPU, driver and library versions), summary.txt (the short version) and gpu_check.log
# (each step's output).
#
#   bash scripts/gpu_check.sh [--quick] [--out DIR] [--only STEPS] [--data-dir DIR]
#                             [--run-dir DIR] [--resume-from DIR] [--limit STEP=SECONDS] [--plan]
#   DIFFGATES_GPU_DRY_RUN=1 bash scripts/gpu_check.sh --out /tmp/gpucheck    # CPU dry run, under a minute
#
#   --quick            no launch-parameter sweeps, fewer timed steps: 4 minutes in all
#   --plan             print the steps, their commands and time limits, and run nothing
#   --limit STEP=S     another limit (seconds, the kill grace included) for one step: environment,
#                      gpu_tests, train_w8000, train_w64000, inference, mnist_large_chunk (its cap;
#                      default: all the time left), or total (default 480, 240 with --quick)
#   --out DIR          where the results go (default $OUT, else runs/gpu_check/out)
#   --only STEPS       comma-separated subset of tests,train,infer,mnist (the environment is always read)
#   --data-dir DIR     folder holding mnist/ (default: ../shared/data, else shared/data in the checkout,
#                      else $DIFFGATES_DATA); without MNIST files step 4 is skipped
#   --run-dir DIR      the MNIST run folder (default runs/gpu_check/mnist_large, ignored by git). A later
#                      call on the same machine resumes it; its checkpoint (about 80 MB) is too big to
#                      travel in an output folder of small files
#   --resume-from DIR  an earlier run folder (a copy of --run-dir) to continue from when --run-dir holds
#                      no checkpoint yet: its files are copied in first
#
# DIFFGATES_GPU_DRY_RUN=1 runs the same steps on a machine without a GPU: Triton's interpreter
# (TRITON_INTERPRET=1), bench_gpu.py --dry-run-cpu (tiny sizes), a 2x80-gate net for step 4 (on a tiny
# synthetic MNIST when no MNIST files are found), pytest skipping the gpu-marked tests. Its timings mean
# nothing; tests/test_gpu_check.py runs it. PYTHON chooses the interpreter (default python3).
# Exit status: 0 every step that ran passed (step 4 may be skipped for lack of time or data),
# 1 a step failed or ran out of time, 2 bad arguments or no usable Python / timeout command.
set -uo pipefail
CALLER_PWD=$(pwd)
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; }

ARGS=("$@")
QUICK=0 PLAN=0 OUT_DIR=${OUT:-} ONLY=tests,train,infer,mnist DATA_ARG= RUN_DIR= RESUME_FROM= LIMITS=()
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --plan) PLAN=1 ;;
    --out|--only|--data-dir|--run-dir|--resume-from|--limit)
      [ $# -ge 2 ] || { echo "gpu_check.sh: $1 needs a value (see --help)" >&2; exit 2; }
      case $1 in
        --out) OUT_DIR=$2 ;; --only) ONLY=$2 ;; --data-dir) DATA_ARG=$2 ;;
        --run-dir) RUN_DIR=$2 ;; --resume-from) RESUME_FROM=$2 ;; --limit) LIMITS+=("$2") ;;
      esac
      shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
for s in ${ONLY//,/ }; do
  case $s in tests|train|infer|mnist) ;; *) echo "gpu_check.sh: --only: unknown step '$s'" >&2; exit 2 ;; esac
done
abspath() { case $1 in ""|/*) printf '%s' "$1" ;; *) printf '%s' "$CALLER_PWD/$1" ;; esac; }
OUT_DIR=$(abspath "$OUT_DIR") DATA_ARG=$(abspath "$DATA_ARG") RUN_DIR=$(abspath "$RUN_DIR")
RESUME_FROM=$(abspath "$RESUME_FROM")
command -v timeout >/dev/null || { echo "gpu_check.sh: needs the 'timeout' command (GNU coreutils)" >&2; exit 2; }
"$PY" -c 'import sys' 2>/dev/null || { echo "gpu_check.sh: no Python at '$PY' (set PYTHON)" >&2; exit 2; }

DRY=0
case ${DIFFGATES_GPU_DRY_RUN:-0} in 1|true|yes|on) DRY=1 ;; esac
if [ $DRY = 1 ]; then export TRITON_INTERPRET=1; else unset TRITON_INTERPRET; fi  # GPU tests skip under it
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT_DIR=${OUT_DIR:-$ROOT/runs/gpu_check/out}
[ $DRY = 1 ] && RUN_DIR=${RUN_DIR:-$ROOT/runs/gpu_check/mnist_large_dry} || RUN_DIR=${RUN_DIR:-$ROOT/runs/gpu_check/mnist_large}

# ---- LIMITS: seconds of wall time per step (TERM, then KILL after the grace, within the limit) -------
# Each step's limit is cut to what is left before TOTAL - RESERVE. Step 4 gets all that is left (at
# most MNIST_CAP s, its grace included, when that is set), and runs only when that gives it MNIST_MIN s
# before its SIGTERM. Full: 30+100+90+100+90 = 410 s for steps 0-3, then >= 60 s for step 4 (30 s to
# run, 30 s to write its checkpoint), 10 s reserve: 480 s. Quick: 30+60+40+50+45 = 225 s, then step 4 only
# with the time the others left over: 240 s in all.
# The dry run's inference sweep has a 1 s budget on purpose: it runs the budget's cut-off path.
#                           total env tests train8000 train64000 infer  sweep: train infer  mnist: min cap
if [ $DRY = 1 ]; then       L=(240  20  60    40        40         50            20    1           5   18)
elif [ $QUICK = 1 ]; then   L=(240  30  60    40        50         45            0     0           30  0)
else                        L=(480  30  100   90        100        90            40    20          30  0)
fi
TOTAL=${L[0]} LIM_ENV=${L[1]} LIM_TESTS=${L[2]} LIM_T8=${L[3]} LIM_T64=${L[4]} LIM_INFER=${L[5]}
SWEEP_TRAIN=${L[6]} SWEEP_INFER=${L[7]} MNIST_MIN=${L[8]} MNIST_CAP=${L[9]}
RESERVE=10 GRACE=10 MIN_STEP=10 MNIST_GRACE=30   # the trainer writes its checkpoint on SIGTERM, within MNIST_GRACE
[ $DRY = 1 ] && GRACE=5 MIN_STEP=5 MNIST_GRACE=10
for kv in "${LIMITS[@]}"; do
  v=${kv#*=}
  case $v in ''|*[!0-9]*) echo "gpu_check.sh: --limit $kv: want STEP=SECONDS" >&2; exit 2 ;; esac
  case ${kv%%=*} in
    total) TOTAL=$v ;; environment) LIM_ENV=$v ;; gpu_tests) LIM_TESTS=$v ;; train_w8000) LIM_T8=$v ;;
    train_w64000) LIM_T64=$v ;; inference) LIM_INFER=$v ;; mnist_large_chunk) MNIST_CAP=$v ;;
    *) echo "gpu_check.sh: --limit: unknown step '${kv%%=*}'" >&2; exit 2 ;;
  esac
done
FIXED=$((LIM_ENV + LIM_TESTS + LIM_T8 + LIM_T64 + LIM_INFER))

if [ $PLAN = 1 ]; then
  echo "gpu_check plan ($([ $QUICK = 1 ] && echo quick || echo full)$([ $DRY = 1 ] && echo ', dry run')):" \
       "at most $TOTAL s: steps 0-3 $FIXED s, step 4 what is left (it runs with at least" \
       "$((MNIST_MIN + MNIST_GRACE)) s), $RESERVE s reserve for the summary"
  echo "limits: total=$TOTAL reserve=$RESERVE environment=$LIM_ENV gpu_tests=$LIM_TESTS train_w8000=$LIM_T8" \
       "train_w64000=$LIM_T64 inference=$LIM_INFER mnist_large_chunk_min=$((MNIST_MIN + MNIST_GRACE))" \
       "mnist_large_chunk_cap=$MNIST_CAP"
  WORK=${TMPDIR:-/tmp}/gpu_check.XXXXXX
else
  mkdir -p "$OUT_DIR" "$RUN_DIR" || exit 2
  OUT_DIR=$(cd "$OUT_DIR" && pwd) RUN_DIR=$(cd "$RUN_DIR" && pwd)
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 2
  trap 'rm -rf "$WORK"' EXIT
fi
START=$(date +%s)
DEADLINE=$((START + TOTAL - RESERVE))

selected() { case ",$ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
record() {  # name rc t0 t1 limit note  (rc: a number, 'skipped' or 'not_selected')
  if [ $PLAN = 1 ]; then printf '  %-18s %s\n' "$1" "${6:-$2}"; return; fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$WORK/steps.tsv"
}
aggregate() {  # (re)write gpu_check.json, summary.txt and gpu_check.log from what is in $WORK
  [ $PLAN = 1 ] && return 0
  "$PY" "$WORK/aggregate.py" "$WORK" "$OUT_DIR" > "$WORK/aggregate.out" 2>&1 && { rm -f "$WORK/exit_status"; return 0; }
  { echo "gpu_check.sh: the summary could not be written:"; cat "$WORK/aggregate.out"; echo
    echo "steps (name, rc, start, end, limit, note):"; cat "$WORK/steps.tsv"; } > "$OUT_DIR/summary.txt"
  for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "==== $f"; tail -c 1000000 "$f"; }; done > "$OUT_DIR/gpu_check.log"
  echo 1 > "$WORK/exit_status"
  return 1
}
# run_step NAME LIMIT GRACE [--preserve-status] CMD...: CMD's output to $WORK/NAME.log, SIGTERM at
# LIMIT - GRACE s, SIGKILL at LIMIT. The limit is cut to what is left before the deadline; a step that
# would get under MIN_STEP s (MNIST_MIN for step 4) before its SIGTERM is skipped.
run_step() {
  local name=$1 limit=$2 grace=$3 min=$MIN_STEP preserve=()
  shift 3
  if [ "$1" = --preserve-status ]; then preserve=(--preserve-status); shift; fi
  [ "$name" = mnist_large_chunk ] && min=$MNIST_MIN
  if [ $PLAN = 1 ]; then
    local shown="$limit s"
    [ "$name" = mnist_large_chunk ] && shown="the rest (>= $((MNIST_MIN + grace)) s$([ "$MNIST_CAP" -gt 0 ] && echo ", <= $MNIST_CAP s"))"
    printf '  %-18s %s:  %s\n' "$name" "$shown" "$(printf '%q ' "$@")"; return
  fi
  local left=$((DEADLINE - $(date +%s)))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$((limit - grace))" -lt "$min" ]; then
    record "$name" skipped "" "" "$limit" "no time left: ${left} s before the deadline"
    echo "gpu_check: $name skipped (no time left)"; aggregate; return
  fi
  printf '%q ' "$@" > "$WORK/$name.cmd"
  echo "gpu_check: $name (limit ${limit} s): $(cat "$WORK/$name.cmd")"
  local t0 t1 rc
  t0=$(date +%s.%N)
  # In the background, so that a signal to this script is handled at once (on_signal stops the step).
  timeout "${preserve[@]}" -s TERM -k "$grace" "$((limit - grace))" "$@" > "$WORK/$name.log" 2>&1 < /dev/null &
  STEP_PID=$! STEP_NAME=$name STEP_T0=$t0 STEP_LIMIT=$limit
  wait "$STEP_PID"
  rc=$?
  STEP_PID=
  t1=$(date +%s.%N)
  record "$name" "$rc" "$t0" "$t1" "$limit" ""
  echo "gpu_check: $name exit $rc after $(awk "BEGIN{printf \"%.1f\", $t1 - $t0}") s"
  aggregate
}

# A TERM, INT or HUP to this script stops the step in flight (timeout passes the signal on), records
# it and writes the results so far; the exit status is then 1.
STEP_PID=
on_signal() {
  trap '' TERM INT HUP
  if [ -n "$STEP_PID" ]; then
    kill -TERM "$STEP_PID" 2>/dev/null
    wait "$STEP_PID"
    record "$STEP_NAME" "$?" "$STEP_T0" "$(date +%s.%N)" "$STEP_LIMIT" "stopped: gpu_check.sh got a signal"
  fi
  aggregate
  echo "gpu_check: stopped by a signal; results so far in $OUT_DIR" >&2
  exit 1
}
[ $PLAN = 0 ] && trap on_signal TERM INT HUP

# ---- helpers written to $WORK (Python: the environment probe, a tiny MNIST, the aggregator) ---------
if [ $PLAN = 0 ]; then
printf '%s\n' "$START" "$TOTAL" "$DRY" "$QUICK" "$OUT_DIR" "$RUN_DIR" "$ROOT" > "$WORK/run.txt"
printf '%q ' bash scripts/gpu_check.sh "${ARGS[@]}" > "$WORK/command.txt"
: > "$WORK/steps.tsv"
cat > "$WORK/env_probe.py" <<'PYEOF'
"""Versions and the device, as JSON (argv[1]): nvidia-smi when present, torch, CUDA, Triton."""
import json, os, platform, shutil, subprocess, sys
info = {"python": platform.python_version(), "python_executable": sys.executable, "platform": platform.platform(),
        "hostname": platform.node(), "cpu_count": os.cpu_count(),
        "env": {k: os.environ.get(k) for k in ("TRITON_INTERPRET", "CUDA_VISIBLE_DEVICES", "DIFFGATES_GPU_DRY_RUN")}}
def run(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
        return p.stdout.strip() if p.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
info["git_commit"] = run(["git", "rev-parse", "HEAD"])
status = run(["git", "status", "--short", "--untracked-files=no"])
info["git_dirty"] = None if status is None else bool(status)
if shutil.which("nvidia-smi"):
    fields = ["name", "driver_version", "memory.total", "compute_cap", "clocks.max.sm", "power.limit", "pci.bus_id"]
    out = run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"])
    info["nvidia_smi"] = [dict(zip(fields, (v.strip() for v in line.split(",")))) for line in (out or "").splitlines()] or out
    print(run(["nvidia-smi"]) or "nvidia-smi failed")
else:
    info["nvidia_smi"] = None
    print("nvidia-smi: not found")
for mod in ("numpy", "safetensors", "triton", "diffgates"):
    try:
        m = __import__(mod)
        info[mod] = getattr(m, "__version__", "?")
    except Exception as exc:  # noqa: BLE001 - record, go on
        info[mod] = None
        info[mod + "_error"] = f"{type(exc).__name__}: {exc}"
try:
    import torch
    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.version.cuda
    info["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        info["cudnn"] = torch.backends.cudnn.version()
        devs = []
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            devs.append({"index": i, "name": p.name, "capability": f"{p.major}.{p.minor}",
                         "sms": p.multi_processor_count, "memory_gib": round(p.total_memory / 2**30, 1)})
        info["gpus"] = devs
except Exception as exc:  # noqa: BLE001
    info["torch"] = None
    info["torch_error"] = f"{type(exc).__name__}: {exc}"
with open(sys.argv[1], "w") as f:
    json.dump(info, f, indent=1)
print(json.dumps(info, indent=1))
PYEOF

cat > "$WORK/fake_mnist.py" <<'PYEOF'
"""A tiny MNIST-format data set (idx files, gzip) in argv[1]/mnist, for the dry run without real data."""
import gzip, os, struct, sys
import numpy as np
root = os.path.join(sys.argv[1], "mnist")
os.makedirs(root, exist_ok=True)
rng = np.random.default_rng(0)
for prefix, n in (("train", 600), ("t10k", 100)):
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):  # a learnable bright bar per class
        images[i, 2 + 2 * c: 4 + 2 * c, 4:24] = 255
    with gzip.open(os.path.join(root, f"{prefix}-images-idx3-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
    with gzip.open(os.path.join(root, f"{prefix}-labels-idx1-ubyte.gz"), "wb") as f:
        f.write(struct.pack(">II", 2049, n) + labels.tobytes())
PYEOF

cat > "$WORK/aggregate.py" <<'PYEOF'
"""Turn $WORK (steps.tsv, step logs, the benchmarks' JSON) into gpu_check.json, summary.txt, gpu_check.log."""
import datetime, json, os, re, sys, time
import xml.etree.ElementTree as ET

work, out = sys.argv[1], sys.argv[2]
start, total, dry, quick, out_dir, run_dir, root = open(os.path.join(work, "run.txt")).read().split("\n")[:7]
start, total, dry, quick = int(start), int(total), dry == "1", quick == "1"
TITLES = {
    "environment": "0. GPU, driver and library versions",
    "gpu_tests": "1. CUDA-only tests (pytest -m gpu)",
    "train_w8000": "2a. training step 784->8000x6 vs the reference mixture, with launch sweep",
    "train_w64000": "2b. training step 784->64000x6 vs the reference mixture, with launch sweep",
    "inference": "3. packed inference of the 48K-gate net, sweep, bit-exact before and after timing",
    "mnist_large_chunk": "4. a resumable chunk of the 384K-gate MNIST run (--preset mnist_large)",
}


def read(name, default=None):
    try:
        with open(os.path.join(work, name)) as f:
            return f.read()
    except OSError:
        return default


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fnum(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def tests_result(step):
    res = {}
    try:
        suite = ET.parse(os.path.join(work, "gpu_tests.xml")).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        n = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
        n["passed"] = n["tests"] - n["failures"] - n["errors"] - n["skipped"]
        res.update(n)
        res["failed_tests"] = [f"{c.get('classname')}::{c.get('name')}" for c in suite.iter("testcase")
                               if c.find("failure") is not None or c.find("error") is not None][:50]
        res["skip_reasons"] = sorted({(s.get("message") or "")[:120] for s in suite.iter("skipped")})[:10]
    except (OSError, ET.ParseError, AttributeError):
        pass
    log = read("gpu_tests.log", "")
    last = [l for l in log.strip().splitlines() if re.search(r"\d+ (passed|failed|skipped|deselected|error)", l)]
    if last:
        res["pytest_summary"] = last[-1].strip("= ")
    if step["status"] == "passed":
        if dry:
            step["note"] = (f"dry run (no CUDA): pytest skipped the {res.get('skipped', '?')} gpu-marked tests"
                            if not res.get("passed") else f"{res.get('passed')} passed")
        elif not res.get("passed"):
            step["status"], step["note"] = "failed", "no gpu-marked test ran (all skipped: no CUDA device?)"
        else:
            step["note"] = f"{res['passed']} passed, {res.get('skipped', 0)} skipped"
    elif res:
        step["note"] = res.get("pytest_summary", "")
    return res


def bench_result(step, name):
    data = load_json(os.path.join(work, name + ".json"))
    if data is None:
        if step["status"] == "passed":
            step["status"], step["note"] = "failed", "the benchmark wrote no JSON"
        return None
    return data


def training_headline(data):
    """Per (model, batch): the reference, the dispatched Triton path, and the fastest Triton variant."""
    rows = (data or {}).get("training", {}).get("rows", [])
    out = []
    for key in dict.fromkeys((r[0], r[1]) for r in rows):
        group = {r[2]: fnum(r[3]) for r in rows if (r[0], r[1]) == key}
        ref = group.get("reference")
        triton = {k: v for k, v in group.items() if k.startswith("triton") and v is not None}
        best = min(triton, key=triton.get) if triton else None
        h = {"model": key[0], "batch": key[1], "reference_ms": ref,
             "dispatch_ms": group.get("triton dispatch"), "best_variant": best,
             "best_ms": triton.get(best) if best else None}
        h["speedup_best"] = round(ref / h["best_ms"], 2) if ref and h["best_ms"] else None
        h["speedup_dispatch"] = round(ref / h["dispatch_ms"], 2) if ref and h["dispatch_ms"] else None
        h["not_timed"] = {r[2]: r[3] for r in rows if (r[0], r[1]) == key and fnum(r[3]) is None}
        out.append(h)
    return out


def inference_headline(data):
    rows = (data or {}).get("inference", {}).get("rows", [])
    return [{"circuit": r[0], "word_bits": r[1], "batch": r[2], "ms": fnum(r[3]), "M_images_per_s": fnum(r[4]),
             "pack_M_images_per_s": fnum(r[5]), "launch_config": r[6], "bit_exact": r[7] == "yes"} for r in rows]


def mnist_result(step):
    res = {"run_dir": run_dir, "notes": read("mnist.note", "").strip() or None}
    before = load_json(os.path.join(work, "mnist_checkpoint_before.json"))
    res["start_step"] = before.get("step") if before else 0
    r = load_json(os.path.join(run_dir, "results.json"))
    ckpt = load_json(os.path.join(run_dir, "checkpoint.json"))
    fresh = r is not None and os.path.getmtime(os.path.join(run_dir, "results.json")) >= float(step.get("t0") or 0)
    if r is not None:
        cfg = r.get("config", {})
        last = (r.get("evaluations") or [None])[-1]
        res.update(status=r.get("status"), step=r.get("step"), num_iterations=cfg.get("num_iterations"),
                   model=f"{cfg.get('num_layers')} layers x {cfg.get('num_neurons')} gates",
                   device=cfg.get("device"), implementation=cfg.get("implementation"),
                   ms_per_step=round(1e3 * r["timings"]["s_per_step"], 3) if r.get("timings", {}).get("s_per_step") else None,
                   last_evaluation=last, results_written_this_call=fresh)
        if res.get("step") is not None:
            res["steps_this_call"] = res["step"] - (res["start_step"] or 0)
    res["checkpoint_step"] = ckpt.get("step") if ckpt else None
    p = os.path.join(run_dir, "checkpoint.safetensors")
    res["checkpoint_bytes"] = os.path.getsize(p) if os.path.exists(p) else None
    rc = step.get("rc")
    if step["status"] in ("skipped", "not_selected"):
        return res
    if rc == 0 and fresh:
        step["status"] = "passed"
        step["note"] = (f"run finished at step {res.get('step')}" if res.get("status") == "finished" else
                        f"stopped at step {res.get('step')}")
    elif rc == 130 and fresh and res.get("status") == "interrupted" and res["checkpoint_bytes"]:
        step["status"] = "passed"
        step["note"] = (f"stopped at its time limit after {res.get('steps_this_call')} steps; checkpoint at step "
                        f"{res['checkpoint_step']}; the next call resumes it")
    else:
        step["status"] = "timed_out" if rc in (124, 137, 143) else "failed"
        tail = [l.strip() for l in (read("mnist_large_chunk.log", "") or "").splitlines() if l.strip()]
        step["note"] = (f"exit {rc}; " + ("no fresh results.json" if not fresh else f"run status {res.get('status')}")
                        + (f"; last output: {tail[-1][:200]}" if tail else ""))
    return res


steps = []
for line in (read("steps.tsv", "") or "").splitlines():
    name, rc, t0, t1, limit, note = (line.split("\t") + [""] * 6)[:6]
    step = {"name": name, "title": TITLES.get(name, name), "limit_s": int(limit) if limit.lstrip("-").isdigit() else None,
            "command": (read(name + ".cmd", "") or "").strip() or None, "note": note or None}
    if rc in ("skipped", "not_selected"):
        step.update(status=rc, rc=None, seconds=None)
    else:
        step.update(rc=int(rc), t0=float(t0), seconds=round(float(t1) - float(t0), 1))
        step["status"] = "passed" if step["rc"] == 0 else ("timed_out" if step["rc"] in (124, 137) else "failed")
        if step["status"] == "timed_out":
            step["note"] = f"stopped at its {step['limit_s']} s limit"
    if step["status"] in ("failed", "timed_out"):
        tail = [l.strip() for l in (read(name + ".log", "") or "").splitlines() if l.strip()]
        if tail:
            step["note"] = (step["note"] + "; " if step["note"] else "") + "last output: " + tail[-1][:200]
    results = None
    if name == "environment":
        results = load_json(os.path.join(work, "environment.json"))
        if step["status"] == "passed" and results is None:
            step["status"], step["note"] = "failed", "no environment.json"
        elif step["status"] == "passed" and not dry and not results.get("cuda_available"):
            step["status"], step["note"] = "failed", "torch sees no CUDA device"
        elif step["status"] == "passed" and dry:
            step["note"] = "dry run: no GPU, Triton's interpreter"
    elif name == "gpu_tests" and step["status"] != "not_selected":
        results = tests_result(step)
    elif name in ("train_w8000", "train_w64000", "inference") and step["status"] not in ("skipped", "not_selected"):
        results = bench_result(step, name)
    elif name == "mnist_large_chunk":
        results = mnist_result(step)
    step["results"] = results
    step.pop("t0", None)
    steps.append(step)

env = next((s["results"] for s in steps if s["name"] == "environment"), None) or {}
smi = env.get("nvidia_smi")
smi0 = smi[0] if isinstance(smi, list) and smi else {}
gpus = env.get("gpus") or []
gpu_name = (gpus[0]["name"] if gpus else smi0.get("name")) or ("none (dry run on CPU)" if dry else "none found")
training = [h for s in steps if s["name"].startswith("train_w") for h in training_headline(s["results"])]
inference = next((inference_headline(s["results"]) for s in steps if s["name"] == "inference"), [])
mnist = next((s["results"] for s in steps if s["name"] == "mnist_large_chunk"), None)
benches = [s["results"] for s in steps if s["name"] in ("train_w8000", "train_w64000", "inference") and s["results"]]
sweeps = [w for b in benches for w in b.get("sweeps", [])]
tuning = [dict(zip(b["training_sweep"]["headers"], r)) for b in benches if "training_sweep" in b
          for r in b["training_sweep"]["rows"]]
failed = [s["name"] for s in steps if s["status"] in ("failed", "timed_out")]
done = os.path.exists(os.path.join(work, "finished"))
now = time.time()
report = {
    "format": "diffgates.gpu_check", "format_version": 1,
    "mode": "quick" if quick else "full", "dry_run": dry, "complete": done,
    "passed": done and not failed, "exit_status": 0 if not failed else 1, "failed_steps": failed,
    "started": datetime.datetime.fromtimestamp(start, datetime.timezone.utc).isoformat(timespec="seconds"),
    "wall_s": round(now - start, 1), "time_limit_s": total,
    "command": (read("command.txt", "") or "").strip(), "out_dir": out_dir,
    "gpu": {"name": gpu_name, "driver": smi0.get("driver_version"), "memory": smi0.get("memory.total"),
            "compute_capability": (gpus[0]["capability"] if gpus else smi0.get("compute_cap")),
            "torch": env.get("torch"), "cuda": env.get("torch_cuda"), "triton": env.get("triton"),
            "python": env.get("python"), "diffgates": env.get("diffgates"), "git_commit": env.get("git_commit")},
    "measured": {"training": training, "training_tuning": tuning, "inference": inference, "sweeps": sweeps,
                 "mnist_large_chunk": mnist},
    "steps": steps,
}
if dry:
    report["note"] = "dry run on the CPU under Triton's interpreter at tiny sizes: timings mean nothing"
tmp = os.path.join(out, "gpu_check.json.tmp")
with open(tmp, "w") as f:
    json.dump(report, f, indent=1, default=str)
os.replace(tmp, os.path.join(out, "gpu_check.json"))

# summary.txt: the short version
L = []
L.append(f"diffgates GPU check ({report['mode']}{', DRY RUN on CPU: timings mean nothing' if dry else ''}) "
         f"started {report['started']}, {report['wall_s']} s of {total} s"
         + ("" if done else "  [INCOMPLETE: still running or stopped early]"))
g = report["gpu"]
L.append(f"GPU: {g['name']}; driver {g['driver']}; memory {g['memory']}; compute capability {g['compute_capability']}")
L.append(f"torch {g['torch']} (CUDA {g['cuda']}), triton {g['triton']}, python {g['python']}, "
         f"diffgates {g['diffgates']}, commit {(g['git_commit'] or '?')[:12]}")
L.append("")
L.append(f"{'step':<20} {'status':<12} {'seconds':>8} {'limit':>6}  note")
for s in steps:
    L.append(f"{s['name']:<20} {s['status']:<12} {s['seconds'] if s['seconds'] is not None else '-':>8} "
             f"{s['limit_s'] if s['limit_s'] is not None else '-':>6}  {s['note'] or ''}")
if training:
    L.append("")
    L.append("training step (forward + backward + Adam, float32), ms/step (median) and speed-up vs the reference:")
    for h in training:
        fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else "-"
        dispatch = (f"triton dispatch {fmt(h['dispatch_ms'])} ({h['speedup_dispatch']}x); "
                    if h["dispatch_ms"] is not None else "")
        L.append(f"  {h['model']} batch {h['batch']}: reference {fmt(h['reference_ms'])}; {dispatch}fastest "
                 f"{h['best_variant']} {fmt(h['best_ms'])} ({h['speedup_best'] or '-'}x)"
                 + "".join(f"; {k}: {v}" for k, v in h["not_timed"].items()))
if tuning:
    L.append("")
    L.append("training launch-parameter sweep (paste the winner into gpu_triton.TUNING):")
    for t in tuning:
        L.append("  " + ", ".join(f"{k} {v}" for k, v in t.items()))
if inference:
    L.append("")
    L.append("packed inference of the 48K-gate net (pre-packed input):")
    for h in inference:
        L.append(f"  word bits {h['word_bits']}, batch {h['batch']}: {h['M_images_per_s']} M images/s, "
                 f"packing {h['pack_M_images_per_s']} M images/s, bit-exact {'yes' if h['bit_exact'] else 'NO'}, "
                 f"{h['launch_config']}")
if sweeps:
    L.append("")
    L.append("sweeps: " + "; ".join(f"{w.get('what')}: {w.get('points')} points in {w.get('seconds')} s"
                                   + ("" if w.get("complete") else " (cut at its time budget)") for w in sweeps))
if mnist and mnist.get("step") is not None:
    ev = mnist.get("last_evaluation") or {}
    acc = ev.get("test_acc_eval_mode")
    L.append("")
    L.append(f"MNIST chunk ({mnist.get('model')}, {mnist.get('device')}): steps {mnist.get('start_step')} -> "
             f"{mnist.get('step')} of {mnist.get('num_iterations')}, {mnist.get('ms_per_step')} ms/step (run average)"
             + (f", discrete test accuracy {100 * acc:.2f}% at step {ev.get('step')}" if acc is not None else "")
             + f"; checkpoint at step {mnist.get('checkpoint_step')} in {mnist.get('run_dir')}")
L.append("")
L.append("PASSED" if report["passed"] else ("FAILED: " + ", ".join(failed) if failed else "NOT FINISHED"))
with open(os.path.join(out, "summary.txt"), "w") as f:
    f.write("\n".join(L) + "\n")

# gpu_check.log: every step's output (the last MB of each)
with open(os.path.join(out, "gpu_check.log"), "w") as f:
    for s in steps:
        f.write(f"==== {s['name']}: {s['status']} ({s['seconds']} s of {s['limit_s']}) {s['command'] or ''}\n")
        text = read(s["name"] + ".log", "") or ""
        f.write(text[-1_000_000:] + ("\n" if text and not text.endswith("\n") else ""))
print("\n".join(L))
PYEOF
fi

[ $PLAN = 0 ] && echo "gpu_check: $([ $DRY = 1 ] && echo 'DRY RUN (CPU, Triton interpreter), ')$([ $QUICK = 1 ] && echo quick || echo full) run," \
     "at most ${TOTAL} s; results in $OUT_DIR"

# ---- step 0: the environment ------------------------------------------------------------------------
run_step environment "$LIM_ENV" "$GRACE" "$PY" "$WORK/env_probe.py" "$WORK/environment.json"

# ---- step 1: the CUDA-only tests --------------------------------------------------------------------
if selected tests; then
  run_step gpu_tests "$LIM_TESTS" "$GRACE" "$PY" -m pytest -q -m gpu --junitxml="$WORK/gpu_tests.xml" tests
else record gpu_tests not_selected "" "" "" "not in --only"; fi

# ---- step 2: the training-step benchmark, one run per width (each keeps its results if a later one fails)
bench=("$PY" benchmarks/bench_gpu.py)
[ $DRY = 1 ] && bench+=(--dry-run-cpu)
train=(--skip-inference --batches 100 1000)
if [ $QUICK = 1 ]; then train+=(--steps 10 --ref-steps 5); else train+=(--sweep-training --sweep-seconds "$SWEEP_TRAIN"); fi
for width in 8000 64000; do
  limit=$LIM_T8; [ $width = 64000 ] && limit=$LIM_T64
  if selected train; then
    run_step "train_w$width" "$limit" "$GRACE" "${bench[@]}" "${train[@]}" --widths "$width" --json "$WORK/train_w$width.json"
  else record "train_w$width" not_selected "" "" "" "not in --only"; fi
done

# ---- step 3: packed inference of the 48K-gate net ---------------------------------------------------
infer=(--skip-training)
if [ $QUICK = 1 ]; then infer+=(--steps 10); else infer+=(--sweep --sweep-seconds "$SWEEP_INFER"); fi
if selected infer; then
  run_step inference "$LIM_INFER" "$GRACE" "${bench[@]}" "${infer[@]}" --json "$WORK/inference.json"
else record inference not_selected "" "" "" "not in --only"; fi

# ---- step 4: a resumable chunk of the 384K-gate MNIST run -------------------------------------------
if selected mnist; then
  note=()
  data=
  candidates=(../shared/data shared/data "${DIFFGATES_DATA:-}")
  [ -n "$DATA_ARG" ] && candidates=("$DATA_ARG")
  for d in "${candidates[@]}"; do
    if [ -n "$d" ] && [ -f "$d/mnist/train-images-idx3-ubyte.gz" ] && [ -f "$d/mnist/t10k-labels-idx1-ubyte.gz" ]; then
      data=$(cd "$d" && pwd); break
    fi
  done
  if [ $PLAN = 1 ]; then
    data=${data:-"$WORK/data"}
  else
    if [ -z "$data" ] && [ $DRY = 1 ] && "$PY" "$WORK/fake_mnist.py" "$WORK/data" > "$WORK/fake_mnist.log" 2>&1; then
      data=$WORK/data; note+=("no MNIST files found: a tiny synthetic MNIST-format set")
    fi
    if [ -n "$RESUME_FROM" ]; then
      if [ -f "$RUN_DIR/checkpoint.safetensors" ]; then
        note+=("--resume-from ignored: $RUN_DIR already holds a checkpoint")
      elif [ -f "$RESUME_FROM/checkpoint.safetensors" ]; then
        cp -p "$RESUME_FROM"/* "$RUN_DIR"/ 2>/dev/null; note+=("continued from a copy of $RESUME_FROM")
      else
        note+=("--resume-from $RESUME_FROM holds no checkpoint.safetensors: not used")
      fi
    fi
    [ -f "$RUN_DIR/checkpoint.json" ] && cp "$RUN_DIR/checkpoint.json" "$WORK/mnist_checkpoint_before.json"
    [ -n "$data" ] && note+=("data: $data")
    [ ${#note[@]} -gt 0 ] && printf '%s; ' "${note[@]}" > "$WORK/mnist.note"
  fi
  if [ -z "$data" ]; then
    record mnist_large_chunk skipped "" "" "" "no MNIST files (DIR/mnist/*-idx?-ubyte.gz) in ${candidates[*]}: pass --data-dir DIR"
    aggregate
  else
    if [ $DRY = 1 ]; then  # 2 x 80 gates, stopped by its time limit like the real chunk
      model=(-k 80 -l 2 -ni 100000000 -ef 100000000 --device cpu --checkpoint-minutes 0.05)
    else
      model=(-ni 200000 --device cuda --checkpoint-minutes 1)
    fi
    limit=$((DEADLINE - $(date +%s)))  # all that is left, or MNIST_CAP when that is set and less
    [ "$MNIST_CAP" -gt 0 ] && [ "$MNIST_CAP" -lt "$limit" ] && limit=$MNIST_CAP
    # --resume also starts a fresh run when the folder holds no checkpoint yet; SIGTERM at the limit
    # makes the trainer finish its step, checkpoint and exit 130 (kept by --preserve-status).
    run_step mnist_large_chunk "$limit" "$MNIST_GRACE" --preserve-status "$PY" -m diffgates train \
      --preset mnist_large "${model[@]}" --implementation gpu --data-dir "$data" --out "$RUN_DIR" \
      --resume --no-progress
  fi
else record mnist_large_chunk not_selected "" "" "" "not in --only"; fi

[ $PLAN = 1 ] && exit 0
touch "$WORK/finished"
aggregate || true
cat "$OUT_DIR/summary.txt"
status=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["exit_status"])' "$OUT_DIR/gpu_check.json" 2>/dev/null)
[ -f "$WORK/exit_status" ] && status=$(cat "$WORK/exit_status")
exit "${status:-1}"
