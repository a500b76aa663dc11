"""eqsdk: render scenes from a character, a background and an animation, with ONNX Runtime.

    import eqsdk
    r = eqsdk.load()                                   # the bundled "mnist" model
    img = r.render(char="a.png", bg="b.png", anim=("p.png", "q.png"))  # (64, 64, 3) uint8
    frames, fps = eqsdk.read_clip("drive.gif")                        # a driving clip
    eqsdk.save_clip(r.animate_iter("a.png", "b.png", frames), "out.gif", fps)  # streamed
"""
from eqsdk.bundle import DEFAULT_MODEL, MODELS, load
from eqsdk.errors import BackendError, BundleError, EqsdkError, InputError
from eqsdk.images import save_image
from eqsdk.motion_file import Motion, MotionFileError, MotionModelError, load_motion, save_motion
from eqsdk.renderer import Renderer
from eqsdk.video import read_clip, save_clip, side_by_side

__version__ = "0.1.0"
__all__ = ["load", "Renderer", "MODELS", "DEFAULT_MODEL", "save_image", "read_clip", "save_clip",
           "side_by_side", "Motion", "save_motion", "load_motion", "EqsdkError", "InputError",
           "BundleError", "BackendError", "MotionFileError", "MotionModelError", "__version__"]
