#!/usr/bin/env bash
# Gathers, on this machine, what bench/gpu_check.sh needs on a bare GPU machine that cannot
# reach the internet, into .gpu/ (ignored by git; under 45 MB):
#   .gpu/whl/   wheels of the packages a CUDA image lacks: duckdb and tzfpy (the import),
#               captum (explanations), RecBole 1.2.1 and the three small packages it imports
#               (the peer); versions as in this checkout's .venv where it has them. The GPU
#               machine's Python must hold the rest: torch (CUDA), numpy, pandas, pyarrow,
#               scipy, scikit-learn, matplotlib, pyyaml, tensorboard, tabulate, colorama,
#               cloudpickle, tqdm, sympy, psutil and pytest (what the rehearsal had)
#   .gpu/data/  the complete Foursquare NYC check-ins from $TRAILSCOPE_DATA
# The GPU machine runs TrailScope from the repository itself (gpu_check.sh links it), so
# no wheel of our own goes stale.
#
#   bash bench/gpu_prepare.sh            # wheels for the GPU image's Python 3.12
#   PYVER=3.11 bash bench/gpu_prepare.sh # for a rehearsal with a local Python 3.11
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
DATA=${TRAILSCOPE_DATA:-../shared/data}
VENV_PY=${VENV_PY:-.venv/bin/python}
NYC=foursquare-nyc/NYC_checkins_reconstructed.csv.gz

version() {  # the version this checkout's venv runs, so both machines run the same code
  "$VENV_PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"
}
pins=("duckdb==$(version duckdb)" "tzfpy==$(version tzfpy)" "captum==$(version captum)"
      "recbole==1.2.1" "colorlog==4.7.2" "texttable==1.7.3" "thop==0.1.1.post2209072238")

test -f "$DATA/$NYC" || { echo "no $DATA/$NYC: set TRAILSCOPE_DATA" >&2; exit 1; }
rm -rf .gpu
mkdir -p .gpu/whl ".gpu/data/$(dirname "$NYC")"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
  platforms+=(--platform "$p")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" \
  --implementation cp "${platforms[@]}" -d .gpu/whl "${pins[@]}"
cp "$DATA/$NYC" ".gpu/data/$NYC"
echo "gathered for Python $PYVER: ${pins[*]}"
du -sh .gpu
