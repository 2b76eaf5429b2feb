"""The app factory uvicorn imports in each worker; the CLI passes its choices through the env."""

from __future__ import annotations

import logging
import os

from parley.config import Config, load_config, quick_config
from parley.core.loopwatch import watch_from_env
from parley.core.runtime import tune_gc
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
    if model:
        return quick_config(model)
    return load_config(os.environ[CONFIG_ENV])


def app() -> HotRoutes:
    """The served app: the hot routes dispatched directly, the rest by Starlette."""
    setup_logging(os.environ.get("PARLEY_LOG_LEVEL", "info"))
    application = create_app(config_from_env())
    gateway = application.state.gateway
    server_runtime(gateway.tasks)
    return HotRoutes(application, ApiRoutes(gateway))


def server_runtime(tasks: Tasks) -> None:
    """Once every start-up hook has run: GC tuned for a server, and the loop watch if asked for."""

    async def after_startup() -> None:
        log.debug(tune_gc())
        watch = watch_from_env()
        if watch is not None:

            async def stop_watch() -> None:
                watch.stop()

            tasks.on_shutdown(stop_watch)

    tasks.on_startup(after_startup)
