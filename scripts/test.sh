#!/usr/bin/env bash
# Command 2 of README.md: run the whole test suite against real services.
# Installs what is missing, starts dockerd if no engine answers, then lint, types and pytest.
# The tests start their own nginx, sshd and registry instances on loopback as they need them.
# Extra arguments go to pytest (e.g. scripts/test.sh -k exec -x).
source "$(dirname "$0")/lib.sh"
need_root
install_packages ca-certificates curl python3 python3-venv docker.io busybox-static lz4 git \
  nginx-light openssh-server openssh-client docker-registry apache2-utils postgresql \
  chromium chromium-driver pebble systemd iproute2 util-linux
install_venv test
ensure_dockerd

cd "$ROOT"
echo "==> ruff"
"$VENV/bin/ruff" check src tests bench
"$VENV/bin/ruff" format --check src tests bench
echo "==> mypy"
"$VENV/bin/mypy"
echo "==> pytest"
"$VENV/bin/pytest" -q "$@"

if [ $# -eq 0 ]; then
  # The task engine and tokens once more, on PostgreSQL (DM_DATABASE_URL=postgresql+asyncpg://...).
  echo "==> pytest (task store on PostgreSQL)"
  start_postgres
  trap stop_postgres EXIT
  TEST_DATABASE_URL="$TEST_PG_URL" "$VENV/bin/pytest" -q -m postgres
fi
