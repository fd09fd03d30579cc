"""Installs cmem_adapter_auto.pth next to the package; all metadata is in setup.cfg."""

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "cmem_adapter_auto.pth"


class BuildPyWithPth(build_py):
    """build_py that also puts the start-up hook at the top of site-packages (wheel root)."""

    def run(self) -> None:
        super().run()
        self.copy_file(PTH, os.path.join(self.build_lib, PTH), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), os.path.join(self.build_lib, PTH)]


setup(cmdclass={"build_py": BuildPyWithPth})
