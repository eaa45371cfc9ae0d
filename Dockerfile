# resnet-job: the training job (entry point) and the search driver / dashboard in one image.
#
#   make image                          # resnet-job:<version> and resnet-job:latest
#   docker run --rm --gpus all -v "$PWD/output:/output" resnet-job
#
# BASE_IMAGE must provide python (3.11) with torch and torchvision: by default the official
# PyTorch CUDA runtime image; CI passes a local stand-in built by .ci/base-image.sh.
ARG BASE_IMAGE=pytorch/pytorch:2.8.0-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

# Seen by pip during the build only (ARGs are not kept in the image's environment).
ARG PIP_ROOT_USER_ACTION=ignore

# A non-root user (numeric, so Kubernetes can check runAsNonRoot) whose primary group is 0:
# /data and /output are writable by it and by any uid in group 0, as OpenShift runs images.
RUN useradd --uid 10001 --gid 0 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin resnet \
    && mkdir -p /data /output \
    && chown 10001:0 /data /output \
    && chmod 2775 /data /output

# A C++ compiler for COMPILE=1: torch.compile's inductor builds its CPU kernels with it, and
# triton the launchers of its GPU kernels. The base image's Python brings the headers both
# include. The distribution's current g++ (the base decides which distribution: unpinned).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends g++ \
    && rm -rf /var/lib/apt/lists/*

# The remaining dependencies, pinned; torch/torchvision come from the base image and are
# never reinstalled.
COPY image-requirements.txt /tmp/image-requirements.txt
RUN python -m pip install --no-cache-dir -r /tmp/image-requirements.txt \
    && rm /tmp/image-requirements.txt

# Both packages (job, search), installed without touching the dependencies above. k8s/job.yaml
# is the package search.manifests (pyproject.toml): the kubernetes launcher's trial template.
COPY pyproject.toml README.md /src/
COPY job /src/job
COPY search /src/search
COPY k8s/__init__.py k8s/job.yaml /src/k8s/
RUN python -m pip install --no-cache-dir --no-deps /src \
    && rm -rf /src \
    && python -c "import job, search, torch, torchvision" \
    && python -c "from importlib.resources import files; files('search.manifests').joinpath('job.yaml').read_text()" \
    && python -c "import torch; torch.compile(lambda x: x.sin() + 1)(torch.ones(2))" \
    && rm -rf /tmp/torchinductor_*

# Everything a run writes goes to /data, /output or /tmp, so a read-only root works:
# no bytecode writes, HOME and matplotlib's cache in /tmp.
ENV DATA_DIR=/data \
    OUTPUT_DIR=/output \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

VOLUME ["/data", "/output"]
WORKDIR /tmp
USER 10001:0

# Last, so a new commit does not invalidate the dependency layers above.
ARG BASE_IMAGE
ARG VERSION=0.0.0
ARG GIT_REVISION=unknown
LABEL org.opencontainers.image.title="resnet-job" \
      org.opencontainers.image.description="CIFAR-10 ResNet9 training job (python -m job) and its Optuna search (python -m search)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_REVISION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# Exec form: the job is PID 1 and receives SIGTERM (docker stop, pod eviction) itself.
ENTRYPOINT ["python", "-m", "job"]
