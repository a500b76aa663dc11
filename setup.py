"""Build hook. The wheel ships the training and export code (the `train` extra's commands, `eqsdk
train` and `eqsdk export`) as the packages eqsdk_train and eqsdk_export, names no other project
uses; in the repository they stay the top-level folders train/ and export/. Every module copied
into the wheel has its imports of train and export rewritten to the shipped names. All other
settings are in pyproject.toml."""
import re
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED_AS = {"train": "eqsdk_train", "export": "eqsdk_export"}
IMPORT = re.compile(r"^(\s*)(from|import)\s+(train|export)\b", re.MULTILINE)


def rename_imports(source: str) -> str:
    return IMPORT.sub(lambda m: f"{m[1]}{m[2]} {SHIPPED_AS[m[3]]}", source)


class BuildPy(build_py):
    def build_module(self, module, module_file, package):
        outfile, copied = super().build_module(module, module_file, package)
        if copied and outfile.endswith(".py"):
            path = Path(outfile)
            path.write_text(rename_imports(path.read_text(encoding="utf-8")), encoding="utf-8")
        return outfile, copied


setup(cmdclass={"build_py": BuildPy})
