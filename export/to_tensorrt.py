"""Bundle -> TensorRT engines, one per graph, in the engine cache that eqsdk.load(backend="tensorrt")
reads; engines already cached are only loaded, which checks them. Prints each engine's key, file and
build time. Needs an NVIDIA GPU, tensorrt and cuda-python (pip install "eqsdk[tensorrt]").

    python -m export.to_tensorrt eqsdk/models/mnist --precision fp16 [--cache DIR]

The building itself is eqsdk.backends.tensorrt.build_engine, so that the runtime builds the same
engines on first use without importing this package.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from eqsdk.backends.tensorrt import MAX_BATCH, TensorRTBackend
from eqsdk.bundle import bundle_dir, read_manifest
from eqsdk.errors import EqsdkError


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", help="bundle directory, or a bundled model's name")
    p.add_argument("--precision", choices=("fp32", "fp16"), default="fp32")
    p.add_argument("--cache", type=Path, help="engine cache (default: $EQSDK_CACHE, else "
                                              "~/.cache/eqsdk/engines)")
    p.add_argument("--max-batch", type=int, default=MAX_BATCH,
                   help=f"largest batch of one engine call (default {MAX_BATCH})")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        directory = bundle_dir(args.bundle)
        backend = TensorRTBackend(directory, read_manifest(directory), args.precision,
                                  args.max_batch, args.cache)
    except EqsdkError as e:
        raise SystemExit(f"error: {e}") from None
    print(backend.describe())
    for g in backend.keys:
        built = backend.built.get(g)
        how = f"built in {built:6.1f} s" if built is not None else "cached (loaded)"
        print(f"{g:5} {backend.keys[g]}  {how}  {backend.engine_path(g)}")
    print(f"{time.perf_counter() - t0:.1f} s in all")


if __name__ == "__main__":
    main()
