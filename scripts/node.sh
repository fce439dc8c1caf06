# shellcheck shell=bash
# A supported Node.js first on PATH, for scripts/setup.sh, scripts/pulumi.sh and .ci/run (sourced
# from the checkout's root). The `node` on PATH is used when its major is at least the one
# package.json's `engines.node` asks for (">=N"). Otherwise the Node.js that .nvmrc pins is: setup
# installs it from the npm registry's node-linux-<arch> package (the official build: bin/node, no
# npm) into the toolchain cache, one folder per version. npm and npx are scripts that run on the
# `node` found on PATH, so they and everything they start (vitest, tsc, biome, the Pulumi language
# host) run on the chosen one too.

NODE_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/talos-cluster"

# The least Node.js major package.json's engines accept.
node_min_major() {
  local min
  min=$(sed -n 's/^[[:space:]]*"node":[[:space:]]*">=[[:space:]]*\([0-9][0-9]*\).*/\1/p' package.json | head -n 1)
  [ -n "$min" ] || {
    echo 'package.json: engines.node must read ">=N" (N: the least Node.js major the project runs on)' >&2
    return 1
  }
  echo "$min"
}

# The exact Node.js version .nvmrc pins.
node_pinned() {
  local v
  v=$(tr -d '[:space:]' <.nvmrc)
  v=${v#v}
  [[ $v =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || {
    echo ".nvmrc: \"$v\" is not an exact Node.js version (write one such as 24.11.1)" >&2
    return 1
  }
  echo "$v"
}

# The npm registry's package of the official Node.js build for this machine.
node_package() {
  local arch
  [ "$(uname -s)" = Linux ] || {
    echo "the npm registry serves Node.js builds for Linux only here: install Node.js $1 or newer yourself (e.g. \`nvm install\`, which reads .nvmrc)" >&2
    return 1
  }
  case "$(uname -m)" in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *)
      echo "no Node.js package for a $(uname -m) machine: install Node.js $1 or newer yourself" >&2
      return 1
      ;;
  esac
  echo "node-linux-$arch"
}

# use_supported_node install|installed: puts a supported node first on PATH and sets NODE_BIN_DIR
# to the installed Node.js's bin folder, or to "" when PATH's own node is used. `install` installs
# the pinned one when it is needed and not in the cache yet; `installed` says to run setup instead.
use_supported_node() {
  local min pinned have dir package tgz got
  min=$(node_min_major) && pinned=$(node_pinned) || return 1
  have=$(node --version 2>/dev/null || true)
  have=${have#v}
  NODE_BIN_DIR=""
  # A node on PATH that is one this installed (node_modules/.bin/node under `npm run`, or a PATH
  # that .ci/run extended) does not count: the pinned one is used, installed if .nvmrc moved on.
  case "$(readlink -f "$(command -v node 2>/dev/null || echo /nonexistent)")" in
    "$NODE_CACHE"/node-v*) ;;
    *) if [[ $have =~ ^([0-9]+)\. ]] && [ "${BASH_REMATCH[1]}" -ge "$min" ]; then return 0; fi ;;
  esac
  dir="$NODE_CACHE/node-v$pinned"
  if [ ! -x "$dir/bin/node" ]; then
    if [ "$1" != install ]; then
      echo "Node.js ${have:+v$have }on PATH is older than $min and Node.js v$pinned (.nvmrc) is not installed: run \`npm run setup\`, which installs it" >&2
      return 1
    fi
    package=$(node_package "$min") || return 1
    command -v npm >/dev/null 2>&1 || {
      echo "npm is needed to install Node.js v$pinned: install Node.js $min or newer (with npm) yourself" >&2
      return 1
    }
    echo "Node.js ${have:+v$have on PATH }is older than $min: installing $package@$pinned (.nvmrc) into $dir"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    # npm pack checks the tarball against the registry's integrity hash.
    (cd "$dir.tmp" && npm pack --loglevel=error "$package@$pinned" >/dev/null) || {
      rm -rf "$dir.tmp"
      echo "npm pack $package@$pinned failed (above): is $pinned (.nvmrc) a Node.js release the registry serves? (npm view $package versions)" >&2
      return 1
    }
    tgz=$(find "$dir.tmp" -maxdepth 1 -name '*.tgz' | head -n 1)
    tar -xzf "$tgz" -C "$dir.tmp"
    got=$("$dir.tmp/package/bin/node" --version 2>&1 || true)
    [ "$got" = "v$pinned" ] || {
      rm -rf "$dir.tmp"
      echo "$package@$pinned installed, but its node reports \"$got\", not v$pinned" >&2
      return 1
    }
    rm -rf "$dir" && mv "$dir.tmp/package" "$dir" && rm -rf "$dir.tmp"
  fi
  NODE_BIN_DIR="$dir/bin"
  export PATH="$NODE_BIN_DIR:$PATH"
  hash -r
}
