"""Errors of the bottom layer that the layers above raise and catch."""


class DataError(ValueError):
    """A data file that cannot be used: the message names the file and the fix."""
