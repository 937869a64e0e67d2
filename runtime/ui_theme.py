"""The interface's look: a Gradio theme and the CSS that goes with it.

One place for colours and layout rules, so every tab reads well in light and dark mode and on
a phone (390 px wide). Fonts are the system's: nothing is fetched from a font service, which an
offline user cannot reach. The network picture's colours are CSS variables set here
(``--stnlp-net-*``), so its labels follow the page's mode; an exported picture falls back to
the light colours written into the SVG itself.
"""

from __future__ import annotations

import gradio as gr

SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "sans-serif")
MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Consolas", "monospace")


def theme() -> gr.themes.Base:
    """A calm red-on-slate theme with system fonts."""
    return gr.themes.Soft(
        primary_hue="red", secondary_hue="slate", neutral_hue="slate",
        font=SYSTEM_FONTS, font_mono=MONO_FONTS,
    ).set(  # fmt: skip
        block_title_text_weight="600",
        button_primary_text_color="white",
        button_primary_text_color_dark="white",
    )


CSS = """
.gradio-container { max-width: min(1200px, 100vw) !important; margin: 0 auto !important; }
.gradio-container .column, .gradio-container .block, .gradio-container .form,
.gradio-container .row > * { min-width: 0; }
.stnlp-network, .stnlp-network svg { max-width: 100%; }
.stnlp-header h1 { margin: 0; font-size: 1.7rem; line-height: 1.2; }
.stnlp-header p { margin: 0.25rem 0 0; color: var(--body-text-color-subdued); }
.stnlp-hint { color: var(--body-text-color-subdued); font-size: 0.92rem; margin: 0; }
.stnlp-done { font-size: 0.95rem; }

.stnlp-badge { display: inline-block; padding: 2px 10px; border-radius: 999px;
  font-size: 0.85rem; font-weight: 600; border: 1px solid; max-width: 100%;
  overflow-wrap: anywhere; }
.stnlp-badge-trained { background: #dcfce7; color: #14532d; border-color: #86efac; }
.stnlp-badge-hub { background: #dbeafe; color: #1e3a8a; border-color: #93c5fd; }
.stnlp-badge-live { background: #ede9fe; color: #4c1d95; border-color: #c4b5fd; }
.stnlp-badge-fallback { background: #fef3c7; color: #78350f; border-color: #fcd34d; }
.stnlp-badge-other { background: #f1f5f9; color: #1e293b; border-color: #cbd5e1; }
.dark .stnlp-badge-trained { background: #14532d; color: #dcfce7; border-color: #22c55e; }
.dark .stnlp-badge-hub { background: #1e3a8a; color: #dbeafe; border-color: #3b82f6; }
.dark .stnlp-badge-live { background: #4c1d95; color: #ede9fe; border-color: #8b5cf6; }
.dark .stnlp-badge-fallback { background: #78350f; color: #fef3c7; border-color: #f59e0b; }
.dark .stnlp-badge-other { background: #1e293b; color: #f1f5f9; border-color: #64748b; }

.stnlp-table { overflow-x: auto; max-width: 100%; }
.stnlp-table table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
.stnlp-table th { white-space: nowrap; text-align: left; word-break: keep-all; }
.stnlp-table th, .stnlp-table td { padding: 6px 10px; vertical-align: top;
  border-bottom: 1px solid var(--border-color-primary); }
.stnlp-table td { overflow-wrap: anywhere; min-width: 6rem; }

.stnlp-network { --stnlp-net-text: var(--body-text-color);
  --stnlp-net-halo: var(--background-fill-primary); --stnlp-net-edge: var(--neutral-400);
  --stnlp-net-bg: transparent; border: 1px solid var(--border-color-primary);
  border-radius: var(--radius-lg); overflow: hidden; }
.stnlp-network svg { display: block; width: 100%; height: auto; }
.stnlp-network .node:hover circle { stroke-width: 3px; }
.stnlp-network .node { cursor: default; }

@media (max-width: 640px) {
  .gradio-container { padding: 0 8px !important; }
  .gradio-container .row { flex-wrap: wrap; }
  .gradio-container .row > * { flex-basis: 100% !important; min-width: 0 !important; }
  .stnlp-header h1 { font-size: 1.35rem; }
  .stnlp-table table { font-size: 0.82rem; }
}
"""
"""The page's CSS (given to ``launch``; Gradio 6 takes theme and CSS there)."""
