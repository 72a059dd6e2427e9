#!/usr/bin/env bash
# Command 1 of README.md: install what is missing on a fresh Debian 12 machine, make sure a Docker
# engine and nginx run, and serve the API on 127.0.0.1:8002 (override with DM_HOST / DM_PORT).
source "$(dirname "$0")/lib.sh"
need_root
install_packages ca-certificates curl python3 python3-venv docker.io lz4 git nginx-light openssh-client busybox-static
install_venv serve
ensure_dockerd
ensure_nginx
if [ "${1:-}" = "--install-only" ]; then
  echo "==> installed; not serving (--install-only: e.g. before systemctl restart docker-manager)"
  exit 0
fi

export DM_DATA_DIR="${DM_DATA_DIR:-/var/lib/docker-manager}"
if [ -z "${DM_ADMIN_TOKEN:-}" ]; then
  echo "==> admin token: on the first start it is written to $DM_DATA_DIR/admin-token (mode 0600)"
  echo "    read it with:  cat $DM_DATA_DIR/admin-token"
fi
echo "==> serving on http://${DM_HOST:-127.0.0.1}:${DM_PORT:-8002} (docs at /docs)"
exec "$VENV/bin/docker-manager" serve
