"""Recipes: one kind of run each, picked by the config's ``recipe:`` key (``supervised`` default).

A recipe (:class:`Recipe`) owns its config schema, its outer loop, its metric specs and its report
sections; :func:`train` (``deepworks train``) runs any of them. A new kind of run is one module
with a ``Recipe`` subclass under ``@register_recipe("name")``, imported below;
``deepworks list recipes`` shows it.
"""

from deepworks.recipes import rl, supervised  # noqa: F401  (registers the recipes)
from deepworks.recipes.base import Recipe, RunContext, RunResult
from deepworks.recipes.launch import train
from deepworks.registry import register_recipe

__all__ = ["Recipe", "RunContext", "RunResult", "register_recipe", "train"]
