"""The documentation site builds with warnings as errors, and documents every public name."""

import importlib
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
sys.path.insert(0, str(DOCS / "_ext"))

from public_api import owner, public_packages  # noqa: E402

from tests.helpers import doc_pages  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


def sphinx_build(source: Path, out: Path) -> subprocess.CompletedProcess:
    """``make docs``'s build, into ``out``."""
    command = [sys.executable, "-m", "sphinx", "-E", "-W", "--keep-going", "-q", "-b", "html"]
    return subprocess.run(
        [*command, "-d", str(out / "doctrees"), str(source), str(out / "html")],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_docs_site_builds_and_documents_every_public_name(tmp_path):
    started = time.monotonic()
    built = sphinx_build(DOCS, tmp_path)
    seconds = time.monotonic() - started
    assert built.returncode == 0, built.stderr[-3000:]
    assert built.stderr == ""
    html = tmp_path / "html"
    for page in ("index", "getting-started", "layer", "results/index", "architecture"):
        assert (html / f"{page}.html").is_file(), page
    # Compared with the code here too, not only by the build's own check: each name of each
    # package's __all__ is an entry on its owner's page.
    packages = public_packages("mts_lightning")
    assert {"mts_lightning", "mts_lightning.nn", "mts_lightning.data"} <= set(packages)
    for package, module in packages.items():
        for name in module.__all__:
            home = owner(name, getattr(module, name), packages)
            page = (html / "api" / f"{home}.html").read_text()
            assert f'id="{home}.{name}"' in page, f"{package}.{name} is not documented"
    print(f"docs site built in {seconds:.1f} s")


def _fake_project(root: Path, module_source: str) -> Path:
    """A one-page site documenting the package ``fakepkg`` with the public-api directive."""
    (root / "fakepkg").mkdir(parents=True)
    (root / "fakepkg" / "__init__.py").write_text(textwrap.dedent(module_source))
    (root / "fakepkg" / "inner").mkdir()
    (root / "fakepkg" / "inner" / "__init__.py").write_text('"""Inner."""\n')
    source = root / "source"
    source.mkdir()
    (source / "conf.py").write_text(
        f"import sys\nsys.path[:0] = [{str(root)!r}, {str(DOCS / '_ext')!r}]\n"
        "extensions = ['sphinx.ext.autodoc', 'sphinx.ext.napoleon', 'public_api']\n"
        "public_api_root = 'fakepkg'\n"
    )
    (source / "index.rst").write_text("Fake\n====\n\n.. public-api:: fakepkg\n")
    return source


def test_an_undocumented_public_name_fails_the_build(tmp_path):
    source = _fake_project(
        tmp_path,
        '''
        """A package."""

        #: The answer.
        ANSWER = 42
        LIMIT = 7

        def documented():
            """Says what it does."""

        def bare():
            pass

        __all__ = ["ANSWER", "LIMIT", "bare", "documented"]
        ''',
    )
    built = sphinx_build(source, tmp_path / "out")
    assert built.returncode != 0
    assert "public name fakepkg.bare has no docstring" in built.stderr
    assert "public name fakepkg.LIMIT has no documentation" in built.stderr
    assert "fakepkg.documented" not in built.stderr and "fakepkg.ANSWER" not in built.stderr


def test_a_package_with_public_names_but_no_page_fails_the_build(tmp_path):
    source = _fake_project(tmp_path, '"""A package."""\n\n__all__ = []\n')
    (tmp_path / "fakepkg" / "inner" / "__init__.py").write_text(
        '"""Inner."""\n\ndef helper():\n    """Helps."""\n\n__all__ = ["helper"]\n'
    )
    built = sphinx_build(source, tmp_path / "out")
    assert built.returncode != 0
    assert "package fakepkg.inner has an __all__ but no page documents it" in built.stderr
    sys.modules.pop("fakepkg", None)
    importlib.invalidate_caches()


def test_readme_is_a_landing_page_whose_examples_the_docs_repeat():
    """At most about 200 lines, and each of its code blocks also on a page of the site (the
    README says nothing the documentation does not)."""
    readme = REPO / "README.md"
    assert len(readme.read_text().splitlines()) <= 200
    site = [page.read_text() for page in doc_pages.pages()[1:]]
    blocks = doc_pages.code_blocks(readme)
    assert {"bash", "python"} <= {language for language, _ in blocks}
    for language, code in blocks:
        assert any(f"```{language}\n{code}```" in page for page in site), code
    # Its links lead to files that exist.
    for target in re.findall(r"\]\(([^)#:]+)\)", readme.read_text()):
        assert (REPO / target).exists(), target
