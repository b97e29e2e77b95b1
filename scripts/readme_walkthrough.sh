#!/usr/bin/env bash
# Follow the README's commands, in order, as a new user would, in a temp copy of this checkout;
# stop at the first one that fails. Not part of `make test` (minutes to tens of minutes).
#
#   scripts/readme_walkthrough.sh           # as written: `make demo` (the whole demo pipeline) first
#   scripts/readme_walkthrough.sh --quick   # instead of `make demo`/`dvc repro`: `mmops run` on 200 samples
#   scripts/readme_walkthrough.sh --keep    # keep the temp copy (its path is printed)
#   ... --quick --set k=v                   # one more override for the quick runs (repeatable)
#
# Needs the checkout's .venv (`make setup`); the copy links to it. Every command that the README
# prints is checked to still be there verbatim (`readme_has`), and the README's Python snippet is
# taken from the README itself. Servers run on free ports on 127.0.0.1 and are stopped by PID.
set -euo pipefail

QUICK=0 KEEP=0 EXTRA_SET=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --keep) KEEP=1 ;;
    --set) EXTRA_SET+=(--set "$2"); shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

SRC="$(cd "$(dirname "$0")/.." && pwd)"
[ -x "$SRC/.venv/bin/mmops" ] || { echo "no $SRC/.venv: run make setup first" >&2; exit 2; }
WORK="$(mktemp -d /tmp/mmops-readme-XXXXXX)"
PIDS=()
cleanup() {
  local rc=$?
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && { kill -TERM -- "-$pid" 2>/dev/null || true; }
  done
  for pid in "${PIDS[@]:-}"; do
    [ -n "$pid" ] || continue
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && { kill -KILL -- "-$pid" 2>/dev/null || true; }
  done
  if [ "$KEEP" = 1 ] || [ "$rc" != 0 ]; then echo "walkthrough folder kept: $WORK" >&2; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT

N=0
step() {  # step "what" command...: run one README command, fail the walkthrough if it fails
  N=$((N + 1))
  local what="$1"; shift
  printf '\n=== %2d. %s\n$ %s\n' "$N" "$what" "$*"
  local t0=$SECONDS
  if ! "$@"; then echo "FAILED at step $N: $what" >&2; return 1; fi
  printf -- '--- ok (%ss)\n' "$((SECONDS - t0))"
}
readme_has() {  # the README still shows this text verbatim
  grep -qF -- "$1" README.md || { echo "README no longer contains: $1" >&2; return 1; }
}
free_port() { "$SRC/.venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
background() {  # background LOG command...: start in its own process group; sets BG_PID
  setsid "${@:2}" >"$1" 2>&1 &
  BG_PID=$!
  PIDS+=("$BG_PID")
}
stop() {  # stop PID: TERM its group (a script's background jobs ignore SIGINT), wait up to 90 s, then KILL
  kill -TERM -- "-$1" 2>/dev/null || true
  for _ in $(seq 90); do kill -0 "$1" 2>/dev/null || return 0; sleep 1; done
  kill -KILL -- "-$1" 2>/dev/null || true
}
wait_url() {  # wait_url URL SECONDS PID LOG
  for _ in $(seq "$2"); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$3" 2>/dev/null || { echo "server exited; $4:" >&2; tail -40 "$4" >&2; return 1; }
    sleep 1
  done
  echo "$1 not up after $2 s; $4:" >&2; tail -40 "$4" >&2; return 1
}
wait_log() {  # wait_log PATTERN SECONDS PID LOG
  for _ in $(seq "$2"); do
    grep -q -- "$1" "$4" && return 0
    kill -0 "$3" 2>/dev/null || { echo "exited; $4:" >&2; tail -40 "$4" >&2; return 1; }
    sleep 1
  done
  echo "'$1' not in $4 after $2 s" >&2; tail -40 "$4" >&2; return 1
}

# --- a fresh copy: tracked and untracked-but-not-ignored files, mtimes kept (make's stamp stays valid)
cd "$SRC"
git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | tar --null -T - -cf - | tar -xf - -C "$WORK"
ln -sfn "$SRC/.venv" "$WORK/.venv"
cd "$WORK"
# the venv's editable install points at $SRC; the copy's code is what a fresh clone would run
export PYTHONPATH="$WORK"
echo "walkthrough in $WORK (quick=$QUICK)"

# a new user's shell: no venv on PATH, no tool variables
unset VIRTUAL_ENV MLFLOW_TRACKING_URI PREFECT_API_URL PREFECT_API_AUTH_STRING PREFECT_HOME DVC_SITE_CACHE_DIR HF_HOME \
  MMOPS_MEDIA_ROOT DO_NOT_TRACK PREFECT_SERVER_ANALYTICS_ENABLED
PATH="$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$SRC/.venv/bin" | paste -sd: -)"
export PATH
# a busy machine (a test suite on the same cores) can take over Prefect's default 120 s to start
# its temporary server; mmops keeps a value set here
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="${PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS:-600}"
if command -v mmops >/dev/null; then echo "note: an mmops is on PATH already: $(command -v mmops)"; fi

# Quick runs: the pipeline's size (README commands get these as --set; params.yaml stays as in git)
QUICK_SET=(--set demo.n_samples=200 --set train.epochs=3 --set train.min_epochs=1 --set quantize.enabled=false
           "${EXTRA_SET[@]}")

# --- top of the README
if [ "$QUICK" = 1 ]; then
  readme_has "make demo"
  step "make demo, quick: the pipeline on 200 samples (venv present: no set-up)" \
    .venv/bin/mmops run "${QUICK_SET[@]}"
  # a 3-epoch model may fail the gate: make it the champion the way the README says (--force)
  VERSION=$(.venv/bin/python -c 'import json; print(json.load(open("reports/registry.json"))["version"])')
  if ! .venv/bin/python -c 'import json, sys; sys.exit(0 if json.load(open("reports/registry.json"))["promoted"] else 1)'; then
    readme_has "# --force for a version the gate rejected"
    step "quick: promote the small model the gate rejected" \
      .venv/bin/mmops promote "$VERSION" --force --reason "README walkthrough, quick run"
  fi
else
  step "make demo" make demo
fi

readme_has ".venv/bin/mmops ui mlflow"
PORT=$(free_port)
step "the MLflow UI on the project's store (printed command)" .venv/bin/mmops ui mlflow --print-command --port "$PORT"
background "$WORK/ui-mlflow.log" .venv/bin/mmops ui mlflow --port "$PORT"
step "mmops ui mlflow answers /health" wait_url "http://127.0.0.1:$PORT/health" 240 "$BG_PID" "$WORK/ui-mlflow.log"
step "mmops ui mlflow lists the registered model" \
  curl -fsS "http://127.0.0.1:$PORT/api/2.0/mlflow/registered-models/get?name=mmops-classifier" -o /dev/null
stop "$BG_PID"

readme_has 'eval "$(.venv/bin/mmops env)"'
echo '$ eval "$(.venv/bin/mmops env)"'
eval "$(.venv/bin/mmops env)"
step "mmops is on PATH now" test "$(command -v mmops)" -ef "$SRC/.venv/bin/mmops"

# --- the tour
step "help on anything" mmops --help
if [ "$QUICK" = 1 ]; then
  echo "(quick: dvc repro skipped)"
else
  readme_has "dvc repro"
  step "reproduce with DVC" dvc repro
fi
readme_has "dvc metrics show"
step "dvc metrics show" dvc metrics show
step "mmops profile (Bring your own data, on the demo data)" mmops profile data/avdigits

# --- registry: the README's Python snippet, as written
python_snippet() {
  "$SRC/.venv/bin/python" - <<'EOF'
import re
text = open("README.md").read()
blocks = re.findall(r"```python\n(.*?)```", text, re.S)
print(next(b for b in blocks if "mlflow.pyfunc.load_model" in b))
EOF
}
SNIPPET="$(python_snippet)"
step "the README's Python snippet (models:/mmops-classifier@champion)" python -c "$SNIPPET"
step "mmops history" mmops history

# --- serving
readme_has "mmops serve --host 127.0.0.1 --port 8080"
PORT=$(free_port)
background "$WORK/serve.log" mmops serve --host 127.0.0.1 --port "$PORT"
step "mmops serve answers /health" wait_url "http://127.0.0.1:$PORT/health" 240 "$BG_PID" "$WORK/serve.log"
step "POST /predict (text only)" curl -fsS "http://127.0.0.1:$PORT/predict" -H 'content-type: application/json' \
  -d '{"instances": [{"text": "an odd number"}]}'
stop "$BG_PID"
readme_has "mmops predict --data data/avdigits --out predictions.csv"
step "batch predict" mmops predict --data data/avdigits --out predictions.csv
readme_has "mlflow models serve -m models:/mmops-classifier@champion --env-manager local -h 127.0.0.1 -p 5001"
PORT=$(free_port)
background "$WORK/mlflow-serve.log" mlflow models serve -m models:/mmops-classifier@champion --env-manager local \
  -h 127.0.0.1 -p "$PORT"
step "mlflow models serve answers /ping" wait_url "http://127.0.0.1:$PORT/ping" 300 "$BG_PID" "$WORK/mlflow-serve.log"
step "mlflow models serve /invocations" curl -fsS "http://127.0.0.1:$PORT/invocations" \
  -H 'content-type: application/json' \
  -d '{"dataframe_split": {"columns": ["text", "image", "audio"], "data": [["an odd number", null, null]]}}'
stop "$BG_PID"
test ! -e mlflow.db || { echo "a stray ./mlflow.db appeared" >&2; exit 1; }

# --- scheduling: `make scheduler` = `mmops schedule`, then another shell runs the deployment
readme_has "prefect deployment run mmops-retrain/manual"
PORT=$(free_port)
SCHED_SET=()
[ "$QUICK" = 1 ] && SCHED_SET=("${QUICK_SET[@]}")
background "$WORK/schedule.log" mmops schedule --port "$PORT" "${SCHED_SET[@]}"
SCHED=$BG_PID
step "mmops schedule is ready" wait_log "mmops schedule: ready" 300 "$SCHED" "$WORK/schedule.log"
another_shell() {  # a second shell, as the README says: eval "$(.venv/bin/mmops env)" first
  env -u PREFECT_API_URL -u PREFECT_API_AUTH_STRING -u MLFLOW_TRACKING_URI PATH="$PATH" bash -c "$1"
}
step "another shell: prefect deployment run mmops-retrain/manual" another_shell \
  'eval "$(.venv/bin/mmops env)" && prefect deployment run mmops-retrain/manual'
step "another shell: mmops ui prefect prints the scheduler's UI" another_shell \
  "eval \"\$(.venv/bin/mmops env)\" && test \"\$(mmops ui prefect)\" = http://127.0.0.1:$PORT"
stop "$SCHED"
step "mmops schedule stopped cleanly, its server record removed" test ! -e .mmops/prefect/server.json

echo
echo "README walkthrough: all $N steps passed (quick=$QUICK) in ${SECONDS}s"
