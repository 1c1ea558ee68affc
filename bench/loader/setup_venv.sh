#!/usr/bin/env bash
# The loader benchmark's own environment: shardsmith plus the peers it is measured against
# (webdataset, MosaicML Streaming, LitData), kept out of the project's dependencies.
#
# Plain installs of mosaicml-streaming or litdata pull torchvision and replace the CPU torch with a
# multi-GB CUDA build, so: the CPU torch first, then the peers with --no-deps, then only what they
# import. Usage: bench/loader/setup_venv.sh [VENV_DIR]   (default bench/results/venv-loader)
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${1:-bench/results/venv-loader}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
python -m pip install -q torch==2.13.0
python -m pip install -q -e '.[webdataset]'
# The peers, without their declared dependencies (those pull torchvision, a CUDA torch, cloud SDKs,
# matplotlib ...) ...
python -m pip install -q --no-deps 'mosaicml-streaming==0.13.0' 'litdata==0.2.76' 'transformers>=4.40,<5'
# ... and what they import when loading local data: Streaming's compression codecs, hashing, locks,
# progress bars, catalogue, and transformers (Streaming's DataLoader module imports it); LitData's
# utilities. torchvision is not installed: the only build on PyPI links CUDA libraries, and
# Streaming only imports two names from it at start-up, which bench/loader/shim/torchvision provides.
python -m pip install -q 'zstd>=1.5' 'xxhash>=3.4' 'python-snappy>=0.7' 'brotli>=1.1' 'filelock>=3.12' \
  'tqdm>=4.66' 'lightning-utilities>=0.11' 'boto3>=1.34' 'requests>=2.31' 'typing-extensions>=4.8' \
  'catalogue>=2,<3' 'huggingface-hub>=0.30,<1.0' 'tokenizers>=0.19,<0.23' 'safetensors>=0.4' 'regex' 'pyyaml'
python - <<'PY'
import sys
sys.path.insert(0, "bench/loader/shim")
import torch, webdataset, streaming, litdata  # noqa: F401  (fails here, loudly, if an import is missing)
from streaming import MDSWriter, StreamingDataset  # noqa: F401
from litdata import StreamingDataLoader, optimize  # noqa: F401
assert torch.__version__.startswith("2.13.0") and "+cpu" in torch.__version__, torch.__version__
print("bench venv ready:", "torch", torch.__version__, "webdataset", webdataset.__version__,
      "streaming", streaming.__version__, "litdata", litdata.__version__)
PY
