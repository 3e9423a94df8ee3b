"""User-facing errors. The CLI prints them as one line and exits non-zero; anything else is a bug."""


class DreamgenError(Exception):
    """Bad input or environment: the message names the file and what is wrong."""

    exit_code = 2


class EmbodimentError(DreamgenError):
    pass


class DatasetError(DreamgenError):
    pass


class VideoError(DreamgenError):
    pass


class OutputExistsError(DreamgenError):
    pass
