"""`stnlp release --stack S`: publish this checkout as the release the interface host installs.

The interface host's user data waits for ``packages/current.json`` in the stack's models bucket
and installs what it names (stnlp.common.userdata). This command builds that release from the
checkout it runs in (the project's wheel, the installed plugins' wheels, a hash-pinned lock for
the host's Python with torch's CPU build), uploads what the bucket lacks and moves the pointer.
A host already running keeps its install: replace it (`pulumi up --replace` on the host) to
pick the new release up.
"""

from __future__ import annotations

import click

from stnlp.common.errors import UserError
from stnlp.runtime.cli.base import Session, cli, pass_session, stack_option


@cli.command("release")
@stack_option
@pass_session
def release_command(session: Session) -> None:
    """Publish this checkout as the interface host's release (packages/current.json)."""
    from stnlp.common.userdata import INTERFACE_PYTHON, RELEASE_POINTER
    from stnlp.runtime.backends.package import build_interface_release, publish_release
    from stnlp.runtime.manifest import load_manifest
    from stnlp.runtime.store import open_stores

    settings = session.settings
    if not settings.uses_s3:
        raise UserError("stnlp release needs a deployed stack: use --stack NAME")
    manifest = load_manifest(settings)
    release = build_interface_release(manifest)
    python = str(manifest.get("interface_python") or INTERFACE_PYTHON)
    models = open_stores(settings).models
    publish_release(release, models, python)
    click.echo(f"released {release.wheels[0].filename} with {len(release.wheels) - 1} plugin "
               f"wheel(s) and {release.pins} locked dependencies for Python {python}")
    click.echo(f"pointer: {models.description}/{RELEASE_POINTER}")
