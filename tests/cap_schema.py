"""The CAP 1.2 XML schema and the OASIS examples, read from the shared data at test time.

They are OASIS's ("Copyright OASIS Open 2010 All Rights Reserved", via github willglynn/oasiscap fixtures, see
shared/data/README.md): not copied into this repository. Missing files skip the tests on a developer's machine
and fail them under ``CI=true``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, shared_data

CAP_DATA = shared_data("cap")
CAP_XSD = CAP_DATA / "schema" / "cap12.xsd"


def _needed(path: Path) -> None:
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} is missing; CI=true requires it")
        pytest.skip(f"{path} is missing")


def cap_schema() -> Any:
    """The CAP 1.2 schema as an ``xmlschema.XMLSchema``."""
    import xmlschema

    _needed(CAP_XSD)
    return xmlschema.XMLSchema(str(CAP_XSD))


def oasis_examples() -> list[Path]:
    """The four examples of the CAP 1.2 specification's Appendix A."""
    _needed(CAP_DATA)
    found = sorted(CAP_DATA.glob("v1dot2_appendix_adot*.xml"))
    if len(found) != 4:
        pytest.fail(f"expected the 4 OASIS examples in {CAP_DATA}, found {len(found)}")
    return found
