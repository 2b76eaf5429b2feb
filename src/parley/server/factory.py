"""The app factory uvicorn imports in each worker; the CLI passes its choices through the env."""

from __future__ import annotations

import logging
import os

from parley.config import Config, load_config, quick_config
from parley.core.loopwatch import watch_from_env
from parley.core.runtime import HeapTrimmer, tune_gc
from parley.core.tasks import Tasks
from parley.logs import setup_logging
from parley.server.api import ApiRoutes
from parley.server.app import create_app
from parley.server.hot import HotRoutes

CONFIG_ENV = "PARLEY_CONFIG"
MODEL_ENV = "PARLEY_QUICK_MODEL"

log = logging.getLogger("parley")


def config_from_env() -> Config:
    model = os.environ.get(MODEL_ENV)
    config = quick_config(model) if model else load_config(os.environ[CONFIG_ENV])
    os.environ.update(config.environment)  # litellm's environment_variables
    return config


def log_settings(config: Config) -> tuple[bool, list[str]]:
    """(JSON lines?, the secrets to mask) for `setup_logging`."""
    secrets = [config.general.master_key or "", config.passthrough.api_key or ""]
    secrets += [dep.api_key or "" for dep in config.deployments]
    for url in (config.general.database_url, config.redis.url):
        if url and "@" in url:
            secrets.append(url.split("://", 1)[-1].split("@", 1)[0].partition(":")[2])
    return config.litellm.json_logs, [s for s in secrets if s]


def app() -> HotRoutes:
    """The served app: the hot routes dispatched directly, the rest by Starlette."""
    config = config_from_env()
    setup_logging(os.environ.get("PARLEY_LOG_LEVEL", "info"), *log_settings(config))
    application = create_app(config)
    gateway = application.state.gateway
    server_runtime(gateway.tasks)
    return HotRoutes(application, ApiRoutes(gateway))


def server_runtime(tasks: Tasks) -> None:
    """Once every start-up hook has run: GC tuned for a server, the heap trimmed now and then, and
    the loop watch if asked for."""
    trimmer = HeapTrimmer.from_env()

    async def after_startup() -> None:
        log.debug(tune_gc())
        log.debug(trimmer.start())
        watch = watch_from_env()
        if watch is not None:

            async def stop_watch() -> None:
                watch.stop()

            tasks.on_shutdown(stop_watch)

    async def stop_trimmer() -> None:
        trimmer.stop()

    tasks.on_startup(after_startup)
    tasks.on_shutdown(stop_trimmer)
