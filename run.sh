#!/usr/bin/env bash
# The project's one entry point for people and CI.
#   ./run.sh demo    set up (first time) and run the demo: simulated strings, every plugin
#   ./run.sh test    set up (first time), install the test peers, lint and run the tests
#   ./run.sh setup   only the set-up (virtualenv in .venv, Debian test peers)
set -euo pipefail
cd "$(dirname "$0")"

VENV=${BTMS_VENV:-.venv}
PY=${PYTHON:-python3}
# Independent protocol peers the tests talk to, from Debian.
DEBIAN_PEERS=(snmp snmpd snmptrapd smitools mbpoll libmodbus-dev gcc socat chromium
              mosquitto mosquitto-clients protobuf-compiler systemd poppler-utils)
PEER_COMMANDS=(snmpget snmpd snmptrapd smilint mbpoll /usr/include/modbus/modbus.h gcc socat chromium
               /usr/sbin/mosquitto mosquitto_sub protoc systemd-analyze pdftoppm)

say() { printf '\033[1m%s\033[0m\n' "$*" >&2; }

python_env() {
    "$PY" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"' || exit 1
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV"
        "$PY" -m venv "$VENV"
    fi
    local stamp="$VENV/.btms-installed"
    local want
    want=$(cat pyproject.toml examples/*/pyproject.toml | sha256sum | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        say "installing btms-gateway and the example plugins into $VENV"
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e '.[test,reports]' -e ./examples/btms-jsonl-logger \
            -e ./examples/btms-linefeed
        echo "$want" > "$stamp"
    fi
}

debian_peers() {
    local missing=() i
    for i in "${!DEBIAN_PEERS[@]}"; do
        local probe=${PEER_COMMANDS[$i]}
        if [[ $probe == /* ]]; then [ -e "$probe" ] && continue
        else command -v "$probe" >/dev/null 2>&1 && continue; fi
        missing+=("${DEBIAN_PEERS[$i]}")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing Debian test peers: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

typecheck() {
    # The package-dir mapping (core/ -> btms_gateway.core, ...) is invisible to mypy
    # in an editable install: a farm of links gives it the import names to check.
    local farm="$VENV/typecheck/btms_gateway" folder
    mkdir -p "$farm"
    for folder in core protocols plugins kit; do ln -sfn "$PWD/$folder" "$farm/$folder"; done
    MYPYPATH="$VENV/typecheck" "$VENV/bin/mypy" -p btms_gateway.core -p btms_gateway.kit \
        -p btms_gateway.protocols -p btms_gateway.plugins
}

case "${1:-}" in
    setup)
        python_env
        debian_peers
        ;;
    demo)
        shift
        python_env
        exec "$VENV/bin/btms-gateway" demo "$@"
        ;;
    test)
        shift
        python_env
        debian_peers
        say "lint"
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        say "import contracts"
        "$VENV/bin/lint-imports"
        say "type check"
        typecheck
        say "tests"
        exec "$VENV/bin/pytest" -q "$@"
        ;;
    *)
        sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
