"""Peak resident memory of one ``emocam --video`` run, measured from outside (getrusage of the child process).

    python scripts/peak_memory.py VIDEO [emocam options ...]
    python scripts/peak_memory.py --make-8k /tmp/faces_8k.mp4          # a 36-frame 7680x4320 clip to measure with
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    if sys.argv[1] == "--make-8k":
        sys.path.insert(0, str(Path(__file__).parent))
        import stream_lag

        print(stream_lag.make_clip(Path(sys.argv[2]), 7680, 4320, 24, 1.5, 12))
        return
    command = [sys.executable, "-m", "emocam.cli", "--video", *sys.argv[1:], "--no-display"]
    result = subprocess.run(command, capture_output=True, text=True)
    print(f"exit code {result.returncode}; peak RSS {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
