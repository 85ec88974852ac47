"""Melasma Severity Studio: MASI scoring, training, explanations and a Gradio app."""

__version__ = "0.1.0"
