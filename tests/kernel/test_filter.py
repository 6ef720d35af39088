"""The probe filter language: parsing, checking and C generation (no kernel)."""

from __future__ import annotations

import pytest

from moduled.errors import InvalidArgument
from moduled.kernel import filter as flt

FIELDS = {
    "pid": flt.FilterField("int", 4, False),
    "ret": flt.FilterField("int", 8, True),
    "comm": flt.FilterField("str", 16),
}


def c_of(text: str) -> str:
    return flt.compile_c(flt.parse(text, FIELDS), lambda n: f"v_{n}")


def test_comparisons_and_logic_compile_to_c_with_typed_literals():
    c = c_of("pid == 1 && (ret < -1 || !(pid >= 0x10))")

    assert c == "((v_pid == 1ULL) && ((v_ret < -1LL) || !((v_pid >= 16ULL))))"


def test_string_literal_becomes_byte_comparisons_not_c_text():
    c = c_of("comm != 'sh'")

    assert c == "!(v_comm[0] == 115 && v_comm[1] == 104 && v_comm[2] == 0)"
    assert "'" not in c and '"' not in c


def test_precedence_binds_and_tighter_than_or():
    tree = flt.parse("pid == 1 || pid == 2 && ret == 3", FIELDS)

    assert isinstance(tree, flt.Or)
    assert isinstance(tree.right, flt.And)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("pid == 1; } int x() {", "unexpected"),
        ("pid == 1 /* */", "unexpected"),
        ("foo == 1", "unknown field 'foo'"),
        ("getpid() == 1", "unknown field 'getpid'"),
        ("(int)pid == 1", "unknown field 'int'"),
        ("pid == 'x'", "needs a number"),
        ("comm == 5", "needs a quoted string"),
        ("comm < 'a'", "compares only with == or !="),
        ("pid == -1", "does not fit"),
        ("pid == 4294967296", "does not fit"),
        ("comm == 'a_name_too_long_for_comm'", "longer than the field"),
        ("comm == 'tab\\there'", "unexpected"),
        ("pid", "expected a comparison operator"),
        ("pid == 1 &&", "expected a field name"),
        ("(pid == 1", "expected ')'"),
        ("", "empty"),
        ("pid = 1", "unexpected"),
        ("pid == 010", "leading zero"),
        ("pid == 00", "leading zero"),
        ("pid == \u0661\u0662", "unexpected"),
        ("pid == 1\u0662", "unexpected"),
        ("p\u00efd == 1", "unexpected"),
        ("pid == 0x", "unexpected"),
    ],
)
def test_anything_outside_the_language_is_rejected_before_any_c(text, says):
    with pytest.raises(InvalidArgument) as info:
        flt.parse(text, FIELDS)

    assert says in str(info.value)


def test_zero_and_hex_with_leading_zeros_are_numbers():
    assert c_of("pid == 0 || pid == 0x0010") == "((v_pid == 0ULL) || (v_pid == 16ULL))"


def test_deep_nesting_is_refused():
    with pytest.raises(InvalidArgument, match="nested deeper"):
        flt.parse("!" * 100 + "pid == 1", FIELDS)


def test_fields_used_lists_every_referenced_field():
    tree = flt.parse("pid == 1 || !(comm == 'a')", FIELDS)

    assert flt.fields_used(tree) == {"pid", "comm"}
