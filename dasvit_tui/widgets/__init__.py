"""Widgets of the monitor. Each one renders what it is handed; none reads a file."""
