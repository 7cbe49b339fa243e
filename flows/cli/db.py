"""``rearguard db`` and ``rearguard init``: the database schema and the home directory."""

from __future__ import annotations

import typer

from rearguard.flows.cli.context import invocation, out

app = typer.Typer(help="The application database.")

_CONFIG_TEMPLATE = """\
# rearguard configuration. Precedence: flags > REARGUARD_* environment > this file > defaults.

[database]
# url = "postgresql://user@127.0.0.1:5432/rearguard"   # default: SQLite in the home

[registry]
backend = "local"             # or "mlflow" (pip install 'rearguard[mlflow]')
alias = "production"          # MLflow: the alias your serving reads, e.g. "champion"
# tracking_uri = "https://mlflow.internal:5000"   # backend mlflow; default MLFLOW_TRACKING_URI

[playbooks]
validation_timeout_s = 300

[notifications]
console = true
# file = "/var/log/rearguard/notifications.jsonl"

# A named person approves before a step (README, "Approvals"); no rule: nothing waits.
# Each approver proves who they are: a registered Ed25519 key (rearguard approve --key) or a
# contact that gets one-time codes (email, or slack:U123 for a direct message).
# [approvals.groups]
# sre = ["alice", "bob"]
#
# [approvals.keys]
# alice = "ssh-ed25519 AAAA... alice@laptop"
#
# [approvals.contacts]
# bob = "bob@example.org"
#
# [[approvals.rules]]
# steps = ["rollback"]
# approvers = ["sre"]
# min_severity = "sev1"
# timeout_s = 900
# on_timeout = "escalate"                # or "proceed", "abort"
# escalate_to = ["carol"]

[drills]
# keep_sandboxes = "failed"   # none, failed or all: sandboxes kept under <home>/drills
# timezone = "UTC"            # of a drill's cron, unless `drills add --timezone`

[scheduler]
misfire_grace_s = 300         # a run later than this is recorded as missed
# sweep_cron = "0 * * * *"    # run `assets sweep` on this schedule
"""


def _open_database(ctx: typer.Context, *, upgrade: bool) -> tuple[str, str | None, str]:
    from rearguard.models.db.engine import Database  # lazy: CLI start-up

    settings = invocation(ctx).settings()
    db = Database(settings.database_url, busy_timeout_s=settings.database.busy_timeout_s)
    try:
        before, head = db.upgrade() if upgrade else db.revisions()
    finally:
        db.dispose()
    return redact_url(settings.database_url), before, head


def redact_url(url: str) -> str:
    """A database URL with its password replaced by ***."""
    from sqlalchemy.engine import make_url  # lazy: CLI start-up

    return make_url(url).render_as_string(hide_password=True)


@app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Migrate the database schema to this version of rearguard."""
    url, before, head = _open_database(ctx, upgrade=True)
    if before == head:
        out.print(f"{url}: already at revision {head}")
    else:
        out.print(f"{url}: upgraded {before or '(empty)'} -> {head}")


@app.command("status")
def status(ctx: typer.Context) -> None:
    """Show the database's schema revision and the one this rearguard needs."""
    url, current, head = _open_database(ctx, upgrade=False)
    state = "current" if current == head else "needs `rearguard db upgrade`"
    out.print(f"{url}: revision {current or '(empty)'}, this rearguard needs {head}: {state}")


def init(ctx: typer.Context) -> None:
    """Create the home directory, a commented rearguard.toml, and the database."""
    from rearguard.models.config.files import CONFIG_FILENAME  # lazy: CLI start-up

    settings = invocation(ctx).settings()
    config = settings.home / CONFIG_FILENAME
    if not config.exists():
        config.write_text(_CONFIG_TEMPLATE)
        out.print(f"wrote {config}")
    url, _before, head = _open_database(ctx, upgrade=True)
    out.print(f"home {settings.home}; database {url} at revision {head}")
