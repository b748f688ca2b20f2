"""A quicker ``__init__`` for the core's frozen, keyword-only dataclasses.

A frozen dataclass's generated ``__init__`` stores each field through
``object.__setattr__(self, name, value)`` (its own ``__setattr__`` refuses every change), which cost
about 190 ns a field on this project's machine. A five-team report builds some 300 fields (the
incident, its assignments and deadlines, its events), so that alone was about an eighth of the
server's CPU at the batch door. :func:`quick_init` swaps in an ``__init__`` of the same signature
that stores the fields in one step per field through the slot's descriptor (a slotted class), or in
one step for all of them by giving the instance its ``__dict__`` whole (a class without slots): both
about a third of the time.

Nothing else changes: the class is the same dataclass (fields, equality, hashing, ``repr``, pickling,
``dataclasses.replace``, orjson's serialisation), its instances are as immutable as before (setting
an attribute still raises ``FrozenInstanceError``), and a missing or unknown keyword is still a
``TypeError``. Only classes this module can copy faithfully are accepted: every field keyword-only
and set by ``__init__``, no ``default_factory``, no ``__post_init__``, and the fields either all in
slots or all in the instance's ``__dict__``; anything else raises at import time rather than behave
differently.

:func:`replace` is ``dataclasses.replace`` for these classes without its walk over the fields' descriptions
(the core makes each change of an incident by a few of them).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import MemberDescriptorType
from typing import TYPE_CHECKING, Any, TypeVar

T = TypeVar("T")


def quick_init(cls: type[T]) -> type[T]:
    """Give ``cls`` (a frozen, keyword-only dataclass) the quicker ``__init__``; returns ``cls``."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen:
        raise TypeError(f"{cls.__name__} is not a frozen dataclass")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__")
    namespace: dict[str, Any] = {"_set": object.__setattr__}
    arguments: list[str] = []
    slotted: list[str] = []
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = field.name
        if not field.init or not field.kw_only or field.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{name}: only keyword-only fields with plain defaults are supported")
        if field.default is dataclasses.MISSING:
            arguments.append(name)
        else:
            namespace[f"_default_{name}"] = field.default
            arguments.append(f"{name}=_default_{name}")
        slot = next((klass.__dict__[name] for klass in cls.__mro__ if name in klass.__dict__), None)
        if isinstance(slot, MemberDescriptorType):
            namespace[f"_set_{name}"] = slot.__set__
            slotted.append(name)
    names = [field.name for field in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if slotted == names:
        body = [f"    _set_{name}(self, {name})" for name in names]
    elif not slotted and cls.__dictoffset__ != 0:  # instances keep a __dict__
        # One dict in field order: what the generated __init__ would have left, and what orjson reads.
        body = ["    _set(self, '__dict__', {" + ", ".join(f"{name!r}: {name}" for name in names) + "})"]
    else:
        raise TypeError(f"{cls.__name__} keeps some fields in slots and others not")
    signature = f"self, *, {', '.join(arguments)}" if arguments else "self"
    source = f"def __init__({signature}):\n" + ("\n".join(body) if names else "    pass") + "\n"
    exec(source, namespace)  # our own text, built from the class's field names
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    init.__annotations__ = dict(cls.__init__.__annotations__)
    cls.__init__ = init  # type: ignore[method-assign]
    reader = "{" + ", ".join(f"{name!r}: obj.{name}" for name in names) + "}"
    _FIELDS_OF[cls] = eval(f"lambda obj: {reader}", {})  # our own text too: the fields as a dict, in order
    return cls


#: For each class given the quicker ``__init__``: its fields' values as keyword arguments.
_FIELDS_OF: dict[type, Callable[[Any], dict[str, Any]]] = {}


if TYPE_CHECKING:
    # Type checkers see dataclasses.replace itself, so that they go on checking each call's field names and types.
    from dataclasses import replace as replace
else:

    def replace(obj, /, **changes):
        """:func:`dataclasses.replace`, quicker for a class given :func:`quick_init` (the same answer, the same
        ``TypeError`` for a field it does not have): the fields are read in one expression, not field by field
        through the dataclass's description of them."""
        fields_of = _FIELDS_OF.get(type(obj))
        if fields_of is None:
            return dataclasses.replace(obj, **changes)
        return type(obj)(**{**fields_of(obj), **changes})
