#!/usr/bin/env bash
# Fetch the vendored front-end files again (see src/docker_manager/static/vendor/README.md).
# Needs npm and the npm registry; the service itself never downloads anything at run time.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENDOR="$ROOT/src/docker_manager/static/vendor"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fetch() {  # package version integrity folder files...
  local package="$1" version="$2" integrity="$3" folder="$4"
  shift 4
  (cd "$work" && npm pack --silent "$package@$version" >/dev/null)
  local tarball="$work/${package}-${version}.tgz"
  local actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
  if [ "$actual" != "$integrity" ]; then
    echo "integrity mismatch for $package@$version" >&2
    exit 1
  fi
  rm -rf "${work:?}/package" && tar xzf "$tarball" -C "$work"
  mkdir -p "$VENDOR/$folder"
  for file in "$@"; do cp "$work/package/$file" "$VENDOR/$folder/"; done
}

fetch swagger-ui-dist 5.35.0 \
  "sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==" \
  swagger-ui-5.35.0 \
  swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt
# The dashboard (/ui): htmx and its SSE extension for the live parts, uPlot for the charts.
fetch htmx.org 2.0.11 \
  "sha512-Thx/WtpeOQqSrqBCw/A1cwGJGg4UrVa3+sW0GmrM3p4gJgO89ecH4qtbnyzDDWFvBTqjnIMCgELTNt636dtamA==" \
  htmx-2.0.11 \
  dist/htmx.min.js LICENSE
fetch htmx-ext-sse 2.2.4 \
  "sha512-LJmxVhykyflBWgh5PvbRidcyuqMHlgfajmmzumvKctv9puvsufeH6OaejSMZTNTnEI8O2wXXn4ZZtBdpEMqmEQ==" \
  htmx-ext-sse-2.2.4 \
  dist/sse.min.js LICENSE
fetch uplot 1.6.32 \
  "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==" \
  uplot-1.6.32 \
  dist/uPlot.iife.min.js dist/uPlot.min.css LICENSE
echo "vendored files are in $VENDOR"
