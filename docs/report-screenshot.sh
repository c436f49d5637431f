#!/usr/bin/env bash
# Checks a report.html as a reader sees it: renders it in headless Chromium (Debian package `chromium`) to a
# full-page PNG screenshot, and extracts the PNG figures embedded in it (figure-1.png, figure-2.png, ...).
# usage: docs/report-screenshot.sh REPORT.html OUT_DIR [WIDTH]
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: $0 REPORT.html OUT_DIR [WIDTH]" >&2; exit 2; fi
html="$(realpath "$1")"; out="$2"; width="${3:-1280}"
browser="$(command -v chromium || command -v chromium-browser || true)"
if [ -z "$browser" ]; then echo "$0: chromium not found (Debian: apt-get install chromium)" >&2; exit 1; fi
mkdir -p "$out"
# Page height: a generous bound, cropped by --hide-scrollbars; each figure is at most ~700 px tall.
figures=$(grep -o 'data:image/png;base64,' "$html" | wc -l)
height=$((600 + 760 * figures))
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
  --window-size="$width,$height" --screenshot="$out/report-screenshot.png" "file://$html" 2>/dev/null
i=0
grep -o 'data:image/png;base64,[A-Za-z0-9+/=]*' "$html" | while read -r uri; do
  i=$((i + 1)); printf '%s' "${uri#data:image/png;base64,}" | base64 -d > "$out/figure-$i.png"
done
echo "$out/report-screenshot.png ($width x $height), $figures figure(s) extracted"
