"""Registry argument checks follow ``**kwargs`` up a class's parents: a subclass lists only its
own arguments and still accepts (and type-checks) its parent's."""

from __future__ import annotations

import pytest

from deepworks.errors import ConfigError
from deepworks.registry import TASKS, Registry, accepted_kwargs


class Base:
    def __init__(self, size: int = 3, rate: float = 0.1):
        self.size, self.rate = size, rate


class Child(Base):
    def __init__(self, extra: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.extra = extra


class Open:
    def __init__(self, **kwargs):
        self.kwargs = kwargs


def test_a_subclass_accepts_its_parents_arguments_and_checks_them():
    reg = Registry("a thing")
    reg.register("child")(Child)
    assert accepted_kwargs(Child) == (["extra", "size", "rate"], False)
    built = reg.build("child", {"extra": True, "size": 5}, where="thing")
    assert (built.extra, built.size, built.rate) == (True, 5, 0.1)
    with pytest.raises(ConfigError, match=r"thing: unknown key 'sise'; did you mean 'size'\?"):
        reg.build("child", {"sise": 5}, where="thing")
    with pytest.raises(ConfigError, match=r"thing.size: 'big' is not a valid int"):
        reg.build("child", {"size": "big"}, where="thing")


def test_a_class_that_ends_in_kwargs_accepts_anything():
    assert accepted_kwargs(Open) == ([], True)


@pytest.mark.parametrize("name", ["adversarial_training", "trades"])
def test_the_adversarial_tasks_take_the_shared_attack_options(name):
    names, varkw = accepted_kwargs(TASKS.get(name))
    assert not varkw
    assert {"eps", "alpha", "steps", "eval_eps", "curve_samples", "top_k"} <= set(names)
    task = TASKS.build(name, {"eps": 0.2, "steps": 3}, where="task")
    assert (task.eps, task.steps) == (0.2, 3)
    with pytest.raises(ConfigError, match="task: unknown key 'epz'; did you mean 'eps'"):
        TASKS.build(name, {"epz": 0.2}, where="task")
