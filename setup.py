"""Packages: everything under esremote/, plus the top-level flows/ and tasks/ folders installed as
esremote.flows and esremote.tasks, so nothing but `esremote*` lands in site-packages."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["esremote", "esremote.*"]) + ["esremote.flows", "esremote.tasks"],
    package_dir={"esremote.flows": "flows", "esremote.tasks": "tasks"},
)
