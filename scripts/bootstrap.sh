#!/usr/bin/env bash
# Set up everything `make demo` and `make test` need on a fresh machine:
# Debian packages (espeak-ng for the demo's speech, PostgreSQL for server tests), a .venv,
# the right torch build, and the project in editable mode. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
# espeak-ng: the demo's speech; postgresql: the scaled-out MLflow/Prefect tests (tests/infra).
APT_PACKAGES=(espeak-ng postgresql)

need_apt=()
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo ">> installing Debian packages: ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "error: missing system packages: ${need_apt[*]}" >&2
    echo "  install them first, e.g.: sudo apt-get install -y ${APT_PACKAGES[*]}" >&2
    exit 1
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo ">> creating $VENV"
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"

# Python packages come from requirements.lock (scripts/lock.py, `make lock`): exact versions, each
# checked against its sha256, nothing resolved at install time. It holds the CPU build of torch.
# GPU users: set MMOPS_TORCH to the pip spec of their CUDA build, e.g.
#   MMOPS_TORCH="torch==2.9.1 torchaudio==2.9.1 --index-url <your CUDA wheel index>" make setup
# or install a CUDA torch into .venv themselves first; an installed CUDA torch is kept. Either way
# torch, torchaudio and torchvision are then left out of the lock (not hash-checked): pip installs
# the torchaudio/torchvision that match that torch from the index.
LOCK=requirements.lock
own_torch=
if [ -n "${MMOPS_TORCH:-}" ]; then
  own_torch=1
  if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    echo ">> installing torch from MMOPS_TORCH: $MMOPS_TORCH"
    # shellcheck disable=SC2086
    "$PY" -m pip install -q $MMOPS_TORCH
  fi
elif [ "$("$PY" -c 'import torch; print(torch.version.cuda is not None)' 2>/dev/null)" = "True" ]; then
  own_torch=1
fi
if [ -n "$own_torch" ]; then
  grep -vE '^(torch|torchaudio|torchvision)==' "$LOCK" >"$VENV/requirements-no-torch.lock"
  LOCK="$VENV/requirements-no-torch.lock"
fi

echo ">> installing the locked dependencies ($LOCK)"
"$PY" -m pip install -q --require-hashes --no-deps -r "$LOCK"
echo ">> installing mmops (editable)"
if [ -n "$own_torch" ]; then
  # The installed torch build is a constraint: pip picks the torchaudio/torchvision that match it
  # and never swaps the build; everything else is already satisfied by the lock.
  "$PY" -c 'import torch; print(f"torch=={torch.__version__}")' >"$VENV/torch-constraint.txt"
  "$PY" -m pip install -q --no-build-isolation -c "$VENV/torch-constraint.txt" -e .
else
  "$PY" -m pip install -q --no-build-isolation --no-deps -e .
fi

# Registry wheels of torchaudio are CUDA-linked; beside a CPU torch their compiled extension
# fails to load. Without it torchaudio falls back to pure PyTorch code (MelSpectrogram,
# resample), which is all mmops uses. Only done when torch is a CPU build.
if ! "$PY" -c "import torchaudio" >/dev/null 2>&1; then
  if [ "$("$PY" -c 'import torch; print(torch.version.cuda is None)')" = "True" ]; then
    echo ">> CPU torch: removing torchaudio's CUDA-linked extension (pure PyTorch fallback)"
    rm -f "$("$PY" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("torchaudio").origin))')"/lib/*.so
  fi
  "$PY" -c "import torchaudio" || { echo "error: torchaudio does not import; see README (GPU)" >&2; exit 1; }
fi

# Registry wheels of torchvision are CUDA-linked as well: beside a CPU torch their ops library
# (`_C.so`: nms, roi_align, ... for detection) cannot load, and torchvision >= 0.18 then fails at
# import because it registers fake kernels for `torchvision::nms`/`qnms` unconditionally. As
# transformers imports torchvision whenever it is installed, that would break every model load.
# Only where torch is a CPU build: remove the CUDA-linked extensions and declare those two op
# schemas (no kernels) when `_C` is absent, so torchvision imports; models and transforms are pure
# PyTorch (mmops uses ResNet-18). Lost: the C++ ops (nms, roi_align, deform_conv) and torchvision.io
# image decoding (mmops decodes with PIL).
if ! "$PY" -c "import torchvision" >/dev/null 2>&1; then
  if [ "$("$PY" -c 'import torch; print(torch.version.cuda is None)')" = "True" ]; then
    echo ">> CPU torch: removing torchvision's CUDA-linked extensions (pure PyTorch models)"
    "$PY" - <<'PYEOF'
import importlib.util
from pathlib import Path

root = Path(importlib.util.find_spec("torchvision").origin).parent
for name in ("_C.so", "image.so"):
    (root / name).unlink(missing_ok=True)
marker = "# mmops bootstrap: CPU torch"
ext = root / "extension.py"
if marker not in ext.read_text():
    with ext.open("a") as f:
        f.write(f"""

{marker} beside a CUDA-linked wheel (scripts/bootstrap.sh): no `_C`, so declare
# the op schemas that torchvision._meta_registrations registers fakes for; they have no kernels.
if not _has_ops():
    _mmops_cpu_fragment = torch.library.Library("torchvision", "FRAGMENT")
    _mmops_cpu_fragment.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _mmops_cpu_fragment.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
""")
PYEOF
  fi
  "$PY" -c "import torchvision" || { echo "error: torchvision does not import; see README (GPU)" >&2; exit 1; }
fi

"$PY" -m pip check
# Every requirement of pyproject.toml (the test extra included) is in the lock, at its version.
"$PY" scripts/lock.py --check
touch "$VENV/.installed"
echo ">> environment ready in $VENV"
