"""The embedded backend's llama.cpp worker with flash attention turned off (benchmarks only).

`python -m bench.worker_no_flash_attention`, run from the repository root, is
`nemo_tui.backends.llama_worker` with one setting changed: llama.cpp's `flash_attn_type` is
`DISABLED` instead of `AUTO` (which turns it on on a CPU). nemo-tui never runs it: it lets
`bench/bench_estimator.py` measure the attention path without flash attention, the one the
estimator assumes for servers it cannot see into. Only an f16 KV cache works without it.
"""

from __future__ import annotations

from typing import Any

from nemo_tui.backends import llama_worker
from nemo_tui.backends.llama_worker import WorkerSettings

_product_params = llama_worker._params


def _params_without_flash_attention(settings: WorkerSettings) -> Any:
    import xllamacpp

    if settings.kv_cache_type != "f16":
        raise ValueError("a quantized KV cache needs flash attention")
    params = _product_params(settings)
    params.flash_attn_type = xllamacpp.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED
    return params


llama_worker._params = _params_without_flash_attention

if __name__ == "__main__":
    raise SystemExit(llama_worker.main())
