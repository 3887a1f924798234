"""The run contract: the run directory, its files and events, config, requests, runtime."""
