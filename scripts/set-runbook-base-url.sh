#!/usr/bin/env bash
# Points every alert's runbook_url at BASE_URL#<alert-anchor>, where BASE_URL is the address of the published
# docs/operations.md (a wiki page, the repository's file view, an internal docs site). Rewrites the alert rules
# and the promtool tests that expect them, so `promtool test rules` keeps passing.
#
#   scripts/set-runbook-base-url.sh https://github.com/acme/floodgate/blob/main/docs/operations.md [DIR]
#
# DIR defaults to prometheus/ next to this script; pass a copy of it to render rules for one deployment
# without touching the checkout.
set -euo pipefail

usage() { echo "usage: $0 BASE_URL [PROMETHEUS_DIR]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
base=$1
dir=${2:-"$(cd "$(dirname "$0")/.." && pwd)/prometheus"}

# Characters that would end the YAML scalar or the sed expression are refused rather than escaped.
if ! [[ $base =~ ^https?://[^[:space:]\#\'\"\&\\|]+$ ]]; then
  echo "$0: BASE_URL must be an absolute http(s) URL without a fragment, quotes, spaces, '&', '|' or '\\': $base" >&2
  exit 2
fi

shopt -s nullglob
files=("$dir"/rules/*.yml "$dir"/tests/*.yml)
[ ${#files[@]} -gt 0 ] || { echo "$0: no rule or test files under $dir" >&2; exit 1; }

# runbook_url: <anything>#<anchor>  →  runbook_url: BASE_URL#<anchor>
sed -E -i "s|^([[:space:]]*runbook_url:[[:space:]]*)['\"]?[^'\"#[:space:]]*#([a-z0-9-]+)['\"]?[[:space:]]*$|\1$base#\2|" "${files[@]}"
echo "runbook_url base set to $base in ${#files[@]} files under $dir"
