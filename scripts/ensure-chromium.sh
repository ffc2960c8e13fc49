#!/usr/bin/env bash
# Make sure a headless-capable Chromium is installed for the browser tests (chromedp
# drives it). Installs Debian's `chromium` package with apt-get when none is found;
# does nothing when one is already on PATH. Used by `make test` and CI.
set -euo pipefail

for b in chromium chromium-browser google-chrome google-chrome-stable; do
  if command -v "$b" >/dev/null 2>&1; then exit 0; fi
done

echo "installing Debian's chromium for the browser tests..." >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "chromium is missing and this user cannot install it; run: apt-get install chromium" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "chromium did not install; run: apt-get install chromium" >&2; exit 1; }
