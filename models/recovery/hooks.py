"""Hooks: outside commands a playbook runs (rotate credentials, retrain, freeze ingestion).

A hook is configured in ``rearguard.toml`` globally (``[hooks.NAME]``, or ``[[hooks.NAME]]``
for several commands run in order) or per asset (``[assets.ASSET.hooks.NAME]``, which replaces
the global hook of that name). Each command is an argv list run without a shell, with a
timeout after which its whole process group is killed, and an environment made of the basics
(``PATH``, ``HOME``, locale), the variable names in its ``env`` allow-list, and rearguard's own
``REARGUARD_INCIDENT_ID``, ``REARGUARD_INCIDENT_TYPE``, ``REARGUARD_SEVERITY``,
``REARGUARD_HOOK``, ``REARGUARD_ASSET`` plus what the playbook adds (e.g. the dataset to
retrain on). Every run is a timeline event with its exit code, duration and the redacted tail
of its output; a command that fails or hangs fails the step with that evidence.

A hook may instead name a Prefect deployment (``deployment = "flow/name"``): its flow run is
created with the same environment as job variables (a process worker's flow run sees it as its
environment), waited for up to the timeout (then cancelled), and recorded the same way, its
final state standing for the exit code. ``models`` never imports Prefect: the orchestration
layer lends the function that runs deployments on the runtime (``Runtime.hook_deployments``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rearguard.models.audit.chain import append_event
from rearguard.models.audit.redaction import redact_text
from rearguard.models.commands import CommandRun, base_env, run_argv
from rearguard.models.config.hooks import HookCommand
from rearguard.models.db.tables import Incident
from rearguard.models.enums import EventKind
from rearguard.models.errors import ConfigurationError, OperationFailed
from rearguard.models.incidents.service import get_incident, update_state
from rearguard.models.recovery.results import HookResult, HookRunRecord, Skipped
from rearguard.models.runtime import DeploymentRunner, Runtime

_EVIDENCE_CHARS = 300


def _run_deployment(
    runner: DeploymentRunner | None, name: str, *, env: Mapping[str, str], timeout_s: float
) -> CommandRun:
    if runner is None:
        raise ConfigurationError(
            f"hook deployment {name!r} can only run inside a playbook",
            hint="deployment hooks run from playbooks under Prefect",
        )
    return runner(name, env=env, timeout_s=timeout_s)


def hook_env(
    command: HookCommand, *, incident: Incident, hook: str, asset: str | None, extra: dict[str, str]
) -> dict[str, str]:
    """The whole environment of one hook command."""
    env = base_env(command.env)
    env.update(
        REARGUARD_INCIDENT_ID=str(incident.id),
        REARGUARD_INCIDENT_TYPE=incident.type,
        REARGUARD_SEVERITY=str(incident.severity),
        REARGUARD_HOOK=hook,
        REARGUARD_ASSET=asset or "",
    )
    env.update(extra)
    if str(incident.source) == "drill":
        env["REARGUARD_DRILL"] = "1"  # a drill's hook must not act on production
    return env


def run_hook_command(
    command: HookCommand,
    *,
    incident: Incident,
    hook: str,
    index: int,
    asset: str | None,
    extra_env: dict[str, str],
    deployments: DeploymentRunner | None,
) -> HookRunRecord:
    """Run one hook command and describe how it ended; the output tail is redacted.

    ``deployments`` runs a command that names a Prefect deployment (None: it fails). The
    credentials it names count as rotated only when it succeeded.
    """
    env = hook_env(command, incident=incident, hook=hook, asset=asset, extra=extra_env)
    if command.argv:
        run = run_argv(command.argv, env=env, timeout_s=command.timeout_s)
        # The timeout killed its process group: say so, the reader must not wonder if it runs.
        killed = " and was killed"
    else:
        assert command.deployment is not None
        # Only what the hook is given, not the environment the playbook runs in.
        given = {k: v for k, v in env.items() if k.startswith("REARGUARD_") or k in command.env}
        run = _run_deployment(
            deployments, command.deployment, env=given, timeout_s=command.timeout_s
        )
        killed = " and its flow run was cancelled"
    reason = run.reason + (killed if run.reason.startswith("timed out") else "")
    return HookRunRecord(
        hook=hook,
        index=index,
        command=command.label,
        ok=run.ok,
        exit_code=run.exit_code,
        duration_s=round(run.duration_s, 3),
        output_tail=redact_text(run.output_tail),
        reason=reason,
        credentials=tuple(command.credentials) if run.ok else (),
    )


def run_hook(
    *,
    runtime: Runtime,
    incident_id: int,
    hook: str,
    asset: str | None = None,
    env: dict[str, str] | None = None,
    required: bool = False,
) -> HookResult | Skipped:
    """Run every command of a configured hook, in order, each recorded as a timeline event.

    Idempotent: commands that already succeeded for this incident (recorded in its state) are
    not run again on a rerun; a command that failed is.

    Args:
        runtime: the process runtime.
        incident_id: the incident the hook acts for.
        hook: the hook's name (``rotate_credentials``, ``retrain``, ``freeze_ingestion``...).
        asset: the asset whose per-asset hooks apply (default: the incident's asset).
        env: further ``REARGUARD_*`` variables for the commands.
        required: when True, a hook that is not configured fails the step.

    Returns:
        How each command ended and the credentials rotated, or skipped when the hook is not
        configured and not required.

    Raises:
        ConfigurationError: the hook is required and not configured.
        OperationFailed: a command failed or timed out; its evidence is in the message.
    """
    extra = {name: str(value) for name, value in (env or {}).items()}
    if any(not name.startswith("REARGUARD_") for name in extra):
        raise ConfigurationError("a playbook may only add REARGUARD_* variables to a hook")
    with runtime.db.read_session() as session:
        incident = get_incident(session=session, incident_id=incident_id)
    target = asset or incident.asset_name
    commands = runtime.settings.hooks.commands(hook, asset=target)
    if not commands:
        if required:
            where = f"[assets.{target}.hooks.{hook}] or " if target else ""
            raise ConfigurationError(
                f"no {hook!r} hook is configured" + (f" for {target}" if target else ""),
                hint=f"add {where}[hooks.{hook}] with argv = [...] to rearguard.toml",
            )
        return Skipped(skipped=f"no {hook!r} hook is configured", hook=hook, asset=target)
    key = f"{hook}:{target or ''}"
    done: dict[str, Any] = dict(incident.state.get("hooks", {}).get(key, {}))
    runs: list[HookRunRecord] = []
    for index, command in enumerate(commands):
        if str(index) in done:
            earlier = HookRunRecord.model_validate(done[str(index)])
            runs.append(earlier.model_copy(update={"already_ran": True}))
            continue
        result = run_hook_command(
            command,
            incident=incident,
            hook=hook,
            index=index,
            asset=target,
            extra_env=extra,
            deployments=runtime.hook_deployments,
        )
        recorded = result.recorded()
        with runtime.db.session() as session:
            append_event(
                session,
                kind=EventKind.OUTCOME,
                action=f"hook.{hook}",
                actor=f"playbook:{incident.type}",
                incident_id=incident_id,
                asset=target,
                data=recorded,
            )
            if result.ok:
                current = get_incident(session=session, incident_id=incident_id)
                hooks = dict(current.state.get("hooks", {}))
                hooks[key] = {**hooks.get(key, {}), str(index): recorded}
                update_state(session=session, incident=current, hooks=hooks)
        if not result.ok:
            raise OperationFailed(
                f"hook {hook}[{index}] ({result.command}) {result.reason}"
                f" after {result.duration_s:.1f}s: {result.output_tail[-_EVIDENCE_CHARS:].strip()}",
                hint="see the hook event in `rearguard incident show`",
            )
        runs.append(result)
    return HookResult(
        hook=hook,
        asset=target,
        runs=tuple(runs),
        credentials=tuple(name for run in runs for name in run.credentials),
    )
