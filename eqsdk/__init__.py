"""eqsdk: render scenes from a character, a background and an animation, with ONNX Runtime.

    import eqsdk
    r = eqsdk.load()                                   # the bundled "mnist" model
    img = r.render(char="a.png", bg="b.png", anim=("p.png", "q.png"))  # (64, 64, 3) uint8
"""
from eqsdk.bundle import DEFAULT_MODEL, MODELS, load
from eqsdk.errors import BackendError, BundleError, EqsdkError, InputError
from eqsdk.images import save_image
from eqsdk.renderer import Renderer

__version__ = "0.1.0"
__all__ = ["load", "Renderer", "MODELS", "DEFAULT_MODEL", "save_image", "EqsdkError",
           "InputError", "BundleError", "BackendError", "__version__"]
