"""`python -m hailo_sidecar`: validate the environment, then serve with uvicorn.

Exit status 2 means the configuration is invalid (the message names the variable
and what it accepts); 3 is uvicorn's "application start-up failed" (only with
STRICT_STARTUP=1 and a model that did not get ready).
"""

from __future__ import annotations

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

    import uvicorn

    from .app import create_app

    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        log_config=None,  # the root logger configured above
        access_log=config.log_level in ("debug", "trace"),
        loop="auto",  # uvloop when installed
        http="auto",  # httptools when installed
        server_header=False,
        lifespan="on",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
