#!/usr/bin/env bash
# Build the local stand-in for the Dockerfile's default base image (an official PyTorch CUDA
# runtime image), because no image registry is reachable here.
#
#   Debian bookworm (debootstrap; python3 is 3.11, matching the cp311 wheels)
#   + python3, pip, venv, python-is-python3 (so `python` is on PATH, as in the real image)
#   + python3-dev: Python.h, which the real image's Python has and torch.compile includes
#   + pip allowed to install system-wide (Debian's EXTERNALLY-MANAGED marker removed)
#   + torch 2.14.1 / torchvision 0.29.1 (CUDA build, with its nvidia-* wheels) from this
#     machine's wheel folders
#   + the host CA bundle, PIP_CERT set (package registries are reached through it)
#   -> `docker import` as $BASE_IMAGE_NAME.
#
# Cached twice: the image itself (skipped when `docker image inspect` finds it) and the
# debootstrapped rootfs before torch, as .ci/cache/bookworm-python-dev-rootfs.tar (git-ignored).
# Usage: bash .ci/base-image.sh        prints the image name on its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

# The version suffix changes whenever this recipe changes, so a stale cached image is not reused.
NAME="${BASE_IMAGE_NAME:-resnet-job-base:bookworm-torch2.14.1-v2}"
TORCH="torch==2.14.1"
TORCHVISION="torchvision==0.29.1"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
WHEEL_DIRS=(/opt/pypi-more/files /opt/pypi/files /opt/wheels)
CACHE="${RESNET_JOB_CI_CACHE:-.ci/cache}"
ROOTFS_TAR="$CACHE/bookworm-python-dev-rootfs.tar"  # renamed when --include changes

log() { echo "[base-image] $*" >&2; }

if docker image inspect "$NAME" >/dev/null 2>&1; then
    log "cached: $NAME"
    echo "$NAME"
    exit 0
fi

mkdir -p "$CACHE"
WORK="$(mktemp -d /var/tmp/resnet-job-base.XXXXXX)"
ROOT="$WORK/rootfs"
MOUNTS=()
cleanup() {
    local i
    for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[i]}" 2>/dev/null || true; done
    rm -rf --one-file-system "$WORK"
}
trap cleanup EXIT
bind() { # bind SRC DEST [ro]
    mkdir -p "$2"
    mount --bind "$1" "$2"
    MOUNTS+=("$2")
    if [[ "${3:-}" == ro ]]; then mount -o remount,bind,ro "$2"; fi
}

if [[ -s "$ROOTFS_TAR" ]]; then
    log "rootfs from cache: $ROOTFS_TAR"
    mkdir -p "$ROOT"
    tar -C "$ROOT" -xf "$ROOTFS_TAR"
else
    log "debootstrap bookworm from $MIRROR"
    debootstrap --variant=minbase \
        --include=python3,python3-dev,python3-pip,python3-venv,python-is-python3,ca-certificates \
        bookworm "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
        { tail -30 "$WORK/debootstrap.log" >&2; exit 1; }
    chroot "$ROOT" apt-get clean
    rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin
    tar -C "$ROOT" -cf "$ROOTFS_TAR.tmp" . && mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
fi

# Behave like the official image: pip may install into the system Python.
rm -f "$ROOT"/usr/lib/python3*/EXTERNALLY-MANAGED
# The host CA bundle (registries are reached through it) and resolver settings.
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"

bind /proc "$ROOT/proc"
bind /dev "$ROOT/dev"
links=()
for i in "${!WHEEL_DIRS[@]}"; do
    [[ -d "${WHEEL_DIRS[i]}" ]] || continue
    bind "${WHEEL_DIRS[i]}" "$ROOT/wheels/$i" ro
    links+=(--find-links "/wheels/$i")
done

export PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1
pip_in_root() { chroot "$ROOT" env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/root \
    PIP_CERT="$PIP_CERT" PIP_DISABLE_PIP_VERSION_CHECK=1 python -m pip "$@"; }
# cuda-bindings (a small torch dependency) is not on this disk: take it from PyPI first, then
# everything else strictly from the local wheel folders, so no gigabyte wheel is downloaded.
log "pip: cuda-bindings (PyPI), then $TORCH $TORCHVISION (local wheels)"
pip_in_root install -q --no-cache-dir --root-user-action=ignore "${links[@]}" "cuda-bindings>=13.0.3,<14"
pip_in_root install -q --no-cache-dir --root-user-action=ignore --no-index "${links[@]}" "$TORCH" "$TORCHVISION"
chroot "$ROOT" python -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" >&2

for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[i]}"; done
MOUNTS=()
rm -rf "$ROOT/wheels" "$ROOT/root/.cache"
: >"$ROOT/etc/resolv.conf"

log "docker import -> $NAME"
tar -C "$ROOT" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
    --change 'ENV PIP_DISABLE_PIP_VERSION_CHECK=1' \
    --change 'WORKDIR /' \
    --change 'CMD ["python"]' \
    --message "resnet-job stand-in base: debian bookworm + $TORCH $TORCHVISION" \
    - "$NAME" >/dev/null
echo "$NAME"
