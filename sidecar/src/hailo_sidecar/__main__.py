"""`python -m hailo_sidecar`: validate the environment, then serve with uvicorn.

Exit status 2 means the configuration is invalid (the message names the variable
and what it accepts); 3 is uvicorn's "application start-up failed" (only with
STRICT_STARTUP=1 and a model that did not get ready); 4 means the backend stayed
wedged or failing for WEDGE_EXIT_AFTER_MS (watchdog.py).
"""

from __future__ import annotations

import contextlib
import logging
import sys

from . import __version__
from .config import Config, ConfigError


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-V"]):
        print(f"hailo-sidecar {__version__}")
        return 0
    if args:
        print(
            "usage: python -m hailo_sidecar [--version]  (configured by environment variables)",
            file=sys.stderr,
        )
        return 2
    try:
        config = Config.from_env()
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"hailo-sidecar: configuration error: {problem}", file=sys.stderr)
        return 2
    level = "DEBUG" if config.log_level == "trace" else config.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger(__name__).info(
        "hailo-sidecar %s: INFER_MODE=%s on %s:%d",
        __version__,
        config.infer_mode,
        config.host,
        config.port,
    )

    from .app import create_app
    from .http_server import build_server

    server = build_server(create_app(config), config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        return 3  # uvicorn's STARTUP_FAILURE: the lifespan failed (STRICT_STARTUP)
    return 0


if __name__ == "__main__":
    sys.exit(main())
