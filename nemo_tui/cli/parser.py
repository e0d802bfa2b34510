"""The argument parser: global options, and one subparser per command."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from nemo_tui import __version__

Handler = Callable[[argparse.Namespace], int]
HOST_HELP = "the host of the lab to run it on (`local` or a name under `hosts:`)"


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Options every command accepts, before or after the command name."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=default,
        help="config file (default: $NEMO_TUI_CONFIG, then the platform config dir)",
    )
    parser.add_argument(
        "--simulate-memory",
        metavar="TOTAL[:AVAILABLE]",
        default=default,
        help="pretend the machine has this much memory, e.g. 8GB, 4GB:1.5GB, 2048MB",
    )
    parser.add_argument(
        "--simulate-gpu",
        metavar="VRAM",
        default=default,
        help="pretend there is one GPU with this much memory, e.g. 8GB",
    )


def _lazy(module: str, function: str) -> Handler:
    """A handler that imports its command module only when it runs, keeping `--help` fast."""

    def handler(args: argparse.Namespace) -> int:
        loaded = importlib.import_module(f"nemo_tui.cli.{module}")
        result: int = getattr(loaded, function)(args)
        return result

    return handler


def _run_dashboard(args: argparse.Namespace) -> int:
    from nemo_tui.cli.dashboard import run_dashboard

    return run_dashboard(args)


def build_parser() -> argparse.ArgumentParser:
    """The full `nemo-tui` parser; each subparser sets `handler`."""
    parser = argparse.ArgumentParser(
        prog="nemo-tui",
        description="Run local LLMs without running out of memory. "
        "With no command, opens the dashboard.",
    )
    parser.add_argument("--version", action="version", version=f"nemo-tui {__version__}")
    parser.add_argument(
        "--theme", metavar="NAME", default=None, help="dashboard theme (remembered)"
    )
    _global_options(parser, suppress=False)
    parser.set_defaults(handler=_run_dashboard)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _global_options(sub, suppress=True)
        sub.set_defaults(handler=handler)
        return sub

    status = command(
        "status", _lazy("core_commands", "status"), "memory, pressure and the recommended model"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")

    recommend = command(
        "recommend", _lazy("core_commands", "recommend_command"), "recommend a model for a query"
    )
    recommend.add_argument("query", help="the question you want to ask")
    recommend.add_argument(
        "--complexity", choices=("low", "medium", "high"), help="skip detection, use this level"
    )
    recommend.add_argument("--data", metavar="FILE", help="a data file that goes with the query")
    recommend.add_argument("--json", action="store_true", help="machine-readable output")

    optimize = command(
        "optimize",
        _lazy("core_commands", "optimize_command"),
        "shrink a prompt (read from stdin) to a token budget",
    )
    target = optimize.add_mutually_exclusive_group()
    target.add_argument("--model", metavar="M", help="fit the context this model gets now")
    target.add_argument("--budget", metavar="TOKENS", type=int, help="fit this many tokens")
    optimize.add_argument("--query", metavar="Q", help="the question the prompt must answer")
    optimize.add_argument("--data", metavar="FILE", help="summarize this CSV/TSV/JSONL file")
    optimize.add_argument("--json", action="store_true", help="machine-readable output")

    estimate = command(
        "estimate",
        _lazy("core_commands", "estimate_command"),
        "estimate a model's memory at a context length",
    )
    estimate.add_argument("model", metavar="MODEL_OR_GGUF", help="a catalog name or a .gguf file")
    estimate.add_argument("--ctx", type=int, default=None, help="context length in tokens")
    estimate.add_argument(
        "--kv-type",
        choices=("f16", "q8_0", "q4_0"),
        default=None,
        help="KV cache type (default: the backend's: backends.embedded.kv_cache_type for an"
        " embedded model, f16 for the others)",
    )
    estimate.add_argument("--json", action="store_true", help="machine-readable output")

    check = command(
        "check-config",
        _lazy("core_commands", "check_config"),
        "validate a config file and print the result",
    )
    check.add_argument(
        "path", nargs="?", default=None, help="file to check (default: the one in use)"
    )

    command("locate", _lazy("core_commands", "locate"), "print where nemo-tui keeps its files")

    ask = command(
        "ask", _lazy("engine_commands", "ask"), "answer a question with the best model that fits"
    )
    ask.add_argument("query", help="the question")
    ask.add_argument("--model", metavar="M", help="use this model instead of the recommended one")
    ask.add_argument(
        "--data", metavar="FILE", help="a CSV/TSV/JSONL file to summarize into the prompt"
    )
    ask.add_argument("--host", metavar="H", help=HOST_HELP)
    ask.add_argument("--json", action="store_true", help="emit the engine's events as JSON lines")

    analyze = command(
        "analyze",
        _lazy("analysis_commands", "analyze"),
        "have a model write a Python script that answers a question about a data file",
    )
    analyze.add_argument("query", metavar="QUESTION", help="what you want to know about the data")
    analyze.add_argument(
        "--data", metavar="FILE", required=True, help="the CSV/TSV/JSONL file to analyze"
    )
    analyze.add_argument(
        "--model", metavar="M", help="use this model instead of the recommended one"
    )
    analyze.add_argument("--host", metavar="H", help=HOST_HELP)
    analyze.add_argument(
        "--run",
        action="store_true",
        help="run the script (in a child process, under limits); without it the script is"
        " only shown",
    )
    analyze.add_argument(
        "--repair",
        action="store_true",
        help="when the run fails, send the error back once for a corrected script (with --run)",
    )
    analyze.add_argument(
        "--json", action="store_true", help="emit the engine's events, then the analysis, as JSON"
    )

    demo = command(
        "demo-data",
        _lazy("data_commands", "demo_data"),
        "write a synthetic patient cohort (CSV) to try analysis mode on",
    )
    demo.add_argument(
        "--patients", metavar="N", type=int, default=1500, help="how many patients (default 1500)"
    )
    demo.add_argument(
        "--seed", metavar="S", type=int, default=42, help="the same seed gives the same file"
    )
    demo.add_argument(
        "-o", "--output", metavar="FILE", default=None, help="write here (default: stdout)"
    )

    models = command(
        "models", _lazy("engine_commands", "models"), "installed and loaded models, and what fits"
    )
    models.add_argument("--json", action="store_true", help="machine-readable output")

    preload = command(
        "preload", _lazy("engine_commands", "preload"), "load a model now, if memory allows"
    )
    preload.add_argument("model", metavar="MODEL")
    preload.add_argument("--host", metavar="H", help="load it on this host (default: this machine)")
    unload = command("unload", _lazy("engine_commands", "unload"), "unload a model from memory")
    unload.add_argument("model", metavar="MODEL")
    unload.add_argument(
        "--host", metavar="H", help="the host to unload it from (default: where it is loaded)"
    )
    clear = command(
        "clear-cache",
        _lazy("engine_commands", "clear_cache"),
        "unload every model loaded on this machine",
    )
    clear_where = clear.add_mutually_exclusive_group()
    clear_where.add_argument("--host", metavar="H", help="clear this host's models instead")
    clear_where.add_argument(
        "--all-hosts", action="store_true", help="clear every host's models, shared ones too"
    )

    stats = command(
        "stats", _lazy("engine_commands", "stats"), "memory, models, settings and query metrics"
    )
    stats.add_argument("--json", action="store_true", help="machine-readable output")

    metrics = command(
        "metrics",
        _lazy("metrics_commands", "metrics"),
        "serve Prometheus metrics (memory, loaded models, queries), or write them for"
        " node_exporter",
    )
    output = metrics.add_mutually_exclusive_group(required=True)
    output.add_argument(
        "--listen",
        metavar="ADDR:PORT",
        help="serve http://ADDR:PORT/metrics until stopped: 127.0.0.1:9200, [::1]:9200, or"
        " :9200 for every interface",
    )
    output.add_argument(
        "--textfile",
        metavar="PATH",
        help="write them to PATH, a .prom file in node_exporter's textfile directory",
    )
    metrics.add_argument(
        "--interval",
        metavar="SECONDS",
        type=float,
        default=None,
        help="with --textfile, rewrite the file every SECONDS until stopped (default: write"
        " once); with --listen, ask the servers and hosts again this often (default 15)",
    )

    hosts = command(
        "hosts", _lazy("host_commands", "hosts"), "the lab's hosts: up or down, memory, models"
    )
    hosts.add_argument("--json", action="store_true", help="machine-readable output")
    return parser
