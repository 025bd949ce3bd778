"""DynamoDB's expression language, parsed once per expression text and compiled to closures.

Condition (and filter) expressions, update expressions, key conditions and projections, with
the errors DynamoDB gives for them: syntax errors, reserved words used as names, undefined or
unused #names and :values (checked by the store across a request's expressions), operand types
of :values that no item could make valid, overlapping update paths.

A compiled expression is bound to its ExpressionAttributeNames (names resolve at compile time)
and cached by (text, names); :values are looked up at evaluation. Items and values are in wire
format and never mutated: an update builds a new item, copying only the containers it changes.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.sim.values import (
    SETS,
    TYPES,
    Invalid,
    Item,
    Value,
    arith,
    equal,
    num,
    size_of,
)

RESERVED = frozenset(
    word.upper()
    for line in Path(__file__).with_name("reserved_words.txt").read_text().splitlines()
    if not line.startswith("#")
    for word in line.split()
)

PathT = tuple[Any, ...]  # attribute names (str) and list indexes (int)
Values = dict[str, Value]
Getter = Callable[[Item, Values], Value | None]
Check = Callable[[Values], None]

_TOKEN = re.compile(
    r"(?P<ref>[#:][A-Za-z0-9_]+)|(?P<name>[A-Za-z][A-Za-z0-9_]*)|(?P<num>[0-9]+)"
    r"|(?P<op><>|<=|>=|[=<>(),.\[\]+-])"
)
_SPACE = re.compile(r"\s*")
_EOF = ("eof", "<EOF>", -1)
_COMPARATORS = frozenset({"=", "<>", "<", "<=", ">", ">="})
_ORDERED = frozenset({"S", "N", "B"})
_BOOLEAN_FUNCTIONS = {
    "attribute_exists": 1,
    "attribute_not_exists": 1,
    "attribute_type": 2,
    "begins_with": 2,
    "contains": 2,
}
_FUNCTIONS = frozenset({*_BOOLEAN_FUNCTIONS, "size", "if_not_exists", "list_append"})
_TYPE_NAMES = {
    "S": "STRING",
    "N": "NUMBER",
    "B": "BINARY",
    "SS": "STRING SET",
    "NS": "NUMBER SET",
    "BS": "BINARY SET",
    "M": "MAP",
    "L": "LIST",
    "BOOL": "BOOLEAN",
    "NULL": "NULL",
}
MISSING_ATTRIBUTE = "The provided expression refers to an attribute that does not exist in the item"
WRONG_TYPE = "An operand in the update expression has an incorrect data type"
BAD_PATH = "The document path provided in the update expression is invalid for update"


def _tokens(text: str, slot: str) -> list[tuple[str, str, int]]:
    found: list[tuple[str, str, int]] = []
    pos, end = 0, len(text)
    while True:
        pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
        if pos >= end:
            return found
        match = _TOKEN.match(text, pos)
        if match is None:
            near = text[max(0, pos - 10) : pos + 10]
            raise Invalid(f'Invalid {slot}: Syntax error; token: "{text[pos]}", near: "{near}"')
        kind = match.lastgroup or "op"
        token = match.group()
        if kind == "ref":
            kind = "nref" if token[0] == "#" else "vref"
        found.append((kind, token, pos))
        pos = match.end()


class _Parser:
    """Recursive descent over one expression; collects the #names and :values it uses."""

    def __init__(self, text: str, slot: str) -> None:
        self.text = text
        self.slot = slot
        self.toks = _tokens(text, slot)
        self.pos = 0
        self.names: set[str] = set()
        self.values: set[str] = set()

    # tokens
    def peek(self, ahead: int = 0) -> tuple[str, str, int]:
        i = self.pos + ahead
        return self.toks[i] if i < len(self.toks) else _EOF

    def at_op(self, op: str, ahead: int = 0) -> bool:
        kind, text, _ = self.peek(ahead)
        return kind == "op" and text == op

    def at_word(self, word: str) -> bool:
        kind, text, _ = self.peek()
        return kind == "name" and text.upper() == word

    def expect_op(self, op: str) -> None:
        if not self.at_op(op):
            self.fail()
        self.pos += 1

    def fail(self) -> Any:
        token = self.peek()
        start = self.toks[self.pos - 1][2] if 0 < self.pos <= len(self.toks) else max(token[2], 0)
        after = self.peek(1)
        end = after[2] + len(after[1]) if after[0] != "eof" else len(self.text)
        near = self.text[start:end]
        raise Invalid(f'Invalid {self.slot}: Syntax error; token: "{token[1]}", near: "{near}"')

    def invalid(self, message: str) -> Any:
        raise Invalid(f"Invalid {self.slot}: {message}")

    def finish(self) -> None:
        if self.pos < len(self.toks):
            self.fail()

    # paths and operands
    def path(self) -> tuple[str, PathT]:
        parts: list[Any] = [self.element()]
        while True:
            if self.at_op("."):
                self.pos += 1
                parts.append(self.element())
            elif self.at_op("["):
                self.pos += 1
                kind, text, _ = self.peek()
                if kind != "num":
                    self.fail()
                self.pos += 1
                self.expect_op("]")
                parts.append(int(text))
            else:
                return ("path", tuple(parts))

    def element(self) -> str:
        kind, text, _ = self.peek()
        if kind == "nref":
            self.pos += 1
            self.names.add(text)
            return text
        if kind == "name":
            if text.upper() in RESERVED:
                self.invalid(f"Attribute name is a reserved keyword; reserved keyword: {text}")
            self.pos += 1
            return text
        return self.fail()  # type: ignore[no-any-return,unused-ignore]

    def operand(self) -> tuple[Any, ...]:
        kind, text, _ = self.peek()
        if kind == "vref":
            self.pos += 1
            self.values.add(text)
            return ("value", text)
        if kind == "name" and self.at_op("(", 1):
            self.pos += 2
            args = self.arguments()
            if text != "size":
                self.misused(text)
            if len(args) != 1:
                self.invalid(
                    "Incorrect number of operands for operator or function; operator or function:"
                    f" size, number of operands: {len(args)}"
                )
            if args[0][0] != "path":
                self.invalid(
                    "Operator or function requires a document path; operator or function: size"
                )
            return ("size", args[0])
        return self.path()

    def arguments(self) -> list[tuple[Any, ...]]:
        args = [self.operand()]
        while self.at_op(","):
            self.pos += 1
            args.append(self.operand())
        self.expect_op(")")
        return args

    def misused(self, name: str) -> Any:
        if name in _FUNCTIONS:
            self.invalid(
                "The function is not allowed to be used this way in an expression; function: "
                + name
            )
        self.invalid(f"Invalid function name; function: {name}")

    # conditions: OR < AND < NOT < comparisons and functions
    def condition(self) -> tuple[Any, ...]:
        node = self.conjunction()
        while self.at_word("OR"):
            self.pos += 1
            node = ("or", node, self.conjunction())
        return node

    def conjunction(self) -> tuple[Any, ...]:
        node = self.negation()
        while self.at_word("AND"):
            self.pos += 1
            node = ("and", node, self.negation())
        return node

    def negation(self) -> tuple[Any, ...]:
        if self.at_word("NOT"):
            self.pos += 1
            return ("not", self.negation())
        return self.atom()

    def atom(self) -> tuple[Any, ...]:
        kind, text, _ = self.peek()
        if kind == "op" and text == "(":
            self.pos += 1
            inner = self.condition()
            self.expect_op(")")
            if inner[0] == "paren":
                self.invalid("The expression has redundant parentheses;")
            return ("paren", inner)
        if kind == "name" and text != "size" and self.at_op("(", 1):
            self.pos += 2
            return self.function(text, self.arguments())
        left = self.operand()
        kind, text, _ = self.peek()
        if kind == "op" and text in _COMPARATORS:
            self.pos += 1
            return ("cmp", text, left, self.operand())
        if self.at_word("BETWEEN"):
            self.pos += 1
            low = self.operand()
            if not self.at_word("AND"):
                self.fail()
            self.pos += 1
            return ("between", left, low, self.operand())
        if self.at_word("IN"):
            self.pos += 1
            self.expect_op("(")
            options = self.arguments()
            if len(options) > 100:
                self.invalid("The IN operator is provided with too many operands; number: 101")
            return ("in", left, options)
        return self.fail()  # type: ignore[no-any-return,unused-ignore]

    def function(self, name: str, args: list[tuple[Any, ...]]) -> tuple[Any, ...]:
        arity = _BOOLEAN_FUNCTIONS.get(name)
        if arity is None:
            self.misused(name)
        if len(args) != arity:
            self.invalid(
                "Incorrect number of operands for operator or function; operator or function: "
                f"{name}, number of operands: {len(args)}"
            )
        if name.startswith("attribute_") and args[0][0] != "path":
            self.invalid(
                f"Operator or function requires a document path; operator or function: {name}"
            )
        if name == "attribute_type" and args[1][0] != "value":
            self.invalid(
                "Incorrect operand type for operator or function; operator or function: "
                "attribute_type, operand type: PATH"
            )
        if name == "contains" and args[0] == args[1] and args[0][0] == "path":
            self.invalid(
                "The first operand must be distinct from the remaining operands for this operator"
                f" or function; operator: contains, first operand: [{_show(args[0][1])}]"
            )
        return ("fn", name, args)

    # update expressions
    def update(self) -> dict[str, list[Any]]:
        if not self.toks:
            self.invalid("The expression can not be empty;")
        clauses: dict[str, list[Any]] = {}
        while self.pos < len(self.toks):
            kind, text, _ = self.peek()
            clause = text.upper()
            if kind != "name" or clause not in ("SET", "REMOVE", "ADD", "DELETE"):
                self.fail()
            if clause in clauses:
                self.invalid(
                    f'The "{clause}" section can only be used once in an update expression;'
                )
            self.pos += 1
            actions = [self.update_action(clause)]
            while self.at_op(","):
                self.pos += 1
                actions.append(self.update_action(clause))
            clauses[clause] = actions
        return clauses

    def update_action(self, clause: str) -> Any:
        target = self.path()
        if clause == "REMOVE":
            return target
        if clause == "SET":
            self.expect_op("=")
            return (target, self.set_value())
        kind, text, _ = self.peek()
        if kind != "vref":
            self.fail()
        self.pos += 1
        self.values.add(text)
        return (target, text)

    def set_value(self) -> tuple[Any, ...]:
        left = self.set_operand()
        if self.at_op("+") or self.at_op("-"):
            op = self.peek()[1]
            self.pos += 1
            return ("arith", op, left, self.set_operand())
        return left

    def set_operand(self) -> tuple[Any, ...]:
        kind, text, _ = self.peek()
        if kind == "vref":
            self.pos += 1
            self.values.add(text)
            return ("value", text)
        if kind == "op" and text == "(":
            self.pos += 1
            inner = self.set_value()
            self.expect_op(")")
            return inner
        if kind == "name" and self.at_op("(", 1):
            self.pos += 2
            args = [self.set_operand()]
            while self.at_op(","):
                self.pos += 1
                args.append(self.set_operand())
            self.expect_op(")")
            if text not in ("if_not_exists", "list_append"):
                self.misused(text)
            if len(args) != 2:
                self.invalid(
                    "Incorrect number of operands for operator or function; operator or function:"
                    f" {text}, number of operands: {len(args)}"
                )
            if text == "if_not_exists":
                if args[0][0] != "path":
                    self.invalid(
                        "Operator or function requires a document path; operator or function: "
                        "if_not_exists"
                    )
                return ("if_not_exists", args[0], args[1])
            if any(a[0] == "list_append" for a in args):
                self.misused("list_append")
            return ("list_append", args[0], args[1])
        return self.path()

    def paths(self) -> list[tuple[str, PathT]]:
        found = [self.path()]
        while self.at_op(","):
            self.pos += 1
            found.append(self.path())
        return found


def _show(path: PathT) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in path)


def _resolve(path: PathT, names: dict[str, str], slot: str) -> PathT:
    resolved = []
    for part in path:
        if isinstance(part, str) and part[0] == "#":
            name = names.get(part)
            if name is None:
                raise Invalid(
                    f"Invalid {slot}: An expression attribute name used in the document path is "
                    f"not defined; attribute name: {part}"
                )
            resolved.append(name)
        else:
            resolved.append(part)
    return tuple(resolved)


def walk(value: Value | None, rest: PathT) -> Value | None:
    for part in rest:
        if value is None:
            return None
        ((kind, data),) = value.items()
        if type(part) is int:
            if kind != "L" or part >= len(data):
                return None
            value = data[part]
        else:
            if kind != "M":
                return None
            value = data.get(part)
    return value


def get_path(item: Item, path: PathT) -> Value | None:
    value = item.get(path[0])
    return walk(value, path[1:]) if len(path) > 1 and value is not None else value


def _getter(path: PathT) -> Getter:
    first = path[0]
    if len(path) == 1:
        return lambda item, vals: item.get(first)
    rest = path[1:]
    return lambda item, vals: walk(item.get(first), rest)


def _type_check(ref: str, allowed: frozenset[str], what: str, slot: str) -> Check:
    def check(vals: Values) -> None:
        kind = next(iter(vals[ref]))
        if kind not in allowed:
            raise Invalid(
                f"Invalid {slot}: Incorrect operand type for operator or function; operator or "
                f"function: {what}, operand type: {kind}"
            )

    return check


# --- conditions --------------------------------------------------------------------------------


class Condition:
    """A compiled ConditionExpression / FilterExpression: evaluate(item, values) -> bool."""

    __slots__ = ("checks", "evaluate", "names", "slot", "values")

    def __init__(self, text: str, names: dict[str, str], slot: str) -> None:
        self.slot = slot
        parser = _Parser(text, slot)
        if not parser.toks:
            parser.invalid("The expression can not be empty;")
        tree = parser.condition()
        parser.finish()
        self.names = frozenset(parser.names)
        self.values = frozenset(parser.values)
        self.checks: list[Check] = []
        self.evaluate = _Compiler(names, slot, self.checks).condition(tree)


class _Compiler:
    def __init__(self, names: dict[str, str], slot: str, checks: list[Check]) -> None:
        self.names = names
        self.slot = slot
        self.checks = checks

    def operand(self, node: tuple[Any, ...]) -> Getter:
        kind = node[0]
        if kind == "value":
            ref = node[1]
            return lambda item, vals: vals[ref]
        if kind == "path":
            return _getter(_resolve(node[1], self.names, self.slot))
        get = self.operand(node[1])  # size(path)

        def size(item: Item, vals: Values) -> Value | None:
            value = get(item, vals)
            if value is None:
                return None
            count = size_of(value)
            return None if count is None else {"N": str(count)}

        return size

    def require(self, node: tuple[Any, ...], allowed: frozenset[str], what: str) -> None:
        if node[0] == "value":
            self.checks.append(_type_check(node[1], allowed, what, self.slot))

    def condition(self, node: tuple[Any, ...]) -> Callable[[Item, Values], bool]:
        kind = node[0]
        if kind == "paren":
            return self.condition(node[1])
        if kind == "or":
            a, b = self.condition(node[1]), self.condition(node[2])
            return lambda item, vals: a(item, vals) or b(item, vals)
        if kind == "and":
            a, b = self.condition(node[1]), self.condition(node[2])
            return lambda item, vals: a(item, vals) and b(item, vals)
        if kind == "not":
            a = self.condition(node[1])
            return lambda item, vals: not a(item, vals)
        if kind == "cmp":
            return self.comparison(node[1], node[2], node[3])
        if kind == "between":
            return self.between(node[1], node[2], node[3])
        if kind == "in":
            get = self.operand(node[1])
            options = [self.operand(o) for o in node[2]]

            def within(item: Item, vals: Values) -> bool:
                value = get(item, vals)
                if value is None:
                    return False
                for option in options:
                    other = option(item, vals)
                    if other is not None and equal(value, other):
                        return True
                return False

            return within
        return self.function(node[1], node[2])

    def comparison(
        self, op: str, left: tuple[Any, ...], right: tuple[Any, ...]
    ) -> Callable[[Item, Values], bool]:
        a, b = self.operand(left), self.operand(right)
        if op == "=":

            def eq(item: Item, vals: Values) -> bool:
                x = a(item, vals)
                if x is None:
                    return False
                y = b(item, vals)
                return y is not None and equal(x, y)

            return eq
        if op == "<>":

            def ne(item: Item, vals: Values) -> bool:
                x = a(item, vals)
                if x is None:
                    return True
                y = b(item, vals)
                return y is None or not equal(x, y)

            return ne
        self.require(left, _ORDERED, op)
        self.require(right, _ORDERED, op)
        compare = _ORDER_OPS[op]

        def ordered(item: Item, vals: Values) -> bool:
            x = a(item, vals)
            if x is None:
                return False
            y = b(item, vals)
            if y is None:
                return False
            ((tx, dx),) = x.items()
            ((ty, dy),) = y.items()
            if tx != ty or tx not in _ORDERED:
                return False
            if tx == "N":
                return bool(compare(num(dx), num(dy)))
            return bool(compare(dx, dy))

        return ordered

    def between(
        self, node: tuple[Any, ...], low: tuple[Any, ...], high: tuple[Any, ...]
    ) -> Callable[[Item, Values], bool]:
        for n in (node, low, high):
            self.require(n, _ORDERED, "BETWEEN")
        if low[0] == "value" and high[0] == "value":
            self.checks.append(_bounds_check(low[1], high[1], self.slot))
        get, lo, hi = self.operand(node), self.operand(low), self.operand(high)

        def inside(item: Item, vals: Values) -> bool:
            x, y, z = get(item, vals), lo(item, vals), hi(item, vals)
            if x is None or y is None or z is None:
                return False
            ((tx, dx),) = x.items()
            ((ty, dy),) = y.items()
            ((tz, dz),) = z.items()
            if not tx == ty == tz or tx not in _ORDERED:
                return False
            if tx == "N":
                return bool(num(dy) <= num(dx) <= num(dz))
            return bool(dy <= dx <= dz)

        return inside

    def function(self, name: str, args: list[tuple[Any, ...]]) -> Callable[[Item, Values], bool]:
        getters = [self.operand(a) for a in args]
        first = getters[0]
        if name == "attribute_exists":
            return lambda item, vals: first(item, vals) is not None
        if name == "attribute_not_exists":
            return lambda item, vals: first(item, vals) is None
        second = getters[1]
        if name == "attribute_type":
            self.checks.append(_attribute_type_check(args[1][1], self.slot))

            def typed(item: Item, vals: Values) -> bool:
                value = first(item, vals)
                return value is not None and next(iter(value)) == vals[args[1][1]]["S"]

            return typed
        if name == "begins_with":
            for arg in args:
                self.require(arg, frozenset({"S", "B"}), "begins_with")

            def begins(item: Item, vals: Values) -> bool:
                x, y = first(item, vals), second(item, vals)
                if x is None or y is None:
                    return False
                ((tx, dx),) = x.items()
                ((ty, dy),) = y.items()
                return tx == ty and tx in ("S", "B") and bool(dx.startswith(dy))

            return begins

        def contains(item: Item, vals: Values) -> bool:  # contains(path, operand)
            x, y = first(item, vals), second(item, vals)
            if x is None or y is None:
                return False
            ((tx, dx),) = x.items()
            ((ty, dy),) = y.items()
            if tx == "S" or tx == "B":
                return ty == tx and dy in dx
            if tx in SETS:
                return ty == tx[0] and dy in dx
            if tx == "L":
                return any(equal(member, y) for member in dx)
            return False

        return contains


_ORDER_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _bounds_check(low: str, high: str, slot: str) -> Check:
    def check(vals: Values) -> None:
        ((tl, dl),) = vals[low].items()
        ((th, dh),) = vals[high].items()
        if tl == th and (num(dl) > num(dh) if tl == "N" else dl > dh):
            raise Invalid(
                f"Invalid {slot}: The BETWEEN operator requires upper bound to be greater than or "
                f"equal to lower bound; lower bound operand: AttributeValue: {{{tl}:{dl}}}, upper "
                f"bound operand: AttributeValue: {{{th}:{dh}}}"
            )

    return check


def _attribute_type_check(ref: str, slot: str) -> Check:
    def check(vals: Values) -> None:
        ((kind, data),) = vals[ref].items()
        if kind != "S":
            raise Invalid(
                f"Invalid {slot}: Incorrect operand type for operator or function; operator or "
                f"function: attribute_type, operand type: {kind}"
            )
        if data not in TYPES:
            raise Invalid(
                f"Invalid {slot}: Invalid attribute type name found; type: {data}, valid types: "
                "{ B,NULL,SS,BOOL,L,BS,N,NS,S,M }"
            )

    return check


# --- update expressions ------------------------------------------------------------------------


class Update:
    """A compiled UpdateExpression: apply(old item or None, key attributes, values)."""

    __slots__ = (
        "adds",
        "checks",
        "creates",
        "deletes",
        "names",
        "paths",
        "removes",
        "sets",
        "top",
        "values",
    )

    def __init__(self, text: str, names: dict[str, str]) -> None:
        slot = "UpdateExpression"
        parser = _Parser(text, slot)
        clauses = parser.update()
        self.names = frozenset(parser.names)
        self.values = frozenset(parser.values)
        self.checks: list[Check] = []
        compiler = _UpdateCompiler(names, self.checks)
        self.sets = [
            (_resolve(p[1], names, slot), compiler.value(v)) for p, v in clauses.get("SET", ())
        ]
        self.removes = [_resolve(p[1], names, slot) for p in clauses.get("REMOVE", ())]
        self.adds = [(_resolve(p[1], names, slot), ref) for p, ref in clauses.get("ADD", ())]
        self.deletes = [(_resolve(p[1], names, slot), ref) for p, ref in clauses.get("DELETE", ())]
        for _, ref in self.adds:
            self.checks.append(_operand_check(ref, _ADDABLE, "ADD", "ALLOWED_FOR_ADD_OPERAND"))
        for _, ref in self.deletes:
            self.checks.append(_operand_check(ref, SETS, "DELETE", "ALLOWED_FOR_DELETE_OPERAND"))
        targets = [p for p, _ in self.sets] + self.removes + [p for p, _ in self.adds]
        targets += [p for p, _ in self.deletes]
        _check_overlaps(targets)
        self.paths = targets
        self.top = frozenset(p[0] for p in targets)
        self.creates = bool(self.sets or self.adds)
        self.removes.sort(reverse=True)  # later list elements first: indexes refer to the old list

    def apply(self, old: Item | None, key: Item, vals: Values) -> Item | None:
        """The new item (None when the item does not exist and nothing creates it)."""
        if old is None:
            if not self.creates:
                return None
            source = key
        else:
            source = old
        new = dict(source)
        changes = [(path, value(source, vals)) for path, value in self.sets]
        for path, ref in self.adds:
            changes.append((path, _add(get_path(source, path), vals[ref])))
        gone = self.removes
        for path, ref in self.deletes:
            current = get_path(source, path)
            if current is not None:
                left = _delete(current, vals[ref])
                if left is None:
                    gone = [*gone, path]
                else:
                    changes.append((path, left))
        for path, value in changes:
            if len(path) == 1:
                new[path[0]] = value
            else:
                _set_in(new, path, value)
        if gone:
            for path in sorted(gone, reverse=True):
                if len(path) == 1:
                    new.pop(path[0], None)
                else:
                    _remove_in(new, path)
        return new


_ADDABLE = frozenset({"N", "SS", "NS", "BS"})


def _operand_check(ref: str, allowed: frozenset[str], what: str, type_set: str) -> Check:
    def check(vals: Values) -> None:
        kind = next(iter(vals[ref]))
        if kind not in allowed:
            raise Invalid(
                "Invalid UpdateExpression: Incorrect operand type for operator or function; "
                f"operator: {what}, operand type: {_TYPE_NAMES.get(kind, kind)}, typeSet: "
                f"{type_set}"
            )

    return check


def _check_overlaps(paths: list[PathT]) -> None:
    for i, one in enumerate(paths):
        for two in paths[i + 1 :]:
            n = min(len(one), len(two))
            for a, b in zip(one[:n], two[:n], strict=True):
                if a != b:
                    if isinstance(a, int) != isinstance(b, int):
                        raise Invalid(
                            "Invalid UpdateExpression: Two document paths conflict with each "
                            "other; must remove or rewrite one of these paths; path one: "
                            f"[{_show(one)}], path two: [{_show(two)}]"
                        )
                    break
            else:
                raise Invalid(
                    "Invalid UpdateExpression: Two document paths overlap with each other; must "
                    f"remove or rewrite one of these paths; path one: [{_show(one)}], path two: "
                    f"[{_show(two)}]"
                )


class _UpdateCompiler:
    def __init__(self, names: dict[str, str], checks: list[Check]) -> None:
        self.names = names
        self.checks = checks

    def value(self, node: tuple[Any, ...]) -> Callable[[Item, Values], Value]:
        kind = node[0]
        if kind == "value":
            ref = node[1]
            return lambda item, vals: vals[ref]
        if kind == "path":
            path = _resolve(node[1], self.names, "UpdateExpression")
            get = _getter(path)

            def read(item: Item, vals: Values) -> Value:
                found = get(item, vals)
                if found is None:
                    raise Invalid(MISSING_ATTRIBUTE)
                return found

            return read
        if kind == "if_not_exists":
            get = _getter(_resolve(node[1][1], self.names, "UpdateExpression"))
            otherwise = self.value(node[2])

            def if_not_exists(item: Item, vals: Values) -> Value:
                found = get(item, vals)
                return otherwise(item, vals) if found is None else found

            return if_not_exists
        if kind == "list_append":
            self.require(node[1], "L", "list_append")
            self.require(node[2], "L", "list_append")
            a, b = self.value(node[1]), self.value(node[2])

            def append(item: Item, vals: Values) -> Value:
                x, y = a(item, vals), b(item, vals)
                if "L" not in x or "L" not in y:
                    raise Invalid(WRONG_TYPE)
                return {"L": x["L"] + y["L"]}

            return append
        op = node[1]  # arith
        self.require(node[2], "N", op)
        self.require(node[3], "N", op)
        a, b = self.value(node[2]), self.value(node[3])
        minus = op == "-"

        def compute(item: Item, vals: Values) -> Value:
            x, y = a(item, vals), b(item, vals)
            if "N" not in x or "N" not in y:
                raise Invalid(WRONG_TYPE)
            return {"N": arith(x["N"], y["N"], minus)}

        return compute

    def require(self, node: tuple[Any, ...], kind: str, what: str) -> None:
        if node[0] == "value":
            self.checks.append(_type_check(node[1], frozenset({kind}), what, "UpdateExpression"))


def _add(current: Value | None, value: Value) -> Value:
    ((kind, data),) = value.items()
    if current is None:
        return {kind: list(data)} if kind in SETS else value
    ((have, members),) = current.items()
    if have != kind:
        raise Invalid(WRONG_TYPE)
    if kind == "N":
        return {"N": arith(members, data, False)}
    present = set(members)
    return {kind: [*members, *(m for m in data if m not in present)]}


def _delete(current: Value, value: Value) -> Value | None:
    ((kind, data),) = value.items()
    ((have, members),) = current.items()
    if have != kind:
        raise Invalid(WRONG_TYPE)
    drop = set(data)
    left = [m for m in members if m not in drop]
    return {kind: left} if left else None


def _set_in(item: Item, path: PathT, value: Value) -> None:
    container = item.get(path[0])
    if container is None:
        raise Invalid(BAD_PATH)
    item[path[0]] = _set_nested(container, path[1:], value)


def _set_nested(container: Value, rest: PathT, value: Value) -> Value:
    part = rest[0]
    ((kind, data),) = container.items()
    if type(part) is int:
        if kind != "L":
            raise Invalid(BAD_PATH)
        members = list(data)
        if len(rest) == 1:
            if part >= len(members):
                members.append(value)
            else:
                members[part] = value
        elif part >= len(members):
            raise Invalid(BAD_PATH)
        else:
            members[part] = _set_nested(members[part], rest[1:], value)
        return {"L": members}
    if kind != "M":
        raise Invalid(BAD_PATH)
    fields = dict(data)
    if len(rest) == 1:
        fields[part] = value
    else:
        child = fields.get(part)
        if child is None:
            raise Invalid(BAD_PATH)
        fields[part] = _set_nested(child, rest[1:], value)
    return {"M": fields}


def _remove_in(item: Item, path: PathT) -> None:
    container = item.get(path[0])
    if container is not None:
        changed = _remove_nested(container, path[1:])
        if changed is not None:
            item[path[0]] = changed


def _remove_nested(container: Value, rest: PathT) -> Value | None:
    part = rest[0]
    ((kind, data),) = container.items()
    if type(part) is int:
        if kind != "L" or part >= len(data):
            return None
        members = list(data)
        if len(rest) == 1:
            del members[part]
        else:
            child = _remove_nested(members[part], rest[1:])
            if child is None:
                return None
            members[part] = child
        return {"L": members}
    if kind != "M" or part not in data:
        return None
    fields = dict(data)
    if len(rest) == 1:
        del fields[part]
    else:
        child = _remove_nested(fields[part], rest[1:])
        if child is None:
            return None
        fields[part] = child
    return {"M": fields}


# --- key conditions ----------------------------------------------------------------------------


class KeyCondition:
    """A compiled KeyConditionExpression: [(attribute, operator, [:value refs])], one per key.

    Operators: = < <= > >= (with the attribute on the left) BETWEEN begins_with.
    """

    __slots__ = ("names", "parts", "values")
    checks: tuple[Check, ...] = ()

    def __init__(self, text: str, names: dict[str, str]) -> None:
        slot = "KeyConditionExpression"
        parser = _Parser(text, slot)
        if not parser.toks:
            parser.invalid("The expression can not be empty;")
        tree = parser.condition()
        parser.finish()
        self.names = frozenset(parser.names)
        self.values = frozenset(parser.values)
        self.parts: list[tuple[str, str, list[str]]] = []
        self._collect(tree, names)
        attributes = [p[0] for p in self.parts]
        if len(set(attributes)) != len(attributes):
            raise Invalid(
                "Invalid KeyConditionExpression: KeyConditionExpressions must only contain one "
                "condition per key"
            )

    def _collect(self, node: tuple[Any, ...], names: dict[str, str]) -> None:
        while node[0] == "paren":
            node = node[1]
        kind = node[0]
        if kind == "and":
            self._collect(node[1], names)
            self._collect(node[2], names)
            return
        if kind in ("or", "not"):
            raise Invalid(f"Invalid operator used in KeyConditionExpression: {kind.upper()}")
        if kind == "cmp":
            op, left, right = node[1], node[2], node[3]
            if left[0] == "value" and right[0] == "path":
                left, right = right, left
                op = _FLIPPED[op]
            if op == "<>":
                raise Invalid("Invalid operator used in KeyConditionExpression: <>")
            self._part(left, op, [right], names)
        elif kind == "between":
            self._part(node[1], "BETWEEN", [node[2], node[3]], names)
        elif kind == "fn" and node[1] == "begins_with":
            self._part(node[2][0], "begins_with", [node[2][1]], names)
        elif kind == "fn":
            raise Invalid(f"Invalid operator used in KeyConditionExpression: {node[1]}")
        else:
            raise Invalid("Invalid operator used in KeyConditionExpression: IN")

    def _part(
        self,
        target: tuple[Any, ...],
        op: str,
        operands: list[tuple[Any, ...]],
        names: dict[str, str],
    ) -> None:
        if target[0] != "path" or any(o[0] != "value" for o in operands):
            raise Invalid("Invalid KeyConditionExpression: Query key condition not supported")
        path = _resolve(target[1], names, "KeyConditionExpression")
        if len(path) != 1:
            raise Invalid("KeyConditionExpressions cannot have conditions on nested attributes")
        self.parts.append((path[0], op, [o[1] for o in operands]))


_FLIPPED = {"=": "=", "<>": "<>", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


# --- projections -------------------------------------------------------------------------------


class Projection:
    """A compiled ProjectionExpression: project(item) -> the listed attributes only."""

    __slots__ = ("names", "paths", "values")
    checks: tuple[Check, ...] = ()

    def __init__(self, text: str, names: dict[str, str]) -> None:
        slot = "ProjectionExpression"
        parser = _Parser(text, slot)
        if not parser.toks:
            parser.invalid("The expression can not be empty;")
        found = parser.paths()
        parser.finish()
        self.names = frozenset(parser.names)
        self.values: frozenset[str] = frozenset()
        self.paths = [_resolve(p[1], names, slot) for p in found]
        try:
            _check_overlaps(self.paths)
        except Invalid as error:
            raise Invalid(str(error).replace("UpdateExpression", slot)) from None

    def project(self, item: Item) -> Item:
        return project(item, self.paths)


def project(item: Item, paths: list[PathT]) -> Item:
    """`item` cut down to the document paths (ProjectionExpression, UPDATED_NEW/OLD)."""
    out: Item = {}
    for path in paths:
        value = item.get(path[0])
        if value is None:
            continue
        if len(path) == 1:
            out[path[0]] = value
            continue
        picked = _pick(value, path[1:])
        if picked is not None:
            out[path[0]] = _merge(out.get(path[0]), picked)
    return out


def _pick(value: Value, rest: PathT) -> Value | None:
    """`value` cut down to the document path `rest` (a list keeps only that element)."""
    part = rest[0]
    ((kind, data),) = value.items()
    if type(part) is int:
        if kind != "L" or part >= len(data):
            return None
        inner = data[part] if len(rest) == 1 else _pick(data[part], rest[1:])
        return None if inner is None else {"L": [inner]}
    if kind != "M" or part not in data:
        return None
    inner = data[part] if len(rest) == 1 else _pick(data[part], rest[1:])
    return None if inner is None else {"M": {part: inner}}


def _merge(have: Value | None, more: Value) -> Value:
    if have is None:
        return more
    if "M" in have and "M" in more:
        fields = dict(have["M"])
        for k, v in more["M"].items():
            fields[k] = _merge(fields.get(k), v)
        return {"M": fields}
    if "L" in have and "L" in more:
        return {"L": have["L"] + more["L"]}
    return more


# --- cache -------------------------------------------------------------------------------------

_CACHE: dict[tuple[Any, ...], Any] = {}


def compiled(kind: type, text: str, names: dict[str, str] | None, *extra: Any) -> Any:
    """The compiled expression for (kind, text, names), parsed once and cached."""
    key = (kind, text, tuple(names.items()) if names else (), *extra)
    found = _CACHE.get(key)
    if found is None:
        if len(_CACHE) > 50_000:
            _CACHE.clear()
        found = kind(text, names or {}, *extra)
        _CACHE[key] = found
    return found
