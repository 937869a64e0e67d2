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
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import gradio as gr

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.runtime import logs
from stnlp.runtime.auth import BasicAuthMiddleware, Credentials, check_bind, check_port
from stnlp.runtime.crash import one_line, record_internal_error

log = logging.getLogger(__name__)

TITLE = "Stranger Things NLP"


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
    """The status panel as a Markdown table, one row per component and model."""
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


def _safe_model_source(app: AppContext, plugin: str, tab) -> str:
    try:
        return tab.model_source(app)
    except Exception as exc:  # a plugin's bug must not take the header down
        logs.event(log, "model source failed", logging.ERROR, plugin=plugin, tab=tab.name)
        log.debug("model source traceback", exc_info=exc)
        return f"unknown (model source failed: {type(exc).__name__})"


def model_sources(app: AppContext) -> list[tuple[str, str]]:
    """``(tab title, model source)`` for every tab, for the header."""
    return [(tab.title, _safe_model_source(app, plugin, tab)) for plugin, tab in app.registry.tabs]


def header_markdown(app: AppContext) -> str:
    """The header: the title and which model source each tab uses."""
    lines = [f"# {TITLE}", ""]
    sources = model_sources(app)
    if not sources:
        lines.append("_No plugin contributes a tab yet._")
    lines += [f"- **{title}**: {source}" for title, source in sources]
    return "\n".join(lines)


# --- error handling -----------------------------------------------------------------------------


def page_error(where: str, exc: BaseException) -> gr.Error:
    """The message a page shows for ``exc`` raised in ``where``: never a stack trace.

    The server logs one line per error; Gradio is told not to print the traceback.
    """
    if isinstance(exc, gr.Error):
        exc.print_exception = False
        logs.event(log, "page error", logging.WARNING, tab=where, error=one_line(str(exc), 300))
        return exc
    if isinstance(exc, UserError):
        logs.event(log, "user error", logging.WARNING, tab=where, error=one_line(str(exc), 300))
        return gr.Error(str(exc), print_exception=False)
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
    """Assemble the Blocks app: a header, one tab per contributed tab, then the status tab."""
    with gr.Blocks(title=TITLE, analytics_enabled=False) as blocks:
        gr.Markdown(header_markdown(app))
        for plugin, tab in app.registry.tabs:
            with gr.Tab(tab.title, id=tab.name):
                _build_tab(app, blocks, plugin, tab)
        with gr.Tab("Status", id="status"):
            status = gr.Markdown(status_markdown(app), elem_id="stnlp-status")
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
    )
