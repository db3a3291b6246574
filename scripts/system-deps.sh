#!/usr/bin/env bash
# Installs the Debian packages the tests drive for real, when they are missing:
#   chromium + chromium-driver  (the Selenium end-to-end tests)
#   nginx                       (tests/process/test_nginx.py and the e2e tests: docs/nginx.conf in front of the app)
#   redis-server                (tests/process/test_redis.py: several app processes sharing one Redis)
#   openssl                     (tests/e2e/test_tabs_http2.py: a throwaway certificate for nginx's HTTP/2)
#   curl                        (tests/process/test_tutorial_curl.py: every curl of docs/tutorial.md)
#   nodejs                      (tests/js: the browser modules' logic under `node --test`)
#   npm                         (installs axe-core, which tests/e2e/test_accessibility.py runs in each page)
#   systemd                     (tests/process/test_deploy.py: systemd-analyze reads docs/comet@.service)
# Needs root and apt-get; otherwise says exactly what to install and fails.
set -euo pipefail

missing=()
if [ -z "${NO_BROWSER:-}" ]; then  # make test-fast sets it
    [ -x "${CHROMIUM:-/usr/bin/chromium}" ] || missing+=(chromium)
    [ -x "${CHROMEDRIVER:-/usr/bin/chromedriver}" ] || missing+=(chromium-driver)
fi
[ -x /usr/sbin/nginx ] || missing+=(nginx)
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
[ -x /usr/bin/openssl ] || missing+=(openssl)
[ -x /usr/bin/curl ] || missing+=(curl)
[ -x /usr/bin/node ] || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
[ -x /usr/bin/systemd-analyze ] || missing+=(systemd)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "Installing ${missing[*]} with apt-get ..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    exit 0
fi
echo "The tests need these Debian packages: ${missing[*]}" >&2
echo "Install them with:  sudo apt-get install ${missing[*]}" >&2
exit 1
