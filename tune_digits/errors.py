"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input: the message says what is wrong and how to fix it."""


class ConfigError(UserError):
    """An unknown key, a wrong type or a value out of range in a config or space."""


class DataError(UserError):
    """A data folder, recording or split that cannot be used."""
