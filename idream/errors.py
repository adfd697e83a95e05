"""The one kind of error a person can mend: bad input, a bad or missing file, a model, package or
service that is not there. The command line prints it in one line (exit code 2); any other
exception is a bug and keeps its traceback."""


class InputError(ValueError):
    """What the user gave (an argument, a file, a request) cannot be used; the message says what
    to do instead. A ValueError, so callers that caught ValueError before still catch it."""
