#!/usr/bin/env bash
# Installs every Debian package that jtrak's build, tests, benchmarks and demo need. Idempotent:
# packages already present are left alone. Run as root (or with sudo available).
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  libopenblas-dev liblapacke-dev   # BLAS (CBLAS) and LAPACKE
  libcjson-dev                     # JSON: safetensors headers, configs, manifests
  libstb-dev                       # stb_image / stb_image_write
  zlib1g-dev                       # .gz datasets
  libicu-dev                       # Unicode (NFC, categories, lower case) for the CLIP tokenizer
  librandom123-dev                 # Philox counter-based RNG
  libcriterion-dev                 # tests
  libopenmpi-dev openmpi-bin       # MPI sharding (optional at build time)
  dataset-fashion-mnist            # the embedded default dataset
  python3 python3-venv             # the reference twin (make fixtures / make bench only)
  clang libclang-rt-14-dev libomp-dev  # make fuzz: libFuzzer + sanitizers, OpenMP for clang
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
