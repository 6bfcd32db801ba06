#!/usr/bin/env bash
# End-to-end fps of this checkout against an older commit, measured in one run on one machine, rounds alternating:
# on the one-face benchmark clip, and on a clip of several faces (a group photo panned slowly). This checkout runs
# with its defaults, as a user runs it; the old one, whose short-range default finds none of the group's faces,
# with --detector full on the group clip.
#   usage: scripts/fps_compare.sh OLD_REV [ROUNDS] [DATA_DIR]    e.g. scripts/fps_compare.sh a0c8cb7 3
# OLD_REV must predate the emocam package name (its code is run from its own checkout as `python -m realtime.cli`).
set -euo pipefail
old_rev=$1
rounds=${2:-3}
data=$(cd "${3:-../shared/data}" && pwd)
py=$(command -v python)
work=$(mktemp -d)
trap 'git worktree remove --force "$work/old" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --quiet --detach "$work/old" "$old_rev"

"$py" - "$data/images/multi_face.jpg" "$work/group.mp4" <<'EOF'
import sys, cv2, numpy as np
image = cv2.imread(sys.argv[1])
h, w = image.shape[:2]
out = cv2.VideoWriter(sys.argv[2], cv2.VideoWriter_fourcc(*"mp4v"), 30, (960, 540))
for i in range(300):  # ten seconds: a slow zoom and pan over the photo, so faces move as in footage
    s = 1.0 + 0.15 * i / 299
    cw, ch = w / s, h / s
    x0, y0 = (w - cw) * i / 299, (h - ch) * 0.5
    m = np.array([[960 / cw, 0, -x0 * 960 / cw], [0, 540 / ch, -y0 * 540 / ch]])
    out.write(cv2.warpAffine(image, m, (960, 540), flags=cv2.INTER_LINEAR))
out.release()
EOF

bench() {  # where (old|new), clip, extra options -> fps
  local json=$work/b.json
  rm -f "$json"  # a failed run leaves no figure, rather than the previous run's
  if [ "$1" = old ]; then
    (cd "$work/old" && "$py" -m realtime.cli bench "$2" --json "$json" "${@:3}" >/dev/null 2>"$work/err" || cat "$work/err" >&2)
  else
    "$py" -m emocam.cli bench "$2" --json "$json" "${@:3}" >/dev/null 2>"$work/err" || cat "$work/err" >&2
  fi
  "$py" -c "import json, sys; print(json.load(open(sys.argv[1]))['fps'])" "$json"
}

echo "clip round old_fps new_fps new/old"
for clip in one_face group; do
  if [ $clip = one_face ]; then video=$data/videos/WolfgangLanger_Pexels.mp4; opts=(); else video=$work/group.mp4; opts=(--detector full); fi
  for r in $(seq "$rounds"); do
    o=$(bench old "$video" "${opts[@]}")
    n=$(bench new "$video")
    echo "$clip $r $o $n $("$py" -c "print(round($n / $o, 3))")"
  done
done
