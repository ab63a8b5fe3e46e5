"""The one exception type the CLI turns into a message and a non-zero exit."""


class LabError(Exception):
    pass
