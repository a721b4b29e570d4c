#!/usr/bin/env bash
# Vendor the browser libraries the pages use, from the npm registry, into static/vendor/.
# Run by hand when upgrading; the resulting dist files are committed (nothing is fetched at run time).
set -euo pipefail
cd "$(dirname "$0")/.."
CHART_VERSION="${CHART_VERSION:-4.6.1}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "chart.js@${CHART_VERSION}" >/dev/null && tar xzf chart.js-*.tgz)
mkdir -p static/vendor
cp "$work/package/dist/chart.umd.min.js" static/vendor/chart.umd.min.js
cp "$work/package/LICENSE.md" static/vendor/chart.js.LICENSE.md
echo "chart.js ${CHART_VERSION} -> static/vendor/chart.umd.min.js"
