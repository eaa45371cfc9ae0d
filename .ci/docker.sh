#!/usr/bin/env bash
# CI: a working Docker engine and the project's image, on a fresh Debian machine.
#   1. Debian's docker.io (+ debootstrap) when missing; dockerd started when not answering
#   2. the stand-in base image (.ci/base-image.sh; cached across runs on this machine)
#   3. make image BASE_IMAGE=<stand-in>   -> resnet-job:<version> and resnet-job:latest
# Idempotent: a second run reuses the engine, the cached base and Docker's layer cache.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[docker.sh] $*" >&2; }

if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
    log "installing docker.io and debootstrap"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        docker.io debootstrap >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
    log "starting dockerd (log: /var/log/dockerd.log)"
    nohup dockerd >/var/log/dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || {
        tail -20 /var/log/dockerd.log >&2
        log "dockerd did not answer within 60 s (its log above); CI cannot build or test the image."
        exit 1
    }
fi

# Captured first: a failing base-image.sh must stop here, not pass an empty name on.
base="$(bash .ci/base-image.sh)" || { log "building the stand-in base image failed (reason above)."; exit 1; }
base="$(tail -n 1 <<<"$base")"
log "building the project image on $base"
make image BASE_IMAGE="$base" || { log "docker build of the project's image failed (output above)."; exit 1; }
docker image inspect --format '{{.RepoTags}} {{.Size}} bytes' resnet-job:latest >&2
