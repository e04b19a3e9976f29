#!/usr/bin/env bash
# Installs Debian's Chromium and its WebDriver (packages chromium, chromium-driver) for the headless-browser test of
# the attention page (tests/visualize/test_attention_page.py), when they are missing and this runs as root on a
# machine with apt-get. Otherwise it prints one line saying why not and exits 0: those tests then skip with a reason.
# tools/test.sh calls it; tools/setup.sh does not (training needs no browser).
set -uo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
if [ "$EUID" -ne 0 ]; then
  echo "install_browser: chromium/chromedriver missing and not root; run 'apt-get install chromium chromium-driver' as root, or the browser tests skip"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "install_browser: chromium/chromedriver missing and no apt-get here; install Chromium and its chromedriver on PATH, or the browser tests skip"
  exit 0
fi
log=$(mktemp)
export DEBIAN_FRONTEND=noninteractive
if apt-get update -qq >"$log" 2>&1 &&
   apt-get install -y -qq --no-install-recommends chromium chromium-driver >>"$log" 2>&1; then
  echo "install_browser: installed Debian's chromium and chromium-driver"
else
  echo "install_browser: apt-get could not install chromium chromium-driver ($(tail -n 1 "$log")); the browser tests skip"
fi
rm -f "$log"
exit 0
