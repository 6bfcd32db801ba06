#!/usr/bin/env bash
# Files per minute of emocam batch on 16 copies of a clip: one worker, two workers, and Ray on this machine.
#   usage: scripts/batch_bench.sh [CLIP] [COPIES]   (defaults: ../shared/data/videos/WolfgangLanger_Pexels.mp4 16;
#   BIN=.venv/bin, where emocam and ray are)
# Prints a markdown table; every run starts from an empty --out-dir, with the shipped model.
set -euo pipefail
clip=$(realpath "${1:-../shared/data/videos/WolfgangLanger_Pexels.mp4}")
copies=${2:-16}
bin=$(cd "${BIN:-.venv/bin}" && pwd)  # emocam and ray from the project's environment
work=$(mktemp -d)
ray_pid=
cleanup() {
    if [ -n "$ray_pid" ]; then kill -TERM "$ray_pid" 2>/dev/null || true; wait "$ray_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/clips"
for i in $(seq -w 1 "$copies"); do cp "$clip" "$work/clips/clip$i.mp4"; done

# Seconds one batch takes over the copies, from start to index written (model loading included).
run() {
    local out=$work/out$RANDOM start end
    start=$(date +%s.%N)
    "$bin/emocam" batch "$work/clips" --out-dir "$out" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    end=$(date +%s.%N)
    [ "$(grep -c ',done,' "$out/index.csv")" -eq "$copies" ] || { echo "not every copy is done" >&2; exit 1; }
    echo "$start $end" | awk '{printf "%.1f", $2 - $1}'
}

row() {  # label, seconds
    awk -v n="$copies" -v s="$2" -v l="$1" 'BEGIN {printf "| %s | %.1f | %.1f |\n", l, s, 60 * n / s}'
}

echo "$copies copies of $(basename "$clip"), $(nproc) CPUs"
echo
echo "| run | seconds | files per minute |"
echo "|---|---|---|"
one=$(run --workers 1)
row "--workers 1" "$one"
two=$(run --workers 2)
row "--workers 2" "$two"
# A one-machine Ray cluster with as many CPUs as the second run had workers.
(cd "$work" && exec "$bin/ray" start --head --block --num-cpus=2 --include-dashboard=false --disable-usage-stats \
    >"$work/ray.log" 2>&1) &
ray_pid=$!
for _ in $(seq 120); do grep -q "Ray runtime started" "$work/ray.log" && break; sleep 0.5; done
on_ray=$(run --ray auto)
row "--ray auto (2 CPUs)" "$on_ray"
