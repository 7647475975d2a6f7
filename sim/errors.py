"""Errors raised for bad user input (configs, model files, options)."""


class ConfigError(ValueError):
    """A configuration value is missing, unknown or impossible; the message names it."""
