"""uvicorn's server for the intake, which says so once it accepts connections."""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvicorn


class IntakeServer(uvicorn.Server):
    """A uvicorn server that calls ``on_started`` once the app's start-up (the playbook
    process's warm-up) is done and its sockets accept connections.

    Args:
        config: uvicorn's configuration.
        on_started: called once, when the intake answers.
    """

    def __init__(self, config: uvicorn.Config, *, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does, then say so."""
        await super().startup(sockets=sockets)  # exits the process if the app cannot start
        self._on_started()
