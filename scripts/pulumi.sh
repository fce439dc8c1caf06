#!/usr/bin/env bash
# `npm run pulumi -- <args>`: the Pulumi CLI that `npm run setup` built, and only that one. Before
# setup, `npx pulumi` would offer to fetch the npm launcher of an older CLI at run time; this says
# what to do instead. A local backend's folder is made first: `pulumi login file://<dir>` refuses a
# folder that does not exist, and the command after it would then ask for a Pulumi Cloud token.
set -euo pipefail
cd "$(dirname "$0")/.."
cli=node_modules/.bin/pulumi
if [ ! -x "$cli" ]; then
  echo "The Pulumi CLI is not set up in this checkout yet: run \`npm run setup\` first (it builds the pinned CLI and plugins)." >&2
  exit 1
fi
# The language host runs the program on the `node` on PATH: the supported one setup chose.
# shellcheck source=scripts/node.sh
source scripts/node.sh
use_supported_node installed
backend=""
if [ "${1:-}" = login ] && [[ "${2:-}" == file://* ]]; then backend=$2; fi
if [ -z "$backend" ] && [[ "${PULUMI_BACKEND_URL:-}" == file://* ]]; then backend=$PULUMI_BACKEND_URL; fi
if [ -n "$backend" ]; then
  dir=${backend#file://}
  case "$dir" in "~"*) dir="$HOME${dir#\~}" ;; esac
  mkdir -p "$dir"
fi
exec "$cli" "$@"
