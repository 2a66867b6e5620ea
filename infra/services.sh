#!/usr/bin/env bash
# Ensure the database services the tests use are running on this machine, and wait for them:
# PostgreSQL on 127.0.0.1:5432 and MariaDB on 127.0.0.1:3306. A service whose port already answers
# is left alone; otherwise it is started with this machine's command and given up to 30 s.
# Prints one line per service; exits non-zero, saying why, when one cannot be started.
set -euo pipefail

WAIT_SECONDS=30

# Whether something accepts TCP connections on 127.0.0.1:$1.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Wait up to WAIT_SECONDS for port $1; true as soon as it answers.
wait_for_port() {
    local deadline=$((SECONDS + WAIT_SECONDS))
    until port_open "$1"; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.5
    done
}

start_postgresql() {
    local version
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [[ -z "$version" ]]; then
        echo "no cluster under /etc/postgresql: install PostgreSQL (apt-get install postgresql)" >&2
        return 1
    fi
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
}

start_mariadb() {
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
}

# ensure NAME PORT START_FUNCTION LOG_FOLDER
ensure() {
    local name=$1 port=$2 start=$3 logs=$4 log
    if port_open "$port"; then
        echo "$name: already running on 127.0.0.1:$port"
        return 0
    fi
    if ! log=$("$start" 2>&1); then
        echo "$name: could not be started on 127.0.0.1:$port: ${log:-no output}" >&2
        return 1
    fi
    if ! wait_for_port "$port"; then
        echo "$name: started but 127.0.0.1:$port did not answer within ${WAIT_SECONDS} s; see $logs" >&2
        return 1
    fi
    echo "$name: started on 127.0.0.1:$port"
}

status=0
ensure PostgreSQL 5432 start_postgresql /var/log/postgresql || status=1
ensure MariaDB 3306 start_mariadb /var/log/mysql || status=1
exit "$status"
