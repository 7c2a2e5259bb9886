"""User-facing errors: each carries one line that says what is wrong and what to do."""


class EVCError(Exception):
    """Bad input or environment; the CLI prints the message alone and exits non-zero."""


class AudioError(EVCError):
    """Audio that cannot be read or used."""


class ConfigError(EVCError):
    """engine.yaml or a training config that does not validate."""


class ModelError(EVCError):
    """A model directory, manifest or checkpoint that is missing or does not match."""
