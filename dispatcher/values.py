"""The values every door takes, constrained to what the store can hold (pydantic ``Annotated`` types).

A value the database would refuse must be refused where it enters, with the problem named: once it
reaches the writer it fails a commit, and with it the batch of other callers' commands it rode in.
So the HTTP models (:mod:`gateways.schemas`), the route parameters, the MQTT codec and the roster
document all take their ids, positions and text from here. (Here rather than in ``gateways/``
because the roster document, :mod:`dispatcher.roster_file`, is validated with them too.)

The limits, and why:

- **Ids and sequence numbers** are at most 2^31 - 1: incident ids, event ``seq``, handover and token
  ids are ``INTEGER`` columns, which PostgreSQL keeps in 32 bits (SQLite in 64). A larger value can
  name no row, and PostgreSQL refuses it as a query parameter. Offsets share the bound.
- **Coordinates** are finite numbers within ±90 / ±180 (no NaN or Infinity, which Python's JSON
  reader takes and no answer can carry back).
- **Text** holds no NUL character (PostgreSQL refuses it in text) and no lone surrogate (not
  Unicode: it cannot be encoded as UTF-8, to the database or into an answer).

Each check is one pydantic constraint or one short function on a string; nothing walks a request
twice.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

#: The largest value of an ``INTEGER`` column on PostgreSQL, the narrower of the two backends.
INT32_MAX = 2**31 - 1


def storable_text(value: str) -> str:
    """``value`` unchanged, or a validation error naming the NUL or lone surrogate it holds.

    The surrogate check only runs on non-ASCII text (pydantic's length and pattern constraints also
    refuse surrogates; a field without them relies on this).
    """
    if "\x00" in value:
        raise PydanticCustomError("text_nul", "the NUL character (\\u0000) is not allowed in text")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise PydanticCustomError(
                "text_surrogate", "a lone surrogate (\\ud800-\\udfff) is not valid Unicode text"
            ) from None
    return value


Text = Annotated[str, AfterValidator(storable_text)]
"""A string the store can hold: no NUL, valid Unicode. Lengths and patterns are added per field."""

IncidentId = Annotated[int, Field(ge=1, le=INT32_MAX, description="an incident id (1 to 2^31 - 1)")]
RowId = Annotated[int, Field(ge=1, le=INT32_MAX, description="a row id (1 to 2^31 - 1)")]
Seq = Annotated[int, Field(ge=0, le=INT32_MAX, description="an event sequence number (0 to 2^31 - 1)")]
Offset = Annotated[int, Field(ge=0, le=INT32_MAX, description="rows to skip (0 to 2^31 - 1)")]
VersionNumber = Annotated[int, Field(ge=1, le=INT32_MAX)]

Latitude = Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False, description="degrees, finite")]
Longitude = Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False, description="degrees, finite")]
