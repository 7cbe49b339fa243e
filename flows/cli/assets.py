"""``rearguard assets``: register, approve, promote, release, retire, list, show and verify
versions, and set an asset's check."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from rearguard.flows.cli.context import (
    TIME_FORMAT,
    JsonOption,
    byte_progress,
    emit_json,
    err,
    invocation,
    label_column,
    one_line,
    out,
    runtime,
    status_style,
    styled,
    table,
    text_column,
)
from rearguard.flows.cli.people import ByOption, person
from rearguard.models.enums import AssetKind, VersionStatus
from rearguard.models.errors import EXIT_INTEGRITY, UsageError

if TYPE_CHECKING:
    from rearguard.models.assets.lifecycle import StatusChange
    from rearguard.models.integrity.sweep import SweepReport
    from rearguard.models.runtime import Runtime
    from rearguard.models.schemas import RescanRead, ScanRecordRead

app = typer.Typer(help="The asset registry: versions, known-good baselines, production alias.")


def _source_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return 0


@app.command("register")
def register(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Asset name.")],
    path: Annotated[Path, typer.Argument(help="File or directory to register.")],
    version: Annotated[str, typer.Option("--version", help="Label of the new version.")],
    kind: Annotated[
        AssetKind | None, typer.Option(help="Asset kind; required the first time.")
    ] = None,
    trained_on: Annotated[
        str | None, typer.Option(help="Dataset version it was trained on, as DATASET@LABEL.")
    ] = None,
    validate: Annotated[
        str | None,
        typer.Option(help='Validation command for this asset, e.g. "python check.py" (no shell).'),
    ] = None,
    signature: Annotated[
        Path | None,
        typer.Option(
            help="An OpenSSF model signature (OMS bundle) of the files, if the directory has "
            "no model.sig of its own."
        ),
    ] = None,
    by: ByOption = None,
    json_output: JsonOption = False,
) -> None:
    """Copy a file or directory into the store as a new candidate version.

    Relative paths in --validate are made absolute here (the check later runs from wherever
    the playbook runs); one that does not exist is refused.

    Every file is scanned by content first. A version with a finding that blocks trust is still
    registered, as suspect (for forensics), and can never be approved: the findings are listed
    and the exit status is 3.

    A directory's model.sig (or --signature) is kept with the version, outside its manifest,
    and checked against [signing]: a signature for other files, or one that does not verify,
    also registers the version as suspect (exit 3); a malformed one registers nothing (exit 2).
    """
    from rearguard.models.assets.checks import resolve_command  # lazy: CLI start-up
    from rearguard.models.assets.versions import register_version  # lazy: CLI start-up
    from rearguard.models.integrity.scan.policy import policy_for  # lazy: CLI start-up
    from rearguard.models.integrity.signatures import signing_policy  # lazy: CLI start-up

    rt = runtime(ctx)
    if validate is not None:
        validate = resolve_command(validate, cwd=Path.cwd())
    with byte_progress(f"registering {name}@{version}", _source_size(path)) as progress:
        result = register_version(
            db=rt.db,
            registry=rt.registry,
            name=name,
            source=path,
            label=version,
            kind=kind,
            actor=person(ctx, by),
            trained_on=trained_on,
            validate_command=validate,
            progress=progress,
            policy=policy_for(rt.settings, name),
            signature=signature,
            signing=signing_policy(rt.settings, name),
        )
    findings = result.scan.findings if result.scan else []
    verdict = result.signature
    if json_output:
        emit_json(
            {
                "asset": result.asset,
                "version": result.label,
                "kind": result.kind,
                "digest": result.digest,
                "status": str(result.status),
                "files": [vars(e) for e in result.files],
                "scan": result.scan.as_dict() if result.scan else None,
                "signature": verdict.record() if verdict else None,
            }
        )
    else:
        size = sum(e.size for e in result.files)
        out.print(
            f"registered {escape(result.asset)}@{escape(result.label)} ({result.kind}): "
            f"{len(result.files)} file(s), {size} bytes, digest {result.digest[:16]}…, "
            f"status {result.status}"
        )
        for finding in findings:
            err.print(escape(finding.describe()), soft_wrap=True)
        if verdict is not None:
            (err if verdict.blocks else out).print(escape(verdict.describe()), soft_wrap=True)
    if findings:
        err.print(
            f"[red]{len(findings)} scan finding(s) block trust[/]: registered as suspect, "
            "it cannot be approved or promoted"
        )
    if verdict is not None and verdict.suspicious:
        err.print("[red]the signature does not hold[/]: registered as suspect")
    if findings or (verdict is not None and verdict.suspicious):
        raise typer.Exit(EXIT_INTEGRITY)


@app.command("approve")
def approve(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Asset name.")],
    label: Annotated[str, typer.Argument(help="Version label.")],
    by: ByOption = None,
) -> None:
    """Mark a version known-good, after re-verifying its files and scanning their content.

    Where the asset requires a signature ([signing]), an unsigned or untrusted version is
    refused (exit 3, naming whose signature is expected)."""
    from rearguard.models.assets.versions import approve_version  # lazy: CLI start-up
    from rearguard.models.integrity.scan.policy import policy_for  # lazy: CLI start-up
    from rearguard.models.integrity.signatures import signing_policy  # lazy: CLI start-up

    rt = runtime(ctx)
    approver = person(ctx, by)
    approve_version(
        db=rt.db,
        registry=rt.registry,
        name=name,
        label=label,
        by=approver,
        workers=rt.settings.playbooks.hash_workers,
        policy=policy_for(rt.settings, name),
        signing=signing_policy(rt.settings, name),
    )
    out.print(f"{escape(name)}@{escape(label)} is known_good (approved by {escape(approver)})")


@app.command("promote")
def promote(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Asset name.")],
    label: Annotated[str, typer.Argument(help="Version label.")],
    by: ByOption = None,
) -> None:
    """Point the production alias at a version, after re-verifying its files, content and
    signature."""
    from rearguard.models.assets.versions import promote_version  # lazy: CLI start-up
    from rearguard.models.integrity.scan.policy import policy_for  # lazy: CLI start-up
    from rearguard.models.integrity.signatures import signing_policy  # lazy: CLI start-up

    rt = runtime(ctx)
    alias = rt.settings.registry.alias
    before = promote_version(
        db=rt.db,
        registry=rt.registry,
        name=name,
        label=label,
        alias=alias,
        actor=person(ctx, by),
        workers=rt.settings.playbooks.hash_workers,
        policy=policy_for(rt.settings, name),
        signing=signing_policy(rt.settings, name),
    )
    location = rt.registry.alias_location(asset=name, alias=alias)
    out.print(f"{escape(name)} {alias}: {before or '(none)'} -> {escape(label)}  ({location})")


@app.command("sign")
def sign(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Asset name.")],
    label: Annotated[str, typer.Argument(help="Version label.")],
    key: Annotated[
        Path,
        typer.Option(
            "--key", help="ECDSA private key (PEM, P-256/P-384/P-521), readable by you alone."
        ),
    ],
    replace: Annotated[
        bool, typer.Option("--replace", help="Sign a version that carries a signature already.")
    ] = False,
    by: ByOption = None,
    json_output: JsonOption = False,
) -> None:
    """Sign a registered version (OpenSSF model signing) and keep the bundle as its model.sig.

    The version is re-verified first, so only the bytes rearguard recorded are signed. Whether
    [signing] trusts the key is reported: a signature it does not trust is kept but does not
    meet a requirement. Local store only (an MLflow model version cannot change).
    """
    from rearguard.models.assets.signing import sign_version  # lazy: CLI start-up
    from rearguard.models.integrity.scan.policy import policy_for  # lazy: CLI start-up
    from rearguard.models.integrity.signatures import signing_policy  # lazy: CLI start-up

    rt = runtime(ctx)
    verdict = sign_version(
        db=rt.db,
        registry=rt.registry,
        name=name,
        label=label,
        key=key,
        by=person(ctx, by),
        signing=signing_policy(rt.settings, name),
        replace=replace,
        workers=rt.settings.playbooks.hash_workers,
        policy=policy_for(rt.settings, name),
    )
    if json_output:
        emit_json({"asset": name, "version": label, **verdict.record()})
        return
    out.print(f"signed {escape(name)}@{escape(label)}: {escape(verdict.describe())}")
    if verdict.result != "verified":
        err.print(
            "[yellow][signing] does not trust this key[/]: add its public key to "
            "trusted_public_keys for the signature to count"
        )


ReasonOption = Annotated[str, typer.Option("--reason", help="Why; kept in the timeline.")]


def _print_change(change: StatusChange, json_output: bool, by: str) -> None:
    if json_output:
        emit_json(vars(change))
        return
    if not change.changed:
        out.print(f"{escape(change.asset)}@{escape(change.label)} was already {change.after}")
        return
    out.print(
        f"{escape(change.asset)}@{escape(change.label)}: [{status_style(change.before)}]"
        f"{change.before}[/] -> [{status_style(change.after)}]{change.after}[/] "
        f"(by {escape(by)})"
    )


@app.command("release")
def release(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Asset name.")],
    label: Annotated[str, typer.Argument(help="Version label.")],
    reason: ReasonOption,
    by: ByOption = None,
    json_output: JsonOption = False,
) -> None:
    """Return a quarantined or suspect version (a false alarm) to candidate, after re-verifying
    its files against its manifest; exit 3 if they no longer match. Approving it again is a
    separate step (`assets approve`)."""
    from rearguard.models.assets.lifecycle import release_version  # lazy: CLI start-up

    rt = runtime(ctx)
    who = person(ctx, by)
    change = release_version(
        db=rt.db,
        registry=rt.registry,
        name=name,
        label=label,
        by=who,
        reason=reason,
        workers=rt.settings.playbooks.hash_workers,
    )
    _print_change(change, json_output, who)
    if not json_output:
        err.print(
            f"approve it to trust it again: rearguard assets approve {escape(name)} "
            f"{escape(label)} --by NAME"
        )


@app.command("retire")
def retire(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Asset name.")],
    label: Annotated[str, typer.Argument(help="Version label.")],
    reason: ReasonOption,
    by: ByOption = None,
    json_output: JsonOption = False,
) -> None:
    """Retire a version: it is never restored or promoted again (not the production version)."""
    from rearguard.models.assets.lifecycle import retire_version  # lazy: CLI start-up

    rt = runtime(ctx)
    who = person(ctx, by)
    change = retire_version(
        db=rt.db,
        registry=rt.registry,
        name=name,
        label=label,
        by=who,
        reason=reason,
        alias=rt.settings.registry.alias,
    )
    _print_change(change, json_output, who)


@app.command("check")
def check_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Asset name.")],
    set_: Annotated[
        str | None,
        typer.Option(
            "--set", help='The validation command, e.g. "python /srv/checks/smoke.py" (no shell).'
        ),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the asset's check.")] = False,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Why; kept in the timeline.")
    ] = None,
    by: ByOption = None,
    json_output: JsonOption = False,
) -> None:
    """Set or clear an asset's validation command without registering a version.

    Relative paths are made absolute from the current directory (one that does not exist is
    refused). With neither option, show the command.
    """
    from rearguard.models.assets.checks import resolve_command  # lazy: CLI start-up
    from rearguard.models.assets.lifecycle import set_check  # lazy: CLI start-up
    from rearguard.models.assets.versions import get_asset  # lazy: CLI start-up

    rt = runtime(ctx)
    if set_ is not None and clear:
        raise UsageError("give --set COMMAND or --clear, not both")
    if set_ is None and not clear:
        with rt.db.read_session() as session:
            current = get_asset(session=session, name=name).validate_command
        if json_output:
            emit_json({"asset": name, "validate_command": current})
        else:
            out.print(f"{escape(name)}: {escape(current) if current else '(no check)'}")
        return
    command = resolve_command(set_, cwd=Path.cwd()) if set_ is not None else None
    before = set_check(db=rt.db, name=name, command=command, by=person(ctx, by), reason=reason)
    if json_output:
        emit_json({"asset": name, "validate_command": command, "before": before})
        return
    out.print(
        f"{escape(name)} check: {escape(before or '(none)')} -> {escape(command or '(none)')}"
    )


@app.command("import")
def import_(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="MLflow registered model (becomes the asset).")],
    kind: Annotated[
        AssetKind | None,
        typer.Option(help="Asset kind (default: the rearguard.kind tag, else model)."),
    ] = None,
    status: Annotated[
        VersionStatus,
        typer.Option(help="Status of the imported versions: candidate, or known_good (--by)."),
    ] = VersionStatus.CANDIDATE,
    by: Annotated[
        str | None,
        typer.Option(help="Who imports (default: you); for known_good, who approves them."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Adopt the versions of an MLflow registered model that rearguard does not know yet.

    Each one's artifacts are hashed where MLflow stores them, as its baseline; the model's
    production alias becomes the asset's. Versions without a rearguard.label tag are
    labelled by their version number.
    """
    from rearguard.models.assets.mlflow_import import import_versions  # lazy: CLI start-up
    from rearguard.models.integrity.scan.policy import policy_for  # lazy: CLI start-up
    from rearguard.models.integrity.signatures import signing_policy  # lazy: CLI start-up

    rt = runtime(ctx)
    if status == VersionStatus.KNOWN_GOOD and not by:
        raise UsageError("importing versions as known_good needs the approver's name (--by)")
    actor = person(ctx, by)
    alias = rt.settings.registry.alias
    adoption = import_versions(
        db=rt.db,
        registry=rt.registry,
        name=name,
        kind=kind,
        actor=actor,
        alias=alias,
        status=status,
        workers=rt.settings.playbooks.hash_workers,
        policy=policy_for(rt.settings, name),
        signing=signing_policy(rt.settings, name),
    )
    if json_output:
        emit_json(vars(adoption))
        return
    for version in adoption.imported:
        out.print(
            f"imported {escape(name)}@{escape(str(version['version']))} (MLflow version "
            f"{version['mlflow_version']}): {version['files']} file(s), digest "
            f"{str(version['digest'])[:16]}…, status {version['status']}"
        )
    if adoption.known:
        out.print(f"already known: {escape(', '.join(adoption.known))}")
    out.print(f"{escape(name)} ({adoption.kind}) {alias}: {escape(adoption.alias or '(none)')}")


@app.command("list")
def list_(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """List assets: where production points and whether that version is trusted (and why
    not), what it was trained on, how many versions there are."""
    from rearguard.models.assets.versions import summarize_assets  # lazy: CLI start-up

    rt = runtime(ctx)
    alias = rt.settings.registry.alias
    with rt.db.read_session() as session:
        rows = summarize_assets(session=session, alias=alias)
    if json_output:
        emit_json([r.json_value() for r in rows])
        return
    if not rows:
        err.print("no assets registered yet; start with `rearguard assets register`")
        return
    shown = table(
        text_column("asset", min_width=10),
        label_column("kind"),
        label_column(alias),
        label_column("status"),
        text_column("trained on"),
        label_column("versions", justify="right"),
        label_column("known-good", justify="right"),
    )
    for row in rows:
        shown.add_row(
            one_line(row.name),
            str(row.kind),
            escape(row.production or "-"),
            styled(row.production_status or "-"),
            one_line(row.trained_on or "-"),
            str(row.versions),
            str(row.known_good),
        )
    out.print(shown)
    for row in rows:
        if row.production_status not in (None, VersionStatus.KNOWN_GOOD) and row.production_reason:
            out.print(
                f"{escape(row.name)}: {alias} serves {escape(row.production or '')}, "
                f"{row.production_status}: {escape(row.production_reason)}"
            )


@app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Asset name.")],
    json_output: JsonOption = False,
) -> None:
    """Show an asset's versions: statuses and why, lineage, digests, approvals, and which one
    is in production."""
    from rearguard.models.assets.versions import describe_asset, get_asset  # lazy: CLI start-up

    rt = runtime(ctx)
    alias = rt.settings.registry.alias
    with rt.db.read_session() as session:
        described = describe_asset(
            session=session,
            asset=get_asset(session=session, name=name),
            alias=alias,
            alias_location=str(rt.registry.alias_location(asset=name, alias=alias)),
        )
    if json_output:
        emit_json(described.json_value())
        return
    current = described.production
    out.print(
        f"[bold]{escape(name)}[/] ({described.kind}); {alias}: "
        f"[bold]{escape(current or '(none)')}[/] (marked *)"
    )
    if described.validate_command:
        out.print(f"validation: {escape(described.validate_command)}")
    shown = table(
        label_column("version"),
        label_column("status"),
        label_column("registered (UTC)"),
        text_column("approved by"),
        text_column("trained on"),
        label_column("digest"),
        label_column("scan"),
    )
    for v in described.versions:
        shown.add_row(
            escape(v.label) + (" *" if v.label == current else ""),
            styled(v.status),
            v.registered_at.strftime(TIME_FORMAT) if v.registered_at else "",
            one_line(v.approved_by or "-"),
            one_line(v.trained_on or "-"),
            v.digest[:12],
            _scan_cell(v.scan),
        )
    out.print(shown)
    reasons = [v for v in described.versions if v.status_reason]
    if reasons:
        out.print("why:")
    for v in reasons:
        out.print(f"  {escape(v.label)} {styled(v.status)}: {escape(v.status_reason or '')}")
    recorded = [(v.label, v.scan) for v in described.versions if v.scan is not None]
    if recorded:
        out.print("scan records:")
    for label, scan in recorded:
        out.print(f"  {_scan_line(label, scan)}")


def _scan_cell(scan: ScanRecordRead | None) -> str:
    """A version's scan verdict in a table cell (what blocks is in its scan record's line)."""
    if scan is None:
        return "[dim]none[/]"
    return f"[{'green' if scan.verdict == 'clean' else 'red'}]{escape(scan.verdict)}[/]"


def _scan_line(label: str, scan: ScanRecordRead) -> str:
    """A version's scan record in one line: its verdict and findings, what judged it, when,
    and the engines' verdicts."""
    counts = ", ".join(f"{n} {severity}" for severity, n in sorted(scan.counts.items()))
    parts = [
        f"scanner {scan.scanner_version}",
        f"allow-list {scan.allow_fingerprint[:12]}",
        f"{scan.scanned_during} {scan.scanned_at.isoformat()[:19]}",
    ]
    if scan.allowed:
        parts.append(f"{scan.allowed} finding(s) allowed")
    parts += [f"{e.engine} {e.version or '-'}: {e.verdict}" for e in scan.engines]
    verdict = scan.verdict + (f" ({counts})" if counts else "")
    return escape(f"{label}: {verdict}; " + "; ".join(parts))


@app.command("verify")
def verify(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Asset name (default: every asset).")] = None,
    json_output: JsonOption = False,
) -> None:
    """Re-hash versions against their manifests and scan every file's content (pickles, containers).

    A version's signature (model.sig) is checked too, and one is required where [signing] says
    so. Exits 3 when any version fails, or when a version's or alias's row is not what the
    audit chain records, listing what and why. Nothing is loaded or unpickled. Each version
    whose bytes match its manifest gets its scan record (see `assets show`); no status
    changes (`assets rescan` acts on what the scan finds).
    """

    from rearguard.models.assets.evidence import find_disagreements  # lazy: CLI start-up
    from rearguard.models.assets.scan_records import save_checks  # lazy: CLI start-up
    from rearguard.models.integrity.scan.policy import policy_for  # lazy: CLI start-up
    from rearguard.models.integrity.signatures import signature_verdicts  # lazy: CLI start-up
    from rearguard.models.integrity.sweep import plan_sweep  # lazy: CLI start-up
    from rearguard.models.integrity.verification import check_versions  # lazy: CLI start-up

    rt = runtime(ctx)
    plan = plan_sweep(runtime=rt, asset_name=name)
    statuses = {key: str(status) for key, status in plan.statuses.items()}
    policies = partial(policy_for, rt.settings)
    with byte_progress("verifying", plan.total_bytes) as progress:
        checks = check_versions(
            registry=rt.registry,
            items=plan.items,
            workers=rt.settings.playbooks.hash_workers,
            progress=progress,
            ahead=invocation(ctx).hashed_ahead,
            policies=policies,
        )
    save_checks(db=rt.db, checks=checks, policies=policies, during="verify", actor="verify")
    signatures = signature_verdicts(
        settings=rt.settings, checks=checks, manifests=[m for _, _, m in plan.items]
    )
    passed = [
        c.ok and not (s is not None and s.blocks) for c, s in zip(checks, signatures, strict=True)
    ]
    failed = [c for c, ok in zip(checks, passed, strict=True) if not ok]
    with rt.db.read_session() as session:
        unproven = [row.describe() for row in find_disagreements(session, asset=name)]
    if json_output:
        emit_json(
            {
                "ok": not failed and not unproven,
                "versions": [
                    {
                        **c.as_dict(),
                        "ok": ok,
                        "status": statuses[(c.asset, c.label)],
                        "signature": s.record() if s is not None else None,
                    }
                    for c, s, ok in zip(checks, signatures, passed, strict=True)
                ],
                "disagreements": unproven,
            }
        )
    else:
        if not checks:
            err.print("nothing to verify: no versions registered")
        for check, signature, ok in zip(checks, signatures, passed, strict=True):
            mark = "[green]ok[/]  " if ok else "[red]FAIL[/]"
            said = check.summary() + (f"; {signature.describe()}" if signature else "")
            out.print(f"{mark} {escape(check.asset)}@{escape(check.label)}: {escape(said)}")
        if failed:
            err.print(f"[red]{len(failed)} of {len(checks)} version(s) failed verification[/]")
        for line in unproven:
            err.print(f"not what the audit chain records: {line}", markup=False)
    if failed or unproven:
        raise typer.Exit(EXIT_INTEGRITY)


@app.command("sweep")
def sweep(
    ctx: typer.Context,
    open_incidents: Annotated[
        bool,
        typer.Option(
            "--open-incidents", help="Open an incident per failing asset (or add to its open one)."
        ),
    ] = False,
    run: Annotated[
        bool,
        typer.Option("--run", help="Also run the playbook of each incident opened (implies it)."),
    ] = False,
    by: ByOption = None,
    json_output: JsonOption = False,
) -> None:
    """Verify every version of every asset; for each failing asset, say what incident it calls for.

    Tampered bytes call for model_compromise, prompt_tampering or config_tampering (by kind); a
    dangerous pickle registered as such for supply_chain. Exits 3 when a version that could be
    served or promoted fails, 0 when all verify.
    """
    from rearguard.models.integrity.sweep import plan_sweep, run_sweep  # lazy: CLI start-up

    rt = runtime(ctx)
    # Only opening incidents records anyone; a read-only sweep needs no name.
    actor = person(ctx, by) if open_incidents or run else "sweep"
    plan = plan_sweep(runtime=rt)
    with byte_progress("sweeping", plan.total_bytes) as progress:
        report = run_sweep(
            runtime=rt,
            plan=plan,
            open_incidents=open_incidents or run,
            actor=actor,
            progress=progress,
        )
    runs = _run_findings(rt, report, json_output) if run else []
    if json_output:
        emit_json({**report.as_dict(), "runs": runs})
    else:
        _print_sweep(report)
    if not report.ok:
        raise typer.Exit(EXIT_INTEGRITY)


def _run_findings(rt: Runtime, report: SweepReport, json_output: bool) -> list[dict[str, Any]]:
    """Run the playbook of each finding's incident that calls for one, or say why not.

    An incident the sweep opened runs; so does one it attached to that is ``open`` (not run
    yet), ``failed`` (did not finish) or ``recovered`` (production fails again). A
    ``contained`` one (running now, or a playbook that ends there) is left to a person.
    """
    from rearguard.flows.cli.incident import print_outcome, run_with_progress  # lazy: CLI start-up
    from rearguard.models.incidents.service import get_incident  # lazy: CLI start-up

    runs: list[dict[str, Any]] = []
    for finding in report.findings:
        if finding.incident_id is None:
            continue
        with rt.db.read_session() as session:
            status = str(get_incident(session=session, incident_id=finding.incident_id).status)
        why_not = None
        if not finding.calls_for_playbook:
            why_not = (
                f"production ({finding.production or 'none'}) verifies; no failing version "
                "is served"
            )
        elif status == "contained":
            why_not = (
                f"incident {finding.incident_id} is contained: its playbook is running or ended "
                f"there; see `rearguard incident show {finding.incident_id}`, and rerun it with "
                f"`rearguard playbook run --incident {finding.incident_id}`"
            )
        if why_not is not None:
            runs.append(
                {"incident": finding.incident_id, "status": status, "ran": False, "why": why_not}
            )
            if not json_output:
                err.print(
                    f"not running incident {finding.incident_id} ({finding.asset}): {why_not}"
                )
            continue
        if not json_output:
            err.print(
                f"running the {finding.incident_type} playbook of incident "
                f"{finding.incident_id} for {finding.asset}"
            )
        incident = run_with_progress(rt, finding.incident_id, quiet=json_output)
        runs.append({"incident": incident.id, "status": str(incident.status), "ran": True})
        if not json_output:
            print_outcome(rt, incident)
    return runs


def _print_sweep(report: SweepReport) -> None:
    if not report.checks:
        err.print("nothing to verify: no versions registered")
    for finding in report.findings:
        what = {
            "opened": f"opened incident {finding.incident_id}",
            "attached": f"added to open incident {finding.incident_id}",
            "not_opened": "no incident opened",
            "reported": "calls for",
        }[finding.action]
        out.print(
            f"[red]FAIL[/] {escape(finding.asset)} ({finding.kind}): {what} "
            f"[bold]{finding.incident_type or '-'}[/]"
        )
        for version in finding.versions:
            marker = " (production)" if version["version"] == finding.production else ""
            problems = "; ".join(version["problems"])
            out.print(f"     {escape(version['version'])}{marker}: {escape(problems)}")
        if finding.note:
            out.print(f"     [dim]{escape(finding.note)}[/]")
    for known in report.known:
        out.print(
            f"[dim]known[/] {escape(known['asset'])}@{escape(known['version'])} "
            f"({known['status']}): {escape('; '.join(known['problems']))}"
        )
    failed = sum(len(f.versions) for f in report.findings)
    if failed:
        err.print(f"[red]{failed} of {len(report.checks)} version(s) failed verification[/]")
    else:
        out.print(f"[green]ok[/] {len(report.checks)} version(s) verified")


@app.command("rescan")
def rescan(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Asset name (or --all).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every asset.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Also versions whose scan record is current.")
    ] = False,
    by: ByOption = None,
    json_output: JsonOption = False,
) -> None:
    """Scan again the known-good and candidate versions whose scan record is out of date.

    Out of date: no record, an older scanner, another allow-list, other second-opinion engines
    or versions, or a recorded verdict that blocks. Versions with a current record are not
    read at all. A known-good version that now fails becomes suspect and an incident opens as
    a sweep's would; a candidate that fails becomes suspect (approval refuses it). Exits 3 when
    a version now blocks trust, 0 otherwise.
    """
    from rearguard.models.integrity.rescan import plan_rescan, run_rescan  # lazy: CLI start-up

    if (name is None) == (not all_):
        raise UsageError(
            "name an asset or give --all, not both" if all_ else "name an asset or give --all",
            hint="rearguard assets rescan NAME, or rearguard assets rescan --all",
        )
    rt = runtime(ctx)
    actor = person(ctx, by)
    plan = plan_rescan(runtime=rt, asset_name=name, force=force)
    with byte_progress("rescanning", plan.total_bytes) as progress:
        result = run_rescan(runtime=rt, plan=plan, actor=actor, progress=progress)
    if json_output:
        emit_json(result.json_value())
    else:
        _print_rescan(result)
    if not result.ok:
        raise typer.Exit(EXIT_INTEGRITY)


def _print_rescan(result: RescanRead) -> None:
    for version in result.rescanned:
        colour = "red" if version.blocks else "green"
        line = (
            f"{escape(version.asset)}@{escape(version.version)}: {version.verdict_before} -> "
            f"[{colour}]{version.verdict_after}[/]"
        )
        if version.status_after != version.status_before:
            line += (
                f", [{status_style(version.status_before)}]{version.status_before}[/] -> "
                f"[{status_style(version.status_after)}]{version.status_after}[/]"
            )
        if version.incident is not None:
            line += f", incident {version.incident}"
        out.print(f"{line} [dim]({escape(version.why)})[/]")
        for problem in version.problems:
            out.print(f"     {escape(problem)}")
    blocking = sum(v.blocks for v in result.rescanned)
    summary = (
        f"{len(result.rescanned)} version(s) rescanned, {blocking} now block trust, "
        f"{result.current} current (not rescanned); scanner {result.scanner_version}"
    )
    if result.incidents:
        summary += "; incidents " + ", ".join(str(i) for i in result.incidents)
    (err if blocking else out).print(f"[red]{summary}[/]" if blocking else summary)
