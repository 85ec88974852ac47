"""Gradio user interface: one builder per tab (annotate, train, predict) and the app shell."""
