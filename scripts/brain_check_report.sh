#!/usr/bin/env bash
# bash scripts/brain_check_report.sh RUN_DIR/report.html [OUT.png]
#
# Opens a `breachlab brain analyze` report in headless Chromium (Debian: apt-get install -y
# chromium), writes a full-page screenshot and checks that it rendered: the PNG exists, is
# large, and is not blank.  Not part of the default test suite (needs a browser).
set -euo pipefail
report=$(realpath "${1:?usage: brain_check_report.sh REPORT.html [OUT.png]}")
out=$(realpath -m "${2:-${report%.html}.png}")
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "error: no chromium; apt-get install -y chromium" >&2; exit 2; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
  --disable-sync --no-first-run --user-data-dir="$profile" --hide-scrollbars \
  --screenshot="$out" --window-size=1200,3000 "file://$report" >/dev/null 2>&1
python3 - "$out" <<'PY'
import sys
from PIL import Image, ImageStat
img = Image.open(sys.argv[1]).convert("RGB")
stat = ImageStat.Stat(img)
spread = max(stat.stddev)
print(f"{sys.argv[1]}: {img.size[0]}x{img.size[1]}, pixel SD {spread:.1f}")
if img.size[0] < 1000 or spread < 10:
    sys.exit("error: the report screenshot looks blank")
PY
