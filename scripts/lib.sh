# Shared by serve.sh and test.sh: install what is missing and make sure a Docker engine answers.
# Idempotent: on a prepared machine every step is a quick check.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DM_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "run this as root: it installs Debian packages and starts dockerd" >&2
    exit 1
  fi
}

install_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

pip_install() {
  local log
  log=$(mktemp)
  if ! "$VENV/bin/pip" install -q --disable-pip-version-check "$@" >"$log" 2>&1; then
    grep -v "^WARNING: Location" "$log" >&2
    rm -f "$log"
    echo "pip install $* failed" >&2
    exit 1
  fi
  rm -f "$log"
}

install_venv() {
  # $1: which lock to install: serve or test (requirements/*.lock, pinned with hashes).
  local lock="$1"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating virtualenv $VENV"
    "$PY" -m venv "$VENV"
  fi
  local digest
  digest=$(cat "$ROOT/pyproject.toml" "$ROOT/requirements/build.lock" "$ROOT/requirements/$lock.lock" \
    | sha256sum | cut -c1-16)
  local stamp="$VENV/.installed-$digest-$lock"
  if [ ! -f "$stamp" ]; then
    echo "==> installing Python dependencies (requirements/$lock.lock, hashes checked)"
    pip_install --require-hashes -r "$ROOT/requirements/build.lock"
    pip_install --require-hashes -r "$ROOT/requirements/$lock.lock"
    # The project itself: no dependencies (all came from the lock), no isolated build env.
    pip_install --no-deps --no-build-isolation -e "$ROOT"
    "$VENV/bin/python" -c "import docker_manager" # fail here, clearly, if the install did not work
    touch "$stamp"
  fi
}

engine_answers() {
  curl -fsS --max-time 3 --unix-socket /var/run/docker.sock http://docker/_ping >/dev/null 2>&1
}

ensure_dockerd() {
  if engine_answers; then
    return
  fi
  echo "==> starting dockerd (log: /var/log/docker-manager-dockerd.log)"
  # setsid: the engine must outlive this script and not share its process group.
  setsid dockerd >>/var/log/docker-manager-dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 60); do
    engine_answers && return
    sleep 0.5
  done
  echo "dockerd did not come up; see /var/log/docker-manager-dockerd.log" >&2
  tail -20 /var/log/docker-manager-dockerd.log >&2 || true
  exit 1
}

ensure_nginx() {
  # A deploy with a domain needs nginx running (the service writes its sites and reloads it): start
  # it when it is installed and stopped, as for dockerd. DM_NGINX_BINARY, _PREFIX, _CONF and
  # _PID_FILE are the service's own settings for a private nginx.
  local binary="${DM_NGINX_BINARY:-nginx}" pid_file="${DM_NGINX_PID_FILE:-/run/nginx.pid}"
  if ! command -v "$binary" >/dev/null; then
    echo "==> nginx is not installed: deploys with a domain will be refused (apt-get install nginx-light)"
    return 0
  fi
  if [ -s "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
    return 0
  fi
  local argv=("$binary")
  if [ -n "${DM_NGINX_PREFIX:-}" ]; then argv+=(-p "$DM_NGINX_PREFIX"); fi
  if [ -n "${DM_NGINX_CONF:-}" ]; then argv+=(-c "$DM_NGINX_CONF"); fi
  local checked
  if ! checked=$("${argv[@]}" -q -t 2>&1); then
    echo "==> nginx is stopped and its configuration does not pass nginx -t; not started:" >&2
    echo "$checked" >&2
    return 0
  fi
  echo "==> starting nginx (it was installed but not running)"
  # A failure is said and the service still starts (deploys without a domain work; doctor tells).
  if [ -z "${DM_NGINX_PREFIX:-}${DM_NGINX_CONF:-}${DM_NGINX_BINARY:-}" ] && [ -d /run/systemd/system ]; then
    if ! systemctl start nginx; then
      echo "nginx did not start (systemctl start nginx); see: journalctl -u nginx" >&2
      return 0
    fi
  elif ! "${argv[@]}"; then
    echo "nginx did not start; see its error log" >&2
    return 0
  fi
  for _ in $(seq 1 50); do
    if [ -s "$pid_file" ] && kill -0 "$(cat "$pid_file")" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "nginx did not start; see its error log" >&2
}

start_postgres() {
  # A throwaway cluster of this run only (its own folder and port: another test session on the
  # machine keeps its own), and a fresh database. The port is chosen free below the kernel's
  # ephemeral range (32768-60999 here), where neither an outgoing connection nor a port the
  # engine publishes can be holding it.
  local bin port data
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  data=$(mktemp -d /tmp/docker-manager-test-pg.XXXXXX)
  chown postgres "$data"
  port=$(free_loopback_port 25432 25532) || { echo "no free port for PostgreSQL" >&2; return 1; }
  runuser -u postgres -- "$bin/initdb" -D "$data/db" -A trust -U postgres >/dev/null
  if ! runuser -u postgres -- "$bin/pg_ctl" -D "$data/db" -l "$data/log" -w \
    -o "-p $port -k $data -c listen_addresses=127.0.0.1" start >/dev/null; then
    cat "$data/log" >&2
    rm -rf "$data"
    return 1
  fi
  psql -q -h 127.0.0.1 -p "$port" -U postgres -c "CREATE DATABASE dm_test"
  TEST_PG_URL="postgresql+asyncpg://postgres@127.0.0.1:$port/dm_test"
  # For the test that stops and starts it again (a database going away under the service).
  export TEST_PG_DATA="$data" TEST_PG_CTL="runuser -u postgres -- $bin/pg_ctl"
  export TEST_PG_OPTIONS="-p $port -k $data -c listen_addresses=127.0.0.1"
}

stop_postgres() {
  # The cluster start_postgres made in this run, and its folder.
  local bin
  [ -n "${TEST_PG_DATA:-}" ] && [ -d "$TEST_PG_DATA" ] || return 0
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  runuser -u postgres -- "$bin/pg_ctl" -D "$TEST_PG_DATA/db" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$TEST_PG_DATA"
}

free_loopback_port() {
  # The first port in [$1, $2] that nothing on 127.0.0.1 is bound to.
  python3 - "$1" "$2" <<'PY'
import socket, sys
for port in range(int(sys.argv[1]), int(sys.argv[2]) + 1):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            continue
    print(port)
    sys.exit(0)
sys.exit(1)
PY
}
