"""Griffe extension for the API page: a Google-style ``Example:`` section is read like
``Examples:``, so its ``>>>`` lines render as code instead of nested block quotes."""

from __future__ import annotations

import re

import griffe

EXAMPLE = re.compile(r"^(\s*)Example:\s*$", re.M)


class ExampleSections(griffe.Extension):
    def on_instance(self, **kwargs) -> None:
        docstring = getattr(kwargs.get("obj"), "docstring", None)
        if docstring is not None and "Example:" in docstring.value:
            docstring.value = EXAMPLE.sub(r"\1Examples:", docstring.value)
