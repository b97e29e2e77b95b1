# One image for every mmops process in infra/: the MLflow server, the Prefect server and its
# workers, flow runs, the training Job and the model server. Each sets its own command
# (infra/commands.yaml).
#
# Build from the repository root:
#   CPU (default)  docker build -f infra/docker/mmops.Dockerfile -t mmops:local .
#   CUDA           docker build -f infra/docker/mmops.Dockerfile -t mmops:cuda \
#                    --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
# (docker compose -f infra/compose.yaml build does the same with the values in infra/.env.)
#
# The base image is pinned by digest (a tag can be re-pointed; a digest cannot). PYTHON_DIGEST is
# "@sha256:<digest>" of python:${PYTHON_VERSION}-slim-bookworm; empty builds the moving tag.
# TODO(pin): not filled in yet (the registry was unreachable where this was written). Look it up
# and set it here, in infra/.env or with --build-arg, and refresh it with each base-image update:
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{json .Manifest.Digest}}'
ARG PYTHON_VERSION=3.11
ARG PYTHON_DIGEST=
FROM python:${PYTHON_VERSION}-slim-bookworm${PYTHON_DIGEST}

# torch first, from the index that matches the hardware; `pip install .` then keeps it
# (the project's torch range admits it) instead of pulling PyPI's default CUDA build.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# What the scaled-out services need beside the library: S3 for MLflow artifacts and for DVC,
# and Prefect's Kubernetes worker. (The PostgreSQL driver comes with mmops itself.)
# mlflow[auth]: Flask-WTF for the MLflow basic-auth app (`mlflow server --app-name basic-auth`).
ARG SERVER_PIP="boto3>=1.34,<2 dvc-s3>=3.2,<4 prefect-kubernetes>=0.8,<0.9 mlflow[auth]>=3.17,<4"

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false

# espeak-ng: the built-in demo dataset's speech; git: DVC and MLflow's lineage tags.
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng git \
 && rm -rf /var/lib/apt/lists/*

RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

WORKDIR /opt/mmops
# Every dependency but the torch family (from TORCH_INDEX_URL above) from the hash-checked lock
# (sha256 per file; CPython 3.11 on linux/amd64, like this base image on x86_64 hosts).
COPY requirements.lock ./
RUN grep -vE '^(torch|torchaudio|torchvision)==' requirements.lock > /tmp/deps.lock \
 && pip install --require-hashes --no-deps -r /tmp/deps.lock && rm /tmp/deps.lock
COPY pyproject.toml README.md params.yaml dvc.yaml ./
COPY mmops ./mmops
COPY flows ./flows
COPY infra ./infra
RUN pip install . ${SERVER_PIP}

# Registry wheels of torchaudio are CUDA-linked; beside a CPU torch their compiled extension
# does not load, and torchaudio falls back to pure PyTorch (all mmops uses). Same step as
# scripts/bootstrap.sh, and only for a CPU torch.
RUN if ! python -c "import torchaudio" 2>/dev/null \
      && python -c "import sys, torch; sys.exit(torch.version.cuda is not None)"; then \
      rm -f "$(python -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("torchaudio").origin))')"/lib/*.so; \
    fi \
 && python -c "import torchaudio, mmops.cli, flows.retrain, psycopg2, boto3, flask_wtf"

# Stages write relative paths (data/, artifacts/, reports/, .mmops/): they land in /workspace,
# a volume in compose and a PersistentVolumeClaim in Kubernetes.
# /var/lib/mlflow-auth: the MLflow user store's volume (a new volume takes this owner).
RUN useradd --create-home --uid 10001 mmops && mkdir -p /workspace /var/lib/mlflow-auth \
 && chown mmops /workspace /var/lib/mlflow-auth
USER 10001
WORKDIR /workspace

EXPOSE 5000 4200 8080
CMD ["mmops", "--help"]
