"""DynamoDB attribute values in wire format ({"S": "x"}, {"N": "5"}, {"M": {...}}, ...).

Validation into canonical form (numbers as DynamoDB prints them: "007" -> "7", "1.50" -> "1.5"),
equality and order as DynamoDB compares, item sizes as DynamoDB counts them for the 400 KB
limit, copies, and the plain Python form (`infra.dynamo.from_item`: numbers become int).

Stored items are never mutated: a write builds a new item, so old items handed to listeners or
kept by a transaction stay valid. Values handed out to callers are copies.
"""

from __future__ import annotations

import re
from decimal import Context, Decimal
from typing import Any

from botocore.exceptions import ParamValidationError

Value = dict[str, Any]
Item = dict[str, Value]

TYPES = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"})
SETS = frozenset({"SS", "NS", "BS"})
MAX_ITEM_BYTES = 400 * 1024


class Invalid(Exception):
    """A request DynamoDB rejects with a ValidationException; args[0] is its message."""


def param_error(report: str) -> ParamValidationError:
    """What the boto3 client itself raises, before sending, for a malformed parameter."""
    return ParamValidationError(report=report)


# --- numbers ---------------------------------------------------------------------------------

_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_CONTEXT = Context(prec=200)
OVERFLOW = (
    "Number overflow. Attempting to store a number with magnitude larger than supported range"
)


def canon_number(text: Any) -> str:
    """A number's canonical text; Invalid if DynamoDB would refuse it."""
    if type(text) is not str:
        raise param_error(f"Invalid type for parameter N, value: {text!r}, valid types: <str>")
    if text.isdigit() and text.isascii():
        if len(text) <= 38 and (text[0] != "0" or len(text) == 1):
            return text
    elif text[:1] == "-":
        rest = text[1:]
        if rest.isdigit() and rest.isascii() and len(rest) <= 38 and rest[0] != "0":
            return text
    return _canon_number_slow(text)


def _canon_number_slow(text: str) -> str:
    if not _NUMBER.match(text):
        raise Invalid(f"The parameter cannot be converted to a numeric value: {text}")
    number = Decimal(text)
    if not number:
        return "0"
    number = number.normalize(_CONTEXT)
    if len(number.as_tuple().digits) > 38:
        raise Invalid("Attempting to store more than 38 significant digits in a Number")
    if number.adjusted() > 125:
        raise Invalid(OVERFLOW)
    if number.adjusted() < -130:
        raise Invalid(
            "Number underflow. Attempting to store a number with magnitude smaller than supported "
            "range"
        )
    return format(number, "f")


def num(text: str) -> int | Decimal:
    """A canonical number's value, for order and arithmetic (int whenever integral)."""
    try:
        return int(text)
    except ValueError:
        return Decimal(text)


def arith(left: str, right: str, minus: bool) -> str:
    """left + right or left - right as canonical text; DynamoDB refuses a result it cannot
    hold exactly in 38 digits (with an overflow message, whatever the reason)."""
    try:
        a, b = int(left), int(right)
        exact = str(a - b if minus else a + b)
    except ValueError:
        x, y = Decimal(left), Decimal(right)
        exact = str(_CONTEXT.subtract(x, y) if minus else _CONTEXT.add(x, y))
    try:
        return canon_number(exact)
    except Invalid:
        raise Invalid(OVERFLOW) from None


# --- validation into canonical form -----------------------------------------------------------


def canon(value: Any) -> Value:
    """A validated, canonical copy of an attribute value."""
    if type(value) is not dict:
        raise param_error(f"Invalid type for attribute value {value!r}, valid types: <dict>")
    if len(value) != 1:
        if not value:
            raise Invalid(
                "Supplied AttributeValue is empty, must contain exactly one of the supported "
                "datatypes"
            )
        raise Invalid(
            "Supplied AttributeValue has more than one datatypes set, must contain exactly one "
            "of the supported datatypes"
        )
    ((kind, data),) = value.items()
    if kind == "S":
        if type(data) is not str:
            raise param_error(f"Invalid type for parameter S, value: {data!r}, valid types: <str>")
        return {"S": data}
    if kind == "N":
        return {"N": canon_number(data)}
    if kind == "BOOL":
        if type(data) is not bool:
            raise param_error(f"Invalid type for parameter BOOL, value: {data!r}")
        return {"BOOL": data}
    if kind == "NULL":
        if data is not True:
            raise Invalid(
                "One or more parameter values were invalid: Null attribute value types must have "
                "the value of true"
            )
        return {"NULL": True}
    if kind == "M":
        if type(data) is not dict:
            raise param_error(f"Invalid type for parameter M, value: {data!r}")
        return {"M": {_name(k): canon(v) for k, v in data.items()}}
    if kind == "L":
        if type(data) is not list:
            raise param_error(f"Invalid type for parameter L, value: {data!r}")
        return {"L": [canon(v) for v in data]}
    if kind == "B":
        return {"B": _blob(data)}
    if kind in SETS:
        return {kind: _canon_set(kind, data)}
    raise param_error(
        f'Unknown parameter in attribute value: "{kind}", must be one of: '
        + ", ".join(sorted(TYPES))
    )


def _name(name: Any) -> str:
    if type(name) is not str:
        raise param_error(f"Invalid type for attribute name {name!r}, valid types: <str>")
    return name


def _blob(data: Any) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str):  # boto3 encodes str blobs as UTF-8
        return data.encode()
    raise param_error(f"Invalid type for parameter B, value: {data!r}")


_SET_NAMES = {"SS": "string", "NS": "number", "BS": "binary"}


def _canon_set(kind: str, data: Any) -> list[Any]:
    if not isinstance(data, list | tuple | set | frozenset):
        raise param_error(f"Invalid type for parameter {kind}, value: {data!r}")
    if not data:
        raise Invalid(
            f"One or more parameter values were invalid: An {_SET_NAMES[kind]} set  may not be "
            "empty"
        )
    if kind == "SS":
        members: list[Any] = [_name(m) for m in data]
    elif kind == "NS":
        members = [canon_number(m) for m in data]
    else:
        members = [_blob(m) for m in data]
    if len(set(members)) != len(members):
        shown = ", ".join(str(m) for m in members)
        raise Invalid(
            f"One or more parameter values were invalid: Input collection [{shown}] contains "
            "duplicates."
        )
    return members


def canon_item(item: Any, what: str = "Item") -> Item:
    """A validated, canonical copy of an item (or of ExpressionAttributeValues)."""
    if type(item) is not dict:
        raise param_error(f"Invalid type for parameter {what}, value: {item!r}, valid types: dict")
    out = {}
    for name, value in item.items():
        if type(name) is str and type(value) is dict and len(value) == 1:  # fast paths: S and N
            data = value.get("S")
            if type(data) is str:
                out[name] = {"S": data}
                continue
            data = value.get("N")
            if data is not None:
                out[name] = {"N": canon_number(data)}
                continue
        out[_name(name)] = canon(value)
    return out


def canon_item_sized(item: Any, what: str = "Item") -> tuple[Item, int]:
    """canon_item, and the item's size (item_bytes) from the same pass."""
    if type(item) is not dict:
        raise param_error(f"Invalid type for parameter {what}, value: {item!r}, valid types: dict")
    out = {}
    size = 0
    for name, value in item.items():
        if type(name) is str and type(value) is dict and len(value) == 1:  # fast paths: S and N
            data = value.get("S")
            if type(data) is str:
                out[name] = {"S": data}
                size += (
                    len(name) + len(data)
                    if name.isascii() and data.isascii()
                    else (len(name.encode()) + len(data.encode()))
                )
                continue
            data = value.get("N")
            if data is not None:
                text = canon_number(data)
                out[name] = {"N": text}
                size += (len(name) if name.isascii() else len(name.encode())) + _number_bytes(text)
                continue
        canonical = out[_name(name)] = canon(value)
        size += (len(name) if name.isascii() else len(name.encode())) + value_bytes(canonical)
    return out, size


# --- comparison --------------------------------------------------------------------------------


def kind_of(value: Value) -> str:
    for kind in value:
        return kind
    raise Invalid("Supplied AttributeValue is empty")


def equal(a: Value, b: Value) -> bool:
    """DynamoDB's `=`: same type and same value (sets in any order, numbers by value)."""
    ((ta, xa),) = a.items()
    ((tb, xb),) = b.items()
    if ta != tb:
        return False
    if ta in SETS:
        return len(xa) == len(xb) and set(xa) == set(xb)
    if ta == "L":
        return len(xa) == len(xb) and all(map(equal, xa, xb))
    if ta == "M":
        return xa.keys() == xb.keys() and all(equal(xa[k], xb[k]) for k in xa)
    return bool(xa == xb)  # S, N (canonical text), B, BOOL, NULL


def sort_value(value: Value) -> Any:
    """The ordering key of an S, N or B value (None for other types)."""
    ((kind, data),) = value.items()
    if kind == "S" or kind == "B":
        return data
    if kind == "N":
        return num(data)
    return None


def key_value(value: Value) -> Any:
    """A key attribute's Python value: str, int/Decimal or bytes."""
    ((kind, data),) = value.items()
    return num(data) if kind == "N" else data


def size_of(value: Value) -> int | None:
    """The size() function: string length, bytes, or members; None for other types."""
    ((kind, data),) = value.items()
    if kind == "S":
        return len(data) if data.isascii() else len(data.encode("utf-16-le")) // 2
    if kind in ("B", "L", "M") or kind in SETS:
        return len(data)
    return None


# --- sizes -------------------------------------------------------------------------------------


def _number_bytes(text: str) -> int:
    """About 1 byte per 2 significant digits, plus 1 (plus 1 if negative)."""
    if text.isdigit():
        digits = len(text.rstrip("0")) or 1
        return 1 + (digits + 1) // 2
    digits = len(text.lstrip("-").replace(".", "").strip("0")) or 1
    return 1 + (digits + 1) // 2 + (1 if text[0] == "-" else 0)


def value_bytes(value: Value) -> int:
    ((kind, data),) = value.items()
    if kind == "S":
        return len(data) if data.isascii() else len(data.encode())
    if kind == "N":
        return _number_bytes(data)
    if kind == "B":
        return len(data)
    if kind == "BOOL" or kind == "NULL":
        return 1
    if kind == "SS":
        return sum(len(m.encode()) for m in data)
    if kind == "NS":
        return sum(_number_bytes(m) for m in data)
    if kind == "BS":
        return sum(len(m) for m in data)
    if kind == "L":
        return 3 + sum(1 + value_bytes(v) for v in data)
    return 3 + sum(1 + len(k.encode()) + value_bytes(v) for k, v in data.items())


def attribute_bytes(name: str, value: Value | None) -> int:
    if value is None:
        return 0
    return (len(name) if name.isascii() else len(name.encode())) + value_bytes(value)


def item_bytes(item: Item) -> int:
    """An item's size as DynamoDB counts it: attribute names plus values."""
    total = 0
    for name, value in item.items():
        total += len(name) if name.isascii() else len(name.encode())
        for kind, data in value.items():
            if kind == "S":
                total += len(data) if data.isascii() else len(data.encode())
            elif kind == "N":
                total += _number_bytes(data)
            else:
                total += value_bytes(value)
    return total


# --- copies and plain form ---------------------------------------------------------------------


def copy_value(value: Value) -> Value:
    ((kind, data),) = value.items()
    if kind == "L":
        return {"L": [copy_value(v) for v in data]}
    if kind == "M":
        return {"M": {k: copy_value(v) for k, v in data.items()}}
    if kind in SETS:
        return {kind: list(data)}
    return {kind: data}


_SCALARS = frozenset({"S", "N", "B", "BOOL", "NULL"})


def copy_item(item: Item) -> Item:
    out = {}
    for name, value in item.items():
        for kind, data in value.items():
            out[name] = {kind: data} if kind in _SCALARS else copy_value(value)
    return out


def plain(value: Value) -> Any:
    """The Python value, as `infra.dynamo.from_item` gives it (numbers as int)."""
    ((kind, data),) = value.items()
    if kind == "S" or kind == "BOOL" or kind == "B":
        return data
    if kind == "N":
        try:
            return int(data)
        except ValueError:
            return int(Decimal(data))
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: plain(v) for k, v in data.items()}
    if kind == "L":
        return [plain(v) for v in data]
    if kind == "NS":
        return {int(Decimal(m)) for m in data}
    return set(data)


def plain_item(item: Item) -> dict[str, Any]:
    return {name: plain(value) for name, value in item.items()}
