"""The app's look: one Gradio theme and a little CSS, passed to ``launch()`` (Gradio 6)."""

from __future__ import annotations

import gradio as gr

CSS = """
.melasma-header h1 { margin-bottom: 0.1em; }
.melasma-header p { margin-top: 0; opacity: 0.8; }
.melasma-footer { font-size: 0.85em; opacity: 0.7; }
/* Rating screen: the photo stays in view while the form scrolls; a compact form */
.melasma-sticky { position: sticky; top: 8px; align-self: flex-start; }
.melasma-form .melasma-score { padding: 2px 6px !important; }
.melasma-form .melasma-score .wrap { gap: 2px 4px !important; }
.melasma-form .melasma-score label { padding: 0 6px !important; font-size: 0.8em; min-height: 0 !important; }
.melasma-form .melasma-score span[data-testid="block-info"] {
  margin-bottom: 0 !important; padding: 0 4px !important; font-size: 0.75em; background: none !important; }
.melasma-region p { margin: 2px 6px !important; }
.melasma-form .melasma-hidden { padding: 0 4px !important; font-size: 0.8em; }
/* Table headers break between words, never inside one ("Test photos", not "Te st ph ot os") */
table th, table th * { word-break: normal !important; overflow-wrap: normal !important; hyphens: none; }
/* Short headers on one line ("MASI-50", not "MASI-" over "50"); the table scrolls sideways if it must */
.melasma-one-line-headers table th, .melasma-one-line-headers table th * { white-space: nowrap !important; }
"""


def build_theme() -> gr.themes.Base:
    """A calm, clinical theme: soft surfaces, amber accents (the colour of melasma patches)."""
    return gr.themes.Soft(
        primary_hue=gr.themes.colors.amber,
        secondary_hue=gr.themes.colors.stone,
        neutral_hue=gr.themes.colors.stone,
        # System fonts only: no request to a font CDN (offline clinics, headless tests).
        font=["ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Consolas", "monospace"],
    )
