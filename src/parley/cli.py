"""The `parley` command line."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys

from parley import __version__, ingest
from parley.cli_flags import answer, normalize
from parley.config import Config, ConfigError, load_config, quick_config

DEFAULT_CONFIG = "config/default.yaml"


def main(argv: list[str] | None = None) -> int:
    argv = normalize(list(sys.argv[1:] if argv is None else argv))
    hint = answer(argv)
    if hint:
        print(f"parley: {hint}", file=sys.stderr)
        return 2
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
    serve.add_argument(
        "--workers", "--num_workers", type=int, default=1, help="worker processes (default: 1)"
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--detailed_debug",
        "--debug",
        dest="debug",
        action="store_true",
        help="debug logging, as --log-level debug (keys are masked)",
    )
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
    from parley.server.factory import CONFIG_ENV, MODEL_ENV, log_settings
    from parley.server.startup import StartupError, bind, check_gateway, redis_notes
    from parley.store.preflight import check_database

    try:
        if args.model:
            config = quick_config(args.model)
            os.environ[MODEL_ENV] = args.model
        else:
            path = args.config or DEFAULT_CONFIG
            config = load_config(path)
            os.environ[CONFIG_ENV] = os.path.abspath(path)
        _check_served(config)
        if config.observability.custom_callbacks:
            from parley.filters.callbacks import check_callbacks

            check_callbacks(config.observability, config.path)
    except ConfigError as e:
        print(f"parley: config error: {e}", file=sys.stderr)
        return 2
    if config.observability.prometheus and args.workers > 1:  # before prometheus_client is imported
        # Workers write their values to files that /metrics sums; one worker keeps them in memory
        # (no file write and lock per update: the same numbers, as no worker is ever replaced).
        from parley.filters.metrics import procdir

        procdir.prepare(args.host, args.port)
    os.environ.update(config.environment)
    level = "debug" if args.debug or config.litellm.set_verbose else args.log_level
    os.environ["PARLEY_LOG_LEVEL"] = level  # for the workers, which set up their own
    setup_logging(level, *log_settings(config))
    try:
        check_gateway(config)
        check_database(config.general, _database_setting(config))
        sock = bind(args.host, args.port)
    except StartupError as e:
        print(f"parley: {e}", file=sys.stderr)
        return 2
    print(banner(config, args.host, args.port, args.workers), file=sys.stderr, flush=True)
    for line in config.ignored:  # here, in the parent: once, however many workers
        print(f"ignored: {line}", file=sys.stderr, flush=True)
    for line in redis_notes(config, args.workers):
        print(line, file=sys.stderr, flush=True)
    return _run(args, level, sock, json_logs=config.litellm.json_logs)


def _database_setting(config: Config) -> str:
    """How the database was named, for startup errors."""
    if config.embedded_database:
        return f"{config.path}: the embedded database (master_key without database_url)"
    from_env = os.environ.get("DATABASE_URL") == config.general.database_url
    return f"{config.path}: general_settings.database_url" + (" (from DATABASE_URL)" if from_env else "")


def _run(args: argparse.Namespace, level: str, sock: socket.socket, json_logs: bool) -> int:
    """Serve on the bound socket until stopped; 3 (uvicorn's startup failure) if the app never started."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from parley.server.protocol import EnvelopeHttpToolsProtocol

    _exit_zero_on_stop()
    config = uvicorn.Config(
        "parley.server.factory:app",
        factory=True,
        workers=args.workers,
        loop="uvloop",
        http=EnvelopeHttpToolsProtocol,
        ws="none",  # parley serves no WebSocket route: not importing `websockets` saves ~2.5 MB
        log_level=level,
        log_config=None if json_logs else uvicorn.config.LOGGING_CONFIG,  # None: through ours, as JSON
        access_log=False,
        timeout_graceful_shutdown=max(0.0, args.shutdown_timeout),
        server_header=False,
        date_header=False,
        proxy_headers=False,  # applied inside the app, behind the hot routes (server/factory.py)
    )
    server = uvicorn.Server(config)
    if args.workers > 1:
        Multiprocess(config, sockets=[sock]).run()
        return 0
    config.load_app()
    server.run(sockets=[sock])
    return 0 if server.started else 3


def _check_served(config: Config) -> None:
    """Models the config names outside model_list (a guardrail's llm_check_model) must be served."""
    from parley.router.table import ModelTable

    table = ModelTable(config.deployments, config.model_group_alias)
    for spec in config.guardrails:
        if spec.llm_check_model and not table.resolve(spec.llm_check_model):
            raise ConfigError(
                f"guardrails ({spec.name}): llm_check_model {spec.llm_check_model!r} is not a served model"
            )


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
        *(["  logging:    debug (keys masked)"] if config.litellm.set_verbose else []),
        "  models:",
        *(names or ["    (none)"]),
    ]
    return "\n".join(lines)


def _fake_upstream(args: argparse.Namespace) -> int:
    from parley.testing.fake_upstream import serve_forever

    serve_forever(args.host, args.port)
    return 0
