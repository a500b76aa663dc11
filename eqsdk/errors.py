"""Every error eqsdk raises on purpose derives from EqsdkError, so apps can catch them."""


class EqsdkError(Exception):
    """Base class of eqsdk's errors."""


class InputError(EqsdkError, ValueError):
    """An input image or argument is not what was expected."""


class BundleError(EqsdkError):
    """A model bundle is missing, unknown, incomplete or corrupt."""


class BackendError(EqsdkError):
    """A runtime backend is not available or failed to start."""
