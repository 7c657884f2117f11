"""Build hook: the wheel carries the checkout's split files, study presets and the paper's
published results, copied at build time into ``transferbench/shipped/`` (found at run time by
``transferbench/shipped.py``). The top-level folders stay the one copy in the repository.
Everything else about the package is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = {"splits": "*.json", "configs": "*.toml", "results": "yosinski2014.csv"}  # folder -> what ships of it


class BuildWithShipped(build_py):
    def run(self):
        super().run()
        for kind, pattern in SHIPPED.items():
            target = Path(self.build_lib) / "transferbench" / "shipped" / kind
            target.mkdir(parents=True, exist_ok=True)
            for source in sorted((ROOT / kind).glob(pattern)):
                shutil.copyfile(source.resolve(), target / source.name)  # a symlinked preset ships as a file


setup(cmdclass={"build_py": BuildWithShipped})
