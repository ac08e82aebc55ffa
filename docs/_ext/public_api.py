"""The API reference, generated from the code: every name in a package's ``__all__``.

``.. public-api:: mts_lightning.nn`` documents the package's docstring and each name its
``__all__`` owns (a name exported by several packages is documented once, by the deepest
package that exports it, and listed with a link by the others). The build warns (an error
under ``-W``) for a public name without a docstring and for a package with an ``__all__``
that no page documents, so the reference cannot fall behind the code.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from types import ModuleType
from typing import Any

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)


def public_packages(root: str) -> dict[str, ModuleType]:
    """Every package under ``root`` (itself included) that declares ``__all__``, by name."""
    top = importlib.import_module(root)
    packages = {root: top}
    for info in pkgutil.walk_packages(top.__path__, prefix=f"{root}."):
        if info.ispkg:
            packages[info.name] = importlib.import_module(info.name)
    return {name: module for name, module in packages.items() if hasattr(module, "__all__")}


def owner(name: str, obj: Any, packages: dict[str, ModuleType]) -> str:
    """The deepest package whose ``__all__`` exports ``obj`` under ``name``: where it is
    documented."""
    exporters = [
        package
        for package, module in packages.items()
        if name in module.__all__ and getattr(module, name, None) is obj
    ]
    return max(exporters, key=lambda package: package.count("."))


def attribute_doc(package: ModuleType, name: str) -> list[str]:
    """The ``#:`` comment of a module-level constant, from the module that assigns it."""
    prefix = f"{package.__name__}."
    candidates = [package.__name__] + [m for m in list(sys.modules) if m.startswith(prefix)]
    for module_name in candidates:
        try:
            docs = ModuleAnalyzer.for_module(module_name).find_attr_docs()
        except Exception:  # noqa: BLE001 - a module without source has no attribute docs
            continue
        lines = docs.get(("", name))
        if lines and getattr(sys.modules[module_name], name, None) is getattr(package, name):
            return [line for line in lines if line.strip()]
    return []


def _ours(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "mts_lightning"


def _kind(obj: Any) -> str:
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if inspect.isroutine(obj):
        return "function"
    return "data"


class PublicAPI(SphinxDirective):
    """``.. public-api:: PACKAGE``: the package's docstring, then each name it owns."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        package_name = self.arguments[0]
        packages = public_packages(self.config.public_api_root)
        if package_name not in packages:
            raise self.error(f"public-api: {package_name} is not a package with __all__")
        package = packages[package_name]
        self.env.public_api_documented = getattr(self.env, "public_api_documented", set())
        self.env.public_api_documented.add(package_name)
        lines = [f".. automodule:: {package_name}", "   :no-members:", ""]
        elsewhere = []
        for name in package.__all__:
            obj = getattr(package, name)
            home = owner(name, obj, packages)
            if home != package_name:
                elsewhere.append(f"- :py:obj:`{name} <{home}.{name}>` (from ``{home}``)")
                continue
            lines += self._entry(package, name, obj)
        if elsewhere:
            lines += ["", "Also exported here, documented with their package:", "", *elsewhere]
        node = nodes.section()
        node.document = self.state.document
        self.state.nested_parse(StringList(lines, source=package_name), 0, node)
        return node.children

    def _entry(self, package: ModuleType, name: str, obj: Any) -> list[str]:
        where = f"{package.__name__}.{name}"
        kind = _kind(obj)
        if kind == "data":
            doc = attribute_doc(package, name)
            if not doc:
                logger.warning(
                    f"public name {where} has no documentation (a #: comment where it is set)",
                    location=self.get_location(),
                )
            value = repr(obj)
            value = value if len(value) <= 80 else value[:77] + "..."
            return [
                f".. py:data:: {name}",
                f"   :module: {package.__name__}",
                f"   :value: {value}",
                "",
                *("   " + d for d in doc),
                "",
            ]
        if not inspect.getdoc(obj):
            logger.warning(f"public name {where} has no docstring", location=self.get_location())
        options = []
        if kind in ("class", "exception"):
            # Members from this package's own base classes (mixins) are documented; those of
            # torch, Lightning and Python are not.
            foreign = {base.__name__ for base in obj.__mro__[1:] if not _ours(base)}
            options = [
                "   :members:",
                "   :show-inheritance:",
                f"   :inherited-members: {', '.join(sorted(foreign))}",
            ]
        return [f".. auto{kind}:: {where}", *options, ""]


def check_every_package_documented(app: Sphinx, env: Any) -> None:
    documented = getattr(env, "public_api_documented", set())
    for package in sorted(set(public_packages(app.config.public_api_root)) - documented):
        logger.warning(f"package {package} has an __all__ but no page documents it (public-api)")


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("public_api_root", "", "env")
    app.add_directive("public-api", PublicAPI)
    app.connect("env-check-consistency", check_every_package_documented)
    return {"version": "1", "parallel_read_safe": False, "parallel_write_safe": True}
