# Shared set-up steps for scripts/up and scripts/test (sourced, not run).

PYTHON=${PYTHON:-python3}
_APT_UPDATED=0

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        echo "missing Debian packages: $* (run as root, or install them)" >&2
        return 1
    fi
    if [ "$_APT_UPDATED" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        _APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_python_venv() {
    if ! "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
        echo "Python 3.11 or newer is needed as $PYTHON" >&2
        exit 1
    fi
    if ! "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null; then
        apt_install python3-venv
    fi
}

# ensure_debian_packages CMD... : installs the package of each missing command.
ensure_debian_packages() {
    local missing=()
    for command in "$@"; do
        command -v "$command" >/dev/null 2>&1 || missing+=("$command")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        apt_install "${missing[@]}"
    fi
}

# mypyc compiles the request path at install time (setup.py): a C compiler and the
# Python headers. Without them the install still works and runs it from source.
ensure_build_tools() {
    command -v gcc >/dev/null 2>&1 || apt_install gcc || true
    local include
    include=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    if [ ! -f "$include/Python.h" ]; then
        apt_install python3-dev || true
    fi
}

install_project() {
    ensure_build_tools
    if [ ! -x .venv/bin/python ]; then
        "$PYTHON" -m venv .venv
    fi
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    local extras="dev"
    if grep -q '^app = \[' pyproject.toml; then
        extras="dev,app"
    fi
    .venv/bin/python -m pip install -q -e ".[$extras]"
    .venv/bin/python -c 'import wardent; b = wardent.HOT_PATH; print(f"request path: {b.mode} ({b.why})")'
}

# What the browser tests (tests/browser) need: Debian's chromium and the pages' chart
# library, built from the npm registry's package by frontend/ (never a CDN). Missing
# pieces are installed as root; otherwise a warning says what is missing and the
# browser tests skip, saying why (under CI=true they fail instead).
ensure_browser_test_deps() {
    if ! command -v chromium >/dev/null 2>&1; then
        apt_install chromium || echo "warning: chromium is not installed; the browser tests will skip" >&2
    fi
    build_frontend || echo "warning: the frontend build failed; the market page has no chart" >&2
}

# npm ci + the frontend build: copies lightweight-charts into tradesim/web/static/vendor.
build_frontend() {
    if ! command -v npm >/dev/null 2>&1; then
        apt_install npm || return 1
    fi
    (cd frontend && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build)
}
