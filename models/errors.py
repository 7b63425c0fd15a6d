"""Errors raised on bad input to the model package."""


class ModelInputError(ValueError):
    """A preset name, override, input shape or timestep that the model cannot take.

    The message is one line that names what was wrong and how to fix it.
    """
