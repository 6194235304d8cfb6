#!/usr/bin/env bash
# The whole check, exactly as CI runs it: a fresh virtualenv with the project and its test tools,
# then lint, types, layering and the test suite. Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${HOMELAB_AUTOSCALER_VENV:-.venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# Tools that print banners on success (setuptools' editable-install warning, import-linter's ASCII art) run through
# `quietly`: their output is kept and shown only when they fail, so a green run reads as a list of steps and a red
# one still shows everything the failing tool said.
quietly() {
    local log
    log="$(mktemp)"
    if "$@" >"$log" 2>&1; then
        rm -f "$log"
    else
        local status=$?
        cat "$log" >&2
        rm -f "$log"
        echo "FAILED ($status): $*" >&2
        return "$status"
    fi
}
quietly "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24" "setuptools>=69"
quietly "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[test]'
export PATH="$PWD/$venv/bin:$PATH"
echo "== ruff";          ruff check .
echo "== mypy --strict"; mypy schemas actors kubeapi grpc_gateway webhooks sim homelab_autoscaler power_drivers
echo "== import-linter"; quietly lint-imports; echo "contracts kept"
echo "== pytest";        python -m pytest "$@"
# The end-to-end scenarios, once against the fake API the suite starts itself, and once on a real control plane
# with the real Cluster Autoscaler when real binaries are given (docs/development/e2e.md). The main run above skips
# them unless a cluster was given; a kubeconfig in the environment is not used here.
echo "== e2e (fake API)"; E2E_KUBECONFIG= python -m pytest tests/e2e --e2e-fake -q
if [ -n "${HOMELAB_K8S_BIN:-}${KUBEBUILDER_ASSETS:-}" ]; then
    echo "== e2e (real control plane and Cluster Autoscaler from ${HOMELAB_K8S_BIN:-$KUBEBUILDER_ASSETS})"
    E2E_KUBECONFIG= python -m pytest tests/e2e --e2e-control-plane -q
else
    echo "== e2e (real control plane): skipped, no Kubernetes binaries; set HOMELAB_K8S_BIN to a folder of" \
        "kube-apiserver, etcd, kube-controller-manager, kube-scheduler and cluster-autoscaler (.xz allowed)"
fi
