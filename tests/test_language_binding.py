"""Block values bound by name, defaults, keyword tuples, values from `column`, arithmetic,
`padding=same` and negative numbers (docs/LANGUAGE.md, "Binding")."""

from __future__ import annotations

import pytest

from fractal_dsl import FractalError, loads

NET = """network t {{
  input 3x16x16
  classes 10
  key {{
{key}
    pool = maxpool(2)
    head = gap . flatten . linear(classes)
  }}
{rules}
  columns {columns}
  blocks {blocks}
}}
"""


def net(key: str, blocks: str, rules: str = "  f[1] = conv\n  f[C+1] = join(f[C] . f[C], conv)", columns: int = 2):
    return loads(NET.format(key=key, rules=rules, blocks=blocks, columns=columns), "t.fdsl")


def errors(*args, **kwargs) -> list[str]:
    with pytest.raises(FractalError) as info:
        net(*args, **kwargs)
    return [d.message + (f" | {d.hint}" if d.hint else "") for d in info.value.diagnostics]


def args_of(n, node: str) -> dict:
    return dict(n.node(node).args)


def test_entries_take_the_block_values_they_name():
    # the program: `short` takes `c` only, `conv` takes `c` and `p`
    n = net(
        "    conv(c, p) = conv3x3(c, bias=false) . dropout(p) . bn . relu\n    short(c) = conv1x1(c) . bn . relu",
        "(16, 0.1) (32, 0.2)",
        rules="  f[1] = conv\n  f[C+1] = join(f[C] . f[C], short)",
    )
    assert args_of(n, "b2_c1_d1_short") == {"c": 32}
    assert args_of(n, "b2_c2_d1_conv") == {"c": 32, "p": 0.2}
    assert n.block_values[1] == (("c", 32), ("p", 0.2))
    # and it compiles, as written, to a module that runs
    import torch

    from fractal_dsl import codegen

    model = codegen.load_module(codegen.generate(n), "issue_program").build().eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_keyword_tuples_defaults_and_mixed_tuples():
    key = "    conv(c, p=0.05) = conv3x3(c) . dropout(p) . relu"
    n = net(key, "(p=0.3, c=8) (16) (24, p=0.0)", columns=1, rules="  f[1] = conv")
    assert [args_of(n, f"b{b}_c1_d1_conv") for b in (1, 2, 3)] == [{"c": 8, "p": 0.3}, {"c": 16, "p": 0.05}, {"c": 24, "p": 0.0}]


def test_builtins_and_entry_bodies_read_block_values_by_name():
    n = net("    conv = conv3x3(c) . dropout(p) . relu", "(c=8, p=0.1)", rules="  f[1] = conv5x5(c) . relu\n  f[C+1] = join(f[C] . f[C], conv)")
    assert n.node("b1_c1_d1_conv").layers[0].arg("out_channels") == 8
    assert n.node("b1_c2_d1_conv5x5").layers[0].arg("kernel") == 5


def test_column_and_arithmetic_make_a_kernel_per_column():
    n = net("    conv(c) = conv(c, kernel=2 * column + 1) . relu", "8 16", columns=3)
    kernels = {node.column: node.layers[0].arg("kernel") for node in n.nodes() if node.kind == "layer" and node.block == 1}
    assert kernels == {1: 3, 2: 5, 3: 7}
    widths = net("    conv(c, p) = conv3x3(c * 2, bias=false) . dropout(p / 2) . relu", "(8, 0.2)", columns=1, rules="  f[1] = conv")
    assert [layer.args for layer in widths.node("b1_c1_d1_conv").layers[:2]] == [
        (("out_channels", 16), ("kernel", 3), ("stride", 1), ("padding", 1), ("dilation", 1), ("groups", 1), ("bias", False)),
        (("p", 0.1),),
    ]


def test_padding_same_is_the_default_and_an_even_kernel_is_refused_at_the_conv():
    same = net("    conv(c) = conv(c, kernel=5, padding=same) . relu", "8", columns=1, rules="  f[1] = conv")
    assert same.node("b1_c1_d1_conv").layers[0].arg("padding") == 2
    [message] = errors("    conv(c) = conv(c, kernel=4) . relu", "8")
    assert message.startswith("`same` padding keeps the size only with an odd kernel; a 4x4 kernel would grow it by 1")


@pytest.mark.parametrize(
    ("blocks", "expected"),
    [
        ("(c=8, q=1)", "block 1 gives `q`, but no key entry or rule uses a value of that name | the names that take block values are `c`"),
        ("(8, c=8)", "block 1 gives `c` twice | give each value once, by position or by name"),
        ("(8, 9)", "block 1 gives 2 values by position, but only 1 name takes block values (`c`)"),
        ("(cc=8)", "block 1 gives `cc`, but no key entry or rule uses a value of that name | did you mean `c`?"),
    ],
)
def test_block_value_mistakes_say_the_fix(blocks, expected):
    messages = errors("    conv(c) = conv3x3(c) . relu", blocks, columns=1, rules="  f[1] = conv")
    assert any(m.startswith(expected) for m in messages), messages


def test_a_value_no_block_gives_and_no_default_covers():
    [message] = errors("    conv(c, p) = conv3x3(c) . dropout(p) . relu", "(c=8)", columns=1, rules="  f[1] = conv")
    assert message == (
        "block 1 gives no value for `p`, which `conv` needs"
        " | name it in the block, e.g. `(p=...)`, or give `conv` a default: `conv(c, p=...)`"
    )


def test_column_outside_the_columns_and_division_by_zero():
    assert any("`column` has no value in `stem`" in m for m in errors("    conv(c) = conv3x3(c) . relu\n    stem = conv3x3(column)", "8", columns=1, rules="  f[1] = conv"))
    assert any("division by zero" in m for m in errors("    conv(c) = conv3x3(c) . dropout(c / 0) . relu", "8", columns=1, rules="  f[1] = conv"))


@pytest.mark.parametrize(("statement", "message"), [("columns -3", "columns must be at least 1"), ("classes -1", "classes must be between 1 and 1,000,000, got -1")])
def test_negative_numbers_parse_and_get_a_range_error(statement, message):
    text = NET.format(key="    conv(c) = conv3x3(c) . relu", rules="  f[1] = conv", columns=1, blocks="8")
    text = text.replace("columns 1", statement) if statement.startswith("columns") else text.replace("classes 10", statement)
    with pytest.raises(FractalError) as info:
        loads(text, "t.fdsl")
    assert message in [d.message for d in info.value.diagnostics]


def test_inspect_counts_units_by_kind_and_weighted_pools():
    from fractal_dsl.semantics import deepest_path
    from fractal_dsl.summary import block_facts, format_text

    text = NET.format(
        key="    conv(c) = conv3x3(c) . bn . relu\n    skip = identity\n    stem = conv3x3(8)",
        rules="  f[1] = conv\n  f[C+1] = join(f[C] . f[C], skip)",
        columns=3,
        blocks="8 8",
    ).replace("    pool = maxpool(2)", "    pool(c) = conv3x3(c, stride=2)")
    n = loads(text, "t.fdsl")
    [b1, _b2] = block_facts(n)
    assert b1["units"] == {"conv": 4, "identity": 3, "other": 0} and b1["convs"] == 4
    assert b1["pool"]["params"] == 8 * 8 * 9 + 8 and b1["params"] == sum(x.params for x in n.nodes() if x.block == 1)
    # deepest path: the stem, 4 convs and the pool's conv per block, and the classifier
    assert deepest_path(n) == 1 + 2 * (4 + 1) + 1
    assert "4 conv, 3 identity" in format_text(n) and "pool conv2d(out_channels=8" in format_text(n)
