"""How each detector setting reads what users point emocam at: the share of wild/val's photos with a face, the
faces found in multi_face.jpg (five people), and the faces found in no_face.mp4's frames (clouds, no person), each
through ``Recognizer`` with that range and score for photos and video alike. The ``auto`` reading's settings
(``emocam.reading.AUTO``) come from this table.

    python scripts/readings.py ../shared/data [short:0.7 both:0.5 ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from emocam import Recognizer

SETTINGS = ("short:0.7", "short:0.5", "full:0.5", "both:0.5", "both:0.6", "both:0.7")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the data folder (wild/, images/, videos/)")
    parser.add_argument("settings", nargs="*", default=SETTINGS, help="RANGE:SCORE pairs")
    args = parser.parse_args()
    photos = sorted((args.data / "wild" / "val").glob("*/*"))
    print(f"{'setting':>10} {'wild/val found':>15} {'multi_face faces':>17} {'no_face.mp4 faces':>18}")
    for setting in args.settings:
        detector, score = setting.split(":")
        with Recognizer(detector=detector, min_score=float(score)) as rec:
            found = sum(len(rec(path)) > 0 for path in photos) / len(photos)
            group = len(rec(args.data / "images" / "multi_face.jpg"))
            false = sum(len(faces) for _, faces in rec.stream(args.data / "videos" / "no_face.mp4"))
        print(f"{setting:>10} {found:>15.3f} {group:>17} {false:>18}", flush=True)


if __name__ == "__main__":
    main()
