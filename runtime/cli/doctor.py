"""`stnlp doctor`: what is damaged in the stores, and `--repair` for what is safe to repair."""

from __future__ import annotations

import click

from stnlp.runtime.cli.base import Session, cli, pass_session, stack_option
from stnlp.runtime.runs import STALE_AFTER_SECONDS


@cli.command("doctor")
@stack_option
@click.option("--repair", is_flag=True, help="Repair what can be repaired safely.")
@click.option("--stale-after", default=STALE_AFTER_SECONDS, show_default=True,
              help="Seconds without a heartbeat after which a run counts as abandoned.")
@pass_session
@click.pass_context
def doctor_command(ctx: click.Context, session: Session, repair: bool, stale_after: float) -> None:
    """List damaged run records, locks, pointers and versions; exit 1 while any remain.

    --repair keeps a damaged run record's bytes aside and ends the run, removes abandoned
    locks, ends runs nobody carries on, and points a damaged or broken pointer at the newest
    version that verifies. Nothing stored is deleted.
    """
    from stnlp.runtime.doctor import diagnose
    from stnlp.runtime.store import open_stores

    settings = session.settings
    findings = diagnose(open_stores(settings), settings.stack, repair=repair,
                        stale_after=stale_after)  # fmt: skip
    for finding in findings:
        click.echo(finding.line())
    left = [f for f in findings if not f.repaired and f.repair]
    click.echo(f"stack {settings.stack}: {len(findings)} finding(s), "
               f"{sum(f.repaired for f in findings)} repaired, {len(left)} to repair")
    if left:
        ctx.exit(1)
