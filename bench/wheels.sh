#!/usr/bin/env bash
# Download Optuna and its runtime dependencies (bench/wheels.txt) as wheels into DIR, for the
# GPU campaign (`python -m bench --gpu`) on an offline machine whose Python (3.11–3.13) is not
# known here.
# Pure-python wheels once; binary ones as manylinux2014 x86_64 wheels for each of cp311..cp313.
#
#   bash bench/wheels.sh .whl
#
# Exit codes: 0 done, 2 usage, 3 a download failed (network or index).
set -euo pipefail

usage() { echo "usage: bash bench/wheels.sh DIR" >&2; exit 2; }
[[ $# -eq 1 && $1 != -* ]] || usage
dir=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
list="$here/wheels.txt"
pip=(python3 -m pip)
if [[ -x "$here/../.venv/bin/python" ]]; then pip=("$here/../.venv/bin/python" -m pip); fi
versions=(3.11 3.12 3.13)

pure=() binary=()
while read -r name kind _; do
  [[ -z $name || $name == \#* ]] && continue
  case $kind in
    pure) pure+=("$name") ;;
    binary) binary+=("$name") ;;
    *) echo "wheels.sh: $list: '$name' has kind '$kind'; use pure or binary." >&2; exit 2 ;;
  esac
done <"$list"

mkdir -p "$dir"
fetch() {
  # pip download with the given target tags; --no-deps: wheels.txt is the complete set.
  if ! "${pip[@]}" download --quiet --no-deps --only-binary=:all: --dest "$dir" "$@"; then
    echo "wheels.sh: could not download ${*: -1} (and the rest of that call); is the package index reachable?" >&2
    exit 3
  fi
}
# Pure wheels resolved for the oldest Python, so the versions chosen work on all of them.
fetch --platform any --python-version 3.11 --implementation py "${pure[@]}"
for v in "${versions[@]}"; do
  abi="cp${v/./}"
  fetch --platform manylinux2014_x86_64 --python-version "$v" --implementation cp --abi "$abi" \
    "${binary[@]}"
done
echo "wheels.sh: $(ls "$dir"/*.whl | wc -l) wheels, $(du -sh "$dir" | cut -f1) in $dir" >&2
