#!/usr/bin/env bash
# The Python packages the GPU machine lacks for lqs' training path, as wheels for its Python (3.12, x86-64
# manylinux), into .whl/ (ignored through .git/info/exclude, never committed; about 2.9 MB).
#
# The device image has JAX 0.11 with CUDA, NumPy, pandas, scikit-learn, h5py, rich, absl-py, ml-dtypes, packaging,
# typing-extensions, Pillow, PyYAML, tqdm (/work/.library/device/KINDS.md), but no Keras: Keras itself (the version
# of this checkout's .venv, so the runs are computed by the Keras the project pins) and the two of its requirements
# missing there, namex and optree. jsonschema is not needed there (only the workflow's config check uses it).
#
#   gpu/fetch_wheels.sh            # download into .whl/
#   gpu/fetch_wheels.sh --dry-run  # only say what would be downloaded
#
# On the device, each call that needs them carries `.whl` and starts with (gpu/README.md):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
#     && export PYTHONPATH=/tmp/site:$PWD || exit
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
KERAS=$("$PY" -c 'import importlib.metadata as m; print(m.version("keras"))')
NAMEX=$("$PY" -c 'import importlib.metadata as m; print(m.version("namex"))')
OPTREE=$("$PY" -c 'import importlib.metadata as m; print(m.version("optree"))')
PKGS=("keras==$KERAS" "namex==$NAMEX" "optree==$OPTREE")
if [ "${1:-}" = "--dry-run" ]; then
  echo "would download into .whl/: ${PKGS[*]} (cp312, manylinux x86_64)"
  exit 0
fi
grep -qxF '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
rm -f .whl/*.whl   # one version of each: two stop the whole install there
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${PKGS[@]}"
ls -l .whl
