"""``rearguard serve``: the HTTP intake for Alertmanager webhooks, native incident events and
Slack's approval buttons, and (unless ``--no-scheduler``) the drill scheduler. It also runs
the commands the ``rearguard`` command of the same home hands it (``incident open``,
``playbook run``, ``drills run``, ``approve``; see :mod:`rearguard.flows.cli.handoff`)."""

from __future__ import annotations

import dataclasses
import errno
import os
import signal
import socket
import threading
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rearguard.flows.cli.context import err, invocation, runtime
from rearguard.flows.intake.published import is_loopback
from rearguard.models.errors import ConfigurationError, OperationFailed

if TYPE_CHECKING:
    from rearguard.flows.asgi_replay import ASGIApp
    from rearguard.models.config.intake import IntakeSettings


def check_exposure(settings: IntakeSettings) -> None:
    """Refuse an intake that anyone could post to.

    Raises:
        ConfigurationError: auth is off, or the metrics public, on a non-loopback address; or
            auth is required with no token.
    """
    if settings.auth == "off" and not is_loopback(settings.host):
        raise ConfigurationError(
            f"intake auth is off but it would listen on {settings.host}, not loopback",
            hint="set REARGUARD_INTAKE_TOKENS, or bind to 127.0.0.1",
        )
    if settings.metrics_public and not is_loopback(settings.host):
        raise ConfigurationError(
            f"metrics_public would serve /metrics to anyone on {settings.host}, not loopback",
            hint="scrape with a read token (REARGUARD_INTAKE_TOKENS), or bind to 127.0.0.1",
        )
    if settings.auth == "required" and not settings.tokens:
        raise ConfigurationError(
            "the intake requires a bearer token and none is set",
            hint='set REARGUARD_INTAKE_TOKENS (comma-separated), or auth = "off" on loopback',
        )


def bind_listener(*, host: str, port: int) -> socket.socket:
    """Bind the intake's socket (uvicorn listens on it once the app has started).

    Bound before anything else starts, so that an address that cannot be had (a name that does
    not resolve, an address not on this machine, a port in use) is one line at once, not an
    error after the Prefect server and the playbook process have started.

    Raises:
        ConfigurationError: the address cannot be bound; says why.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as exc:
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}",
            hint="check --host or [intake] host",
        ) from None
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError as exc:
        listener.close()
        in_use = exc.errno == errno.EADDRINUSE
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="another process (a serve already running?) has the port; see `rearguard status`"
            if in_use
            else "check --host/--port or [intake] host/port",
        ) from None
    return listener


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to bind (default 127.0.0.1).")] = None,
    port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Port (default 8088; 0: any free).")
    ] = None,
    no_scheduler: Annotated[
        bool,
        typer.Option(
            "--no-scheduler",
            help="Do not run the drill scheduler here (`rearguard scheduler` runs it elsewhere).",
        ),
    ] = False,
    background: Annotated[
        bool,
        typer.Option(
            "--background",
            hidden=True,
            help="Run as the background host a command starts (see "
            "rearguard.flows.cli.background): the hand-off only, on a free loopback port, no "
            "drill scheduler; stop after [prefect] idle_stop_s unused.",
        ),
    ] = False,
) -> None:
    """Run the HTTP intake and the drill scheduler until SIGINT/SIGTERM; start a local Prefect
    server if none is set."""
    rt = runtime(ctx)
    idle_stop_s = rt.settings.prefect.idle_stop_s if background else 0.0
    if background:
        if idle_stop_s <= 0:
            raise ConfigurationError(
                "no background host: [prefect] idle_stop_s is 0",
                hint="run `rearguard serve`, or set [prefect] idle_stop_s",
            )
        host, port, no_scheduler = "127.0.0.1", 0, True
    intake = rt.settings.intake.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    )
    if not background:  # the background host's app has no intake routes
        check_exposure(intake)
    listener = bind_listener(host=intake.host, port=intake.port)
    from rearguard.flows.prefect_infra.api_url import configured_api_url  # lazy: CLI start-up
    from rearguard.flows.run_playbook import (  # lazy: CLI start-up
        configure_prefect,
        run_records_off_the_terminal,
    )

    configure_prefect()
    with ExitStack() as stack:
        stack.callback(listener.close)
        if not no_scheduler:  # drills run in this process; their playbooks log as the CLI's
            stack.enter_context(run_records_off_the_terminal())
        from rearguard.flows.cli.hosted import HostedCommands  # lazy: CLI start-up
        from rearguard.flows.intake.playbook_process import (  # lazy: CLI start-up
            PREFECT_SERVER_NICENESS,
            PlaybookProcess,
        )

        prefect = None
        if not configured_api_url():
            from rearguard.flows.prefect_infra.server import (  # lazy: CLI start-up
                local_prefect_server,
            )

            err.print("[dim]no PREFECT_API_URL: starting a local Prefect server…[/]")
            # It works for the playbooks: it runs below them, and below the intake.
            prefect = stack.enter_context(
                local_prefect_server(
                    home=rt.settings.home,
                    niceness=PREFECT_SERVER_NICENESS,
                    idle_stop_s=idle_stop_s or None,
                )
            )
        # The playbook process starts while the Prefect server does (its imports need none;
        # its warm-up waits for the server): a second or two sooner ready. The app's lifespan
        # stops it; so does leaving this block first.
        playbooks = PlaybookProcess(
            dataclasses.replace(rt.settings, intake=intake),
            workers=intake.playbook_workers,
            host=HostedCommands(),
            starting_server=prefect is not None,
        )
        stack.callback(playbooks.stop, wait=False)
        if prefect is not None:
            prefect.wait_ready()
            err.print(f"[dim]Prefect server at {prefect.api_url}[/]")
        import uvicorn  # lazy: CLI start-up

        from rearguard.flows.cli.handoff import fingerprint  # lazy: CLI start-up
        from rearguard.flows.intake.app import create_app  # lazy: CLI start-up
        from rearguard.flows.intake.published import (  # lazy: CLI start-up
            PublishedServe,
            new_instance_id,
            new_token,
            publish,
            reachable_url,
            unpublish,
        )
        from rearguard.flows.intake.routes import HandOff  # lazy: CLI start-up
        from rearguard.flows.intake.server import (  # lazy: CLI start-up
            IntakeServer,
            bounded_http_protocol,
        )
        from rearguard.flows.prefect_infra.idle import (  # lazy: CLI start-up
            IdleWatch,
            stop_when_idle,
        )
        from rearguard.models.audit.terminal import safe_log_config  # lazy: CLI start-up

        instance, token = new_instance_id(), new_token()
        given = invocation(ctx)
        retired = threading.Event()

        def retire() -> None:
            # Withdrawn before the refusal is answered: the command starts a new host.
            unpublish(rt.settings.home, instance)
            retired.set()

        app: ASGIApp = create_app(
            rt,
            intake=intake,
            schedule_drills=not no_scheduler,
            instance=instance,
            # The commands it runs for the CLI: those whose settings would be the same as
            # its own.
            handoff=HandOff(
                token=token,
                fingerprint=fingerprint(
                    home=str(given.home) if given.home else None,
                    database_url=given.database_url,
                    environ=os.environ,
                    cwd=Path.cwd(),
                ),
                retire=retire if background else None,
            ),
            intake_routes=not background,
            playbooks=playbooks,
        )
        if background:
            app = IdleWatch(app, retired=retired)
            threading.Thread(
                target=stop_when_idle,
                kwargs={
                    "watch": app,
                    "home": rt.settings.home,
                    "idle_stop_s": idle_stop_s,
                    "withdrawn": lambda: unpublish(rt.settings.home, instance),
                },
                daemon=True,
            ).start()
        config = uvicorn.Config(
            app,
            log_level="warning",
            # Every line it logs (ours and uvicorn's) redacted and free of terminal escapes.
            log_config=safe_log_config(),
            access_log=False,
            # Headers bounded in size and time whichever parser uvicorn picks; h11's own
            # buffer limit stays above ours, so the answer is ours (431) either way. Bodies
            # over the limit are refused by the app.
            http=bounded_http_protocol(
                max_header_bytes=intake.max_header_bytes,
                header_timeout_s=intake.header_timeout_s,
            ),
            h11_max_incomplete_event_size=4 * intake.max_header_bytes,
        )
        bare = intake.host.strip("[]")
        shown_host = f"[{bare}]" if ":" in bare else bare
        port = listener.getsockname()[1]
        listening = (
            f"rearguard background host listening on http://{shown_host}:{port} (commands "
            f"only); it stops after {idle_stop_s:g} s unused"
            if background
            else f"rearguard intake listening on http://{shown_host}:{port}; drill scheduler "
            + ("off" if no_scheduler else "running")
        )
        served = PublishedServe(
            url=reachable_url(intake.host, port),
            instance=instance,
            pid=os.getpid(),
            token=token,
            idle_stop_s=idle_stop_s,
        )

        def started() -> None:
            # Published once it answers, so that `rearguard status` names this serve.
            publish(rt.settings.home, served)
            err.print(listening)

        stack.callback(unpublish, rt.settings.home, instance)
        server = IntakeServer(config, on_started=started)
        err.print("[dim]starting the intake…[/]")
        # uvicorn handles SIGINT/SIGTERM: it stops accepting, finishes requests, then the
        # app's lifespan records what is queued and lets running playbooks end. Afterwards it
        # re-raises the signal to the handler it found: for SIGTERM, a graceful stop is a
        # success (exit 0), not a death by signal.
        signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
        server.run(sockets=[listener])
        if not server.started:
            raise OperationFailed("the intake did not start", hint="the lines above say why")
