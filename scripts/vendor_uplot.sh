#!/usr/bin/env bash
# Refreshes the vendored uPlot (the views' chart library) from the npm registry:
#   scripts/vendor_uplot.sh [VERSION]     (default: the version in static/uplot/VERSION)
# Needs npm here, once; nothing of Node.js is needed to install or run otel-benchlab.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=otel_benchlab/views/static/uplot
VERSION=${1:-$(cat "$DEST/VERSION")}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "uplot@$VERSION" >/dev/null && tar xzf "uplot-$VERSION.tgz")
mkdir -p "$DEST"
cp "$TMP/package/dist/uPlot.iife.min.js" "$TMP/package/dist/uPlot.min.css" "$DEST/"
cp "$TMP/package/LICENSE" "$DEST/LICENSE"
echo "$VERSION" > "$DEST/VERSION"
echo "uPlot $VERSION vendored in $DEST"
