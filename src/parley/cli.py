"""The `parley` command line."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from parley import __version__, ingest
from parley.config import Config, ConfigError, load_config, quick_config

DEFAULT_CONFIG = "config/default.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    return args.run(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parley",
        description="parley: an LLM gateway that speaks the Anthropic Messages API and the OpenAI "
        "Chat Completions API in front of Anthropic, OpenAI-compatible servers and more.",
        epilog="Start with: parley serve --config config/default.yaml   (then point the anthropic "
        "SDK or Claude Code at http://127.0.0.1:4000)",
    )
    parser.add_argument("--version", action="version", version=f"parley {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    serve = sub.add_parser(
        "serve",
        help="run the gateway",
        description="Run the gateway. Give a config file (LiteLLM-style YAML with model_list) or, "
        "for a quick start, one --model provider/name.",
        epilog="Examples:\n  parley serve --config config/default.yaml\n"
        "  ANTHROPIC_API_KEY=sk-ant-... parley serve --model anthropic/claude-sonnet-4-5\n"
        "  parley serve --config my.yaml --host 0.0.0.0 --port 8080 --workers 2",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = serve.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="FILE", help=f"YAML config file (default: {DEFAULT_CONFIG})")
    source.add_argument(
        "--model",
        metavar="PROVIDER/NAME",
        help="serve one model without a config file, e.g. anthropic/claude-sonnet-4-5 "
        "(key from ANTHROPIC_API_KEY / OPENAI_API_KEY)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument("--port", type=int, default=4000, help="port to listen on (default: 4000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default: 1)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--shutdown-timeout",
        type=float,
        default=15.0,
        help="seconds a stop waits for open requests; streams still open then end with an error event "
        "(default: 15)",
    )
    serve.set_defaults(run=_serve)

    fake = sub.add_parser(
        "fake-upstream",
        help="run a fake Anthropic/OpenAI upstream for offline testing",
        description="A scripted server that speaks the Anthropic Messages API and the OpenAI Chat "
        "Completions API, for testing gateways and clients offline.",
    )
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=4010)
    fake.set_defaults(run=_fake_upstream)
    ingest.add_parser(sub)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from parley.logs import setup_logging
    from parley.server.factory import CONFIG_ENV, MODEL_ENV

    setup_logging(args.log_level)
    os.environ["PARLEY_LOG_LEVEL"] = args.log_level  # for the workers, which set up their own
    try:
        if args.model:
            config = quick_config(args.model)
            os.environ[MODEL_ENV] = args.model
        else:
            path = args.config or DEFAULT_CONFIG
            config = load_config(path)
            os.environ[CONFIG_ENV] = os.path.abspath(path)
        from parley.gateway import check_providers

        check_providers(config)
    except ConfigError as e:
        print(f"parley: config error: {e}", file=sys.stderr)
        return 2
    print(banner(config, args.host, args.port, args.workers), file=sys.stderr, flush=True)
    for line in config.ignored:  # here, in the parent: once, however many workers
        print(f"ignored: {line}", file=sys.stderr, flush=True)
    import uvicorn

    from parley.server.protocol import EnvelopeHttpToolsProtocol

    _exit_zero_on_stop()
    uvicorn.run(
        "parley.server.factory:app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers if args.workers > 1 else None,
        loop="uvloop",
        http=EnvelopeHttpToolsProtocol,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=max(0.0, args.shutdown_timeout),
        server_header=False,
        date_header=False,
    )
    return 0


def _exit_zero_on_stop() -> None:
    """A graceful stop is a normal end: exit 0, not 128+signal.

    uvicorn re-raises the signal that stopped it once it has shut down cleanly; with these handlers
    in place that raise ends the process with status 0 instead of a death by signal.
    """

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)


def banner(config: Config, host: str, port: int, workers: int) -> str:
    from parley.gateway import describe_database

    names = []
    for dep in config.deployments:
        names.append(
            f"    {dep.model_name}  ->  {dep.provider}/{dep.model}"
            + (f"  ({dep.api_base})" if dep.api_base and dep.api != "mock" else "")
        )
    lines = [
        f"parley {__version__}",
        f"  listening:  http://{host}:{port}  ({workers} worker{'s' if workers != 1 else ''})",
        f"  config:     {config.path}",
        f"  auth:       {'on (master key required)' if config.master_key else 'OFF (no master_key set)'}",
        f"  database:   {describe_database(config)}",
        "  models:",
        *(names or ["    (none)"]),
    ]
    return "\n".join(lines)


def _fake_upstream(args: argparse.Namespace) -> int:
    from parley.testing.fake_upstream import serve_forever

    serve_forever(args.host, args.port)
    return 0
