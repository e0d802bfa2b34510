"""The Textual dashboard: the only package that imports textual.

`nemo_tui.ui.app.create_app` builds the app; the CLI imports it only when the dashboard starts.
"""
