"""Installable package for tfmetric (also used as Beam's --setup_file for remote workers)."""

import pathlib

import setuptools

_HERE = pathlib.Path(__file__).parent


def _requirements():
    lines = (_HERE / "requirements.txt").read_text().splitlines()
    runtime = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return [r for r in runtime if not r.startswith(("pytest", "playwright"))]  # test-only


setuptools.setup(
    name="tfmetric",
    version="0.1.0",
    description=(
        "Classification-based deep metric learning (Zhai & Wu, BMVC 2019) in TensorFlow 2 / Keras 3 with Apache Beam."
    ),
    packages=setuptools.find_packages(include=["tfmetric", "tfmetric.*", "pipelines", "pipelines.*"]),
    package_data={"tfmetric.serve": ["static/*.html"]},
    python_requires=">=3.10",
    install_requires=_requirements(),
    extras_require={"test": ["pytest==9.2.0", "pytest-xdist==3.8.0", "playwright==1.65.2"]},
)
