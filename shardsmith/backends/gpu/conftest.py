# pytest collects this package's modules for their doctests; the ones that import cuDF and CuPy at
# the top can only be imported where the GPU engine can run.
from shardsmith.backends.gpu.compat import unavailable_reason

collect_ignore = ["backend.py", "columns.py", "digest.py", "impl.py", "transfer.py", "writer.py"] \
    if unavailable_reason() else []
