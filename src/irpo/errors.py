"""The one exception type users see: a clear message naming what is wrong and where."""


class IrpoError(Exception):
    """Bad input (config, data, model path) or a run that cannot continue.

    The CLI prints the message without a traceback and exits with status 2.
    """
