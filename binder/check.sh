#!/usr/bin/env bash
# The Binder environment cannot drift from the package: build a FRESH virtual environment the
# way Binder (repo2docker) does - `pip install -r binder/requirements.txt`, then binder/postBuild,
# both from the repository root - and execute notebooks in it with that environment's own kernel:
# the quickstart (what the Binder badge opens) and the Voila app (what the Voila badge opens).
#
#   usage: binder/check.sh [NOTEBOOK...]
#          (default: notebooks/01_quickstart.ipynb notebooks/app.ipynb)
#   env:   PYTHON (default python3); KEEP=1 keeps the temporary directory
#
# Differences from a real Binder build, on purpose: pip's default cache is left on (repo2docker
# passes --no-cache-dir), and PIP_RETRIES=1 so that the PyTorch CPU index named in
# binder/requirements.txt, when it cannot be reached, costs a warning per package instead of
# ~8 s of back-off; pip then finds the same CPU build of torch through this machine's pip
# configuration.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -eq 0 ]; then set -- notebooks/01_quickstart.ipynb notebooks/app.ipynb; fi
PYTHON=${PYTHON:-python3}
start=$SECONDS

say() { echo "binder check: [$((SECONDS - start)) s] $*"; }
fail() { echo "binder check: FAILED after $((SECONDS - start)) s: $*" >&2; exit 1; }
# run LOGNAME CMD...: output goes to a log; on failure its tail is shown
run() {
  local log="$tmp/$1.log"
  shift
  "$@" >"$log" 2>&1 || { tail -n 40 "$log" >&2; return 1; }
}

for nb in "$@"; do [ -f "$nb" ] || fail "no notebook at $nb"; done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/sdw-binder-check.XXXXXX")
if [ "${KEEP:-0}" = 1 ]; then trap 'echo "binder check: kept $tmp"' EXIT; else trap 'rm -rf "$tmp"' EXIT; fi

say "fresh virtual environment in $tmp/venv"
"$PYTHON" -m venv "$tmp/venv" || fail "$PYTHON -m venv"
# From here on `python`, `pip` and `jupyter` are the new environment's, as on Binder, and
# nothing from the user's site-packages or PYTHONPATH can leak in.
export PATH="$tmp/venv/bin:$PATH" VIRTUAL_ENV="$tmp/venv" PYTHONNOUSERSITE=1
unset PYTHONPATH PYTHONHOME
export PIP_RETRIES=1 PIP_DISABLE_PIP_VERSION_CHECK=1 JUPYTER_PREFER_ENV_PATH=1

say "pip install -r binder/requirements.txt"
run requirements python -m pip install -r binder/requirements.txt \
  || fail "pip install -r binder/requirements.txt"
say "binder/postBuild"
run postBuild binder/postBuild || fail "binder/postBuild"

say "torch is the pinned CPU build, no CUDA packages"
torch_version=$(python - <<'PY'
import re
import torch

pin = re.search(r"^torch==(\S+)", open("requirements/torch-cpu.txt").read(), re.M).group(1)
assert torch.__version__.split("+")[0] == pin, f"torch {torch.__version__}, pinned {pin}"
assert torch.version.cuda is None, f"a CUDA build of torch: {torch.version.cuda}"
assert not torch.cuda.is_available()
print(torch.__version__)
PY
) || fail "torch in the Binder environment is not the CPU build pinned in requirements/torch-cpu.txt"
cuda_pkgs=$(python -m pip list 2>/dev/null | grep -iE '^(nvidia-|triton )' || true)
[ -z "$cuda_pkgs" ] || fail "CUDA packages were installed: $(echo $cuda_pkgs)"

say "kernel from the new environment"
run kernel python -m ipykernel install --sys-prefix --name python3 || fail "ipykernel install"
kernel_dir=$(jupyter kernelspec list --json | python -c \
  'import json, sys; print(json.load(sys.stdin)["kernelspecs"]["python3"]["resource_dir"])')
case "$kernel_dir" in
  "$tmp/venv/"*) ;;
  *) fail "kernel python3 is not the new environment's: $kernel_dir" ;;
esac

say "voila is installed (the Voila badge serves notebooks/app.ipynb)"
python -c "import voila" || fail "voila is missing from the Binder environment"

for nb in "$@"; do
  say "jupyter nbconvert --execute $nb"
  run nbconvert jupyter nbconvert --execute --to notebook \
    --ExecutePreprocessor.kernel_name=python3 --ExecutePreprocessor.timeout=600 \
    --output-dir "$tmp" --output "executed-$(basename "$nb")" "$nb" \
    || fail "$nb does not run in the Binder environment"
done

say "OK: $* run in a fresh Binder environment (torch $torch_version, no CUDA) in $((SECONDS - start)) s"
