#!/usr/bin/env bash
# Install a headless browser for the report test (tests/test_report.py opens `align report`'s page in Chromium):
# Debian's `chromium` package through apt-get, when no Chromium is on the machine. `./launch.sh test` runs this.
#
#   scripts/install_chromium.sh        exit 0: Chromium is there (prints its path); exit 1: it could not be installed
#
# Only the system package is used: browser downloads by test tools (`playwright install`) do not work on machines
# that reach package registries only. Needs root (or passwordless sudo) and apt-get; elsewhere it says why and
# exits 1, and the browser test is skipped with that reason (unless ALIGN_EXPECT_CHROMIUM=1, which makes it fail).
set -euo pipefail

say() { printf '\033[1m[chromium]\033[0m %s\n' "$*" >&2; }

find_chromium() {
  local c
  for c in "${ALIGN_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
    if [ -n "$c" ] && [ -x "$c" ]; then echo "$c"; return 0; fi
  done
  command -v chromium chromium-browser google-chrome 2>/dev/null | head -1 | grep . && return 0
  return 1
}

if path="$(find_chromium)"; then
  echo "$path"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  say "no Chromium and no apt-get here: install Chromium yourself (or set ALIGN_CHROMIUM to its path)"
  exit 1
fi
SUDO=()
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    say "no Chromium, and installing Debian's chromium package needs root: run 'apt-get install chromium' as root"
    exit 1
  fi
fi
say "installing Debian's chromium package (about a minute)"
if ! { "${SUDO[@]}" apt-get update -q >/dev/null \
       && DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q chromium >/dev/null; }; then
  say "apt-get could not install chromium (see the messages above)"
  exit 1
fi
if path="$(find_chromium)"; then
  say "installed: $("$path" --version 2>/dev/null || echo "$path")"
  echo "$path"
  exit 0
fi
say "the chromium package installed but no chromium executable was found"
exit 1
