"""The interface shell: one Gradio Blocks app with one tab per contributed tab and a status tab.

The shell guards the plugins' tabs: a tab whose ``build`` raises shows a message instead of
taking the app down, and every callback a tab registers is wrapped so that a
:class:`stnlp.common.errors.UserError` reaches the page as its own message (and the server's log
as one line) and any other exception as a short "internal error" note naming the tab and a
reference, never a stack trace (the traceback goes to a file, see :mod:`stnlp.runtime.crash`).

Gradio serves every file under its temporary folder and its examples cache; the interface gives
it fresh private folders of its own (inside ``GRADIO_TEMP_DIR`` / ``GRADIO_EXAMPLES_CACHE`` when
they are set), so no setting can make it serve anything else.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gradio as gr

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.runtime import logs
from stnlp.runtime.auth import BasicAuthMiddleware, Credentials, check_bind, check_port
from stnlp.runtime.crash import one_line, record_internal_error
from stnlp.runtime.ui_sources import badge_html, safe_model_source, sources_markdown
from stnlp.runtime.ui_theme import CSS, theme

log = logging.getLogger(__name__)

TITLE = "Stranger Things NLP"
PURPOSE = (
    "Explore the Stranger Things subtitles and scripts: chat with a character, see who appears "
    "with whom, classify a location and score each episode's themes."
)


@dataclass
class AppContext:
    """What a tab's ``build`` and ``model_source`` receive."""

    settings: Settings
    registry: Any  # stnlp.plugins.manager.Registry


@dataclass(frozen=True)
class ComponentStatus:
    """One row of the status panel: a component and the model it serves, if any."""

    component: str
    plugin: str
    model: str
    version: str
    source: str
    trained: str
    metrics: str


# --- status panel -------------------------------------------------------------------------------


def _format_metrics(metrics: dict[str, Any]) -> str:
    parts = []
    for key, value in sorted(metrics.items()):
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, dict | list):
            continue
        parts.append(f"{key}={value}")
    return ", ".join(parts) or "-"


def _format_time(value: Any) -> str:
    try:
        return datetime.fromisoformat(str(value)).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return str(value) if value else "-"


def _model_status(app: AppContext, registry, plugin: str, component: str, model: str):
    try:
        version = registry.latest(model)
        manifest = registry.manifest(model, version) if version else None
    except UserError as exc:
        logs.event(log, "model unreadable", logging.WARNING, model=model, reason=str(exc))
        return ComponentStatus(component, plugin, model, "-", f"unreadable: {exc}", "-", "-")
    if manifest is None:
        return ComponentStatus(component, plugin, model, "-", "not trained yet", "-", "-")
    base = manifest.get("base_model")
    source = f"registry ({app.settings.store})" + (f", base {base}" if base else "")
    origin = manifest.get("same_training_as")
    if isinstance(origin, dict):  # `stnlp demo` copied it from a job of the same training
        source += f", a copy of {origin.get('model')} {origin.get('version')} (the same training)"
    trained = _format_time(manifest.get("created"))
    metrics = _format_metrics(manifest.get("metrics") or {})
    return ComponentStatus(component, plugin, model, str(version), source, trained, metrics)


def component_status(app: AppContext) -> list[ComponentStatus]:
    """Per component: the model its jobs publish and the latest registry version of it.

    Reads only each model's ``latest.json`` and manifest: no artifact is downloaded or hashed,
    so a refresh stays cheap on S3 and with large models.
    """
    from stnlp.runtime.registry import ModelRegistry
    from stnlp.runtime.store import open_stores

    models_of: dict[str, set[str]] = {}
    for spec in app.registry.job_specs():
        models_of.setdefault(spec.component, set()).add(spec.output_model)
    registry = ModelRegistry(open_stores(app.settings).models)
    rows = []
    for plugin, component in app.registry.components:
        models = sorted(models_of.get(component.name, ()))
        if not models:
            rows.append(
                ComponentStatus(component.name, plugin, "-", "-", "no training job", "-", "-")
            )
        rows += [_model_status(app, registry, plugin, component.name, m) for m in models]
    return rows


def status_markdown(app: AppContext) -> str:
    """The status panel: every tab's model source in full, then a table with one row per
    component and model."""
    return f"### Sources per tab\n\n{sources_markdown(app)}\n\n### Models\n\n{models_markdown(app)}"


def models_markdown(app: AppContext) -> str:
    """One Markdown table row per component and the model it publishes."""
    try:
        rows = component_status(app)
    except UserError as exc:
        return f"**Status unavailable:** {exc}"
    if not rows:
        return "_No plugin contributes a component._"
    header = "| component | plugin | model | version | source | trained | metrics |"
    lines = [header, "|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = (row.component, row.plugin, row.model, row.version, row.source, row.trained)
        lines.append("| " + " | ".join((*cells, row.metrics)) + " |")
    return "\n".join(lines)


# --- header -------------------------------------------------------------------------------------


def header_html() -> str:
    """The page's title and its purpose in one line."""
    return f'<div class="stnlp-header"><h1>{TITLE}</h1><p>{PURPOSE}</p></div>'


# --- error handling -----------------------------------------------------------------------------


def _temp_roots() -> list[str]:
    roots = {tempfile.gettempdir(), *(os.environ.get(n) for n in ("GRADIO_TEMP_DIR", "TMPDIR"))}
    return sorted((r.rstrip("/") for r in roots if r and r.strip("/")), key=len, reverse=True)


def without_server_paths(text: str) -> str:
    """``text`` with every path under the server's temporary folders (where uploads land)
    shortened to the file's own name: a page never shows where the server keeps files."""
    for root in _temp_roots():
        text = re.sub(re.escape(root) + r"/[^\s:;,'\"]*", lambda m: Path(m.group(0)).name, text)
    return text


def page_error(where: str, exc: BaseException) -> gr.Error:
    """The message a page shows for ``exc`` raised in ``where``: never a stack trace, never a
    server path (see :func:`without_server_paths`).

    The server logs one line per error; Gradio is told not to print the traceback.
    """
    if isinstance(exc, gr.Error | UserError):
        message = without_server_paths(str(exc.message if isinstance(exc, gr.Error) else exc))
        kind = "page error" if isinstance(exc, gr.Error) else "user error"
        logs.event(log, kind, logging.WARNING, tab=where, error=one_line(message, 300))
        return gr.Error(message, print_exception=False)
    ref, path = record_internal_error(exc)
    logs.event(log, "callback failed", logging.ERROR, tab=where, error=type(exc).__name__,
               ref=ref, details=path)  # fmt: skip
    return gr.Error(
        f"{where}: something went wrong ({type(exc).__name__}); internal error ref {ref}, "
        "see the server log",
        print_exception=False,
    )


def guard_callback(fn: Callable, where: str) -> Callable:
    """Wrap a Gradio callback (plain, async, generator or async generator) with :func:`page_error`.

    The wrapper keeps the signature (Gradio inspects it for ``gr.Request`` and progress
    arguments) and the kind of callable (Gradio streams generators).
    """
    if inspect.isasyncgenfunction(fn):

        async def wrapper(*args, **kwargs):
            try:
                async for item in fn(*args, **kwargs):
                    yield item
            except Exception as exc:
                raise page_error(where, exc) from exc

    elif inspect.isgeneratorfunction(fn):

        def wrapper(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as exc:
                raise page_error(where, exc) from exc

    elif inspect.iscoroutinefunction(fn):

        async def wrapper(*args, **kwargs):
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                raise page_error(where, exc) from exc

    else:

        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                raise page_error(where, exc) from exc

    return functools.wraps(fn)(wrapper)


def _build_tab(app: AppContext, blocks: gr.Blocks, plugin: str, tab) -> None:
    before = set(blocks.fns)
    try:
        tab.build(app)
    except Exception as exc:
        logs.event(log, "tab build failed", logging.ERROR, plugin=plugin, tab=tab.name)
        log.error("traceback of the failed tab build", exc_info=exc)
        reason = str(exc) if isinstance(exc, UserError) else type(exc).__name__
        gr.Markdown(f"**This tab could not be built** (plugin `{plugin}`): {reason}")
    for fn_id in set(blocks.fns) - before:
        block_fn = blocks.fns[fn_id]
        if block_fn.fn is not None:
            block_fn.fn = guard_callback(block_fn.fn, tab.title)


def build_app(app: AppContext) -> gr.Blocks:
    """Assemble the Blocks app: the title and purpose, one tab per contributed tab (each with
    its source badge), then the status tab with every source in full."""
    with gr.Blocks(title=TITLE, analytics_enabled=False) as blocks:
        gr.HTML(header_html(), elem_id="stnlp-header")
        for plugin, tab in app.registry.tabs:
            with gr.Tab(tab.title, id=tab.name):
                gr.HTML(badge_html(safe_model_source(app, plugin, tab)))
                _build_tab(app, blocks, plugin, tab)
        with gr.Tab("Status", id="status"):
            gr.Markdown("Where each tab's answers come from, with versions and reasons, and "
                        "every model in the registry.", elem_classes="stnlp-hint")  # fmt: skip
            status = gr.Markdown(status_markdown(app), elem_id="stnlp-status",
                                 elem_classes="stnlp-table")  # fmt: skip
            refresh = gr.Button("Refresh", elem_id="stnlp-status-refresh")
            refresh.click(guard_callback(lambda: status_markdown(app), "Status"), None, status)
    return blocks


# --- serving ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServeOptions:
    """How `stnlp serve` exposes the app."""

    host: str = "127.0.0.1"
    port: int = 7860
    max_file_size: str = "10mb"
    credentials: Credentials | None = None


_PRIVATE_DIRS: set[str] = set()


def private_gradio_dirs(env: dict[str, str] | None = None) -> dict[str, str]:
    """Point Gradio's temporary folder and examples cache at fresh private folders.

    A ``GRADIO_TEMP_DIR`` or ``GRADIO_EXAMPLES_CACHE`` already set only says where the fresh
    folder is made (``GRADIO_TEMP_DIR=/`` can no longer serve the filesystem). The folders are
    removed when the process exits. Returns the variables set.
    """
    env = os.environ if env is None else env
    chosen = {}
    for name in ("GRADIO_TEMP_DIR", "GRADIO_EXAMPLES_CACHE"):
        parent = env.get(name) or None
        if parent in _PRIVATE_DIRS:  # made by an earlier launch in this process
            continue
        try:
            chosen[name] = tempfile.mkdtemp(prefix="stnlp-gradio-", dir=parent)
        except OSError as exc:
            raise UserError(f"{name}={parent}: cannot make a private folder there "
                            f"({exc.strerror})") from None
    for folder in chosen.values():  # uploads and cached files go when the server does
        atexit.register(shutil.rmtree, folder, True)
    _PRIVATE_DIRS.update(chosen.values())
    env.update(chosen)
    return chosen


def launch(app: AppContext, options: ServeOptions) -> gr.Blocks:
    """Build and start the app without blocking; return the running Blocks.

    Gradio serves only the app's own static files, uploads and its cache (in private folders,
    see :func:`private_gradio_dirs`): no ``allowed_paths``, and an inherited
    ``GRADIO_ALLOWED_PATHS`` is refused. Uploads above ``max_file_size`` are rejected with 413.
    With credentials, every request needs HTTP Basic auth. A port already in use is a
    :class:`UserError` naming ``--port``.
    """
    check_bind(options.host, options.credentials)
    check_port(options.host, options.port)
    if os.environ.get("GRADIO_ALLOWED_PATHS"):
        raise UserError(
            "GRADIO_ALLOWED_PATHS is set: stnlp serve only serves its own files; unset it"
        )
    if os.environ.get("GRADIO_SHARE", "").lower() == "true":
        raise UserError("GRADIO_SHARE=true would open a public tunnel; unset it")
    private_gradio_dirs()
    middleware = []
    if options.credentials is not None:
        from starlette.middleware import Middleware

        middleware.append(Middleware(BasicAuthMiddleware, credentials=options.credentials))
    blocks = build_app(app)
    try:
        _launch(blocks, options, middleware)
    except OSError:  # lost a race for the port since check_port
        raise UserError(f"port {options.port} on {options.host} is already in use: pass --port "
                        "with a free port") from None
    logs.event(log, "serving", url=blocks.local_url, auth=options.credentials is not None)
    return blocks


def _launch(blocks: gr.Blocks, options: ServeOptions, middleware: list) -> None:
    blocks.queue().launch(
        server_name=options.host,
        server_port=options.port,
        show_error=False,
        max_file_size=options.max_file_size,
        app_kwargs={"middleware": middleware},
        prevent_thread_lock=True,
        share=False,
        quiet=True,
        ssr_mode=False,
        enable_monitoring=False,
        mcp_server=False,
        pwa=False,
        footer_links=["settings"],
        run_history=False,
        theme=theme(),
        css=CSS,
    )
