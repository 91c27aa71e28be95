"""The expanded graphs against the paper (PAPER.md) and against hand-counted general rules."""

from __future__ import annotations

import json

import networkx as nx
import pytest
from conftest import ROOT

from fractal_dsl import FractalError, load, loads
from fractal_dsl.semantics import deepest_path
from fractal_dsl.summary import block_facts, describe


def ex(name: str):
    return load(ROOT / "examples" / f"{name}.fdsl")


def block_layers(net, b: int) -> list[str]:
    g = net.graph
    return [n for n in net.nodes_in_order() if g.nodes[n]["node"].block == b and g.nodes[n]["node"].kind == "layer"]


def column_path(net, k: int) -> list[str]:
    """Walk from the input to the output keeping, at each join, only the input carrying column k."""
    g = net.graph
    path, node = [], "output"
    while node != "input":
        path.append(node)
        preds = list(g.predecessors(node))
        if g.nodes[node]["node"].kind == "join":
            preds = [p for p in preds if k in g.edges[p, node]["edge"].columns]
        assert len(preds) == 1, (node, preds)
        node = preds[0]
    return path[::-1]


def layers_on_column(net, k: int, b: int) -> int:
    g = net.graph
    return sum(1 for n in column_path(net, k) if g.nodes[n]["node"].block == b and g.nodes[n]["node"].kind == "layer")


# ---- the paper's CIFAR networks ---------------------------------------------------------


@pytest.mark.parametrize(("name", "C", "joins"), [("fractal3", 3, [2, 3]), ("fractal4", 4, [2, 3, 2, 4])])
def test_cifar_fractalnets_match_the_paper(name, C, joins):
    net = ex(name)
    B = 5
    assert net.columns == C and net.blocks == B
    facts = block_facts(net)
    for b, fact in enumerate(facts, start=1):
        assert fact["convs"] == 2**C - 1 == len(block_layers(net, b))
        assert fact["joins"] == joins
        assert fact["depth"] == 2 ** (C - 1)
        for k in range(1, C + 1):
            held = [n for n in block_layers(net, b) if net.graph.nodes[n]["node"].columns == (k,)]
            assert len(held) == 2 ** (k - 1), (b, k)
            assert layers_on_column(net, k, b) == 2 ** (k - 1)
    assert describe(net)["depth"] == B * 2 ** (C - 1)
    assert deepest_path(net) == B * 2 ** (C - 1) + 1  # plus the linear head
    assert [f["channels"] for f in facts] == [64, 128, 256, 512, 512]
    assert net.graph.nodes["head"]["node"].in_shape == (512, 1, 1)
    assert net.graph.nodes["output"]["node"].shape == (10,)
    assert [dict(net.graph.nodes[n]["node"].args)["p"] for n in ("b1_c1_d1_conv", "b3_c1_d1_conv", "b5_c1_d1_conv")] == [0.0, 0.2, 0.4]


def test_fractal3_node_ids_are_stable():
    g = ex("fractal3").graph
    block1 = [n for n in ex("fractal3").nodes_in_order() if g.nodes[n]["node"].block == 1]
    assert block1 == [
        "b1_c3_d1_conv", "b1_c3_d2_conv", "b1_c2_d1_conv", "b1_join_d2", "b1_c3_d3_conv",
        "b1_c3_d4_conv", "b1_c2_d3_conv", "b1_c1_d1_conv", "b1_join_d4", "b1_pool",
    ]
    assert [g.in_degree(j) for j in ("b1_join_d2", "b1_join_d4")] == [2, 3]
    # join inputs are in the order the rule writes them: the deep branch first
    ins = sorted(g.in_edges("b1_join_d4", data="edge"), key=lambda e: e[2].index)
    assert [(u, e.columns) for u, _, e in ins] == [("b1_c3_d4_conv", (3,)), ("b1_c2_d3_conv", (2,)), ("b1_c1_d1_conv", (1,))]


def test_fractal4_joins_are_flattened_in_depth_order():
    net = ex("fractal4")
    g = net.graph
    joins = sorted((n for n in g if g.nodes[n]["node"].block == 2 and g.nodes[n]["node"].kind == "join"), key=lambda n: g.nodes[n]["node"].depth)
    assert joins == ["b2_join_d2", "b2_join_d4", "b2_join_d6", "b2_join_d8"]
    assert [g.in_degree(j) for j in joins] == [2, 3, 2, 4]
    assert all(g.nodes[p]["node"].kind != "join" for j in joins for p in g.predecessors(j) if g.nodes[p]["node"].block == 2)


def test_parameter_count_by_hand_for_fractal3():
    # conv3x3 without bias + batchnorm (2 per channel); column k has 2^(k-1) convs, the first takes the block input
    chans, cin, total = [64, 128, 256, 512, 512], 3, 0
    for c in chans:
        first = 3 * (9 * cin * c + 2 * c)  # the first conv of each of the 3 columns
        rest = 4 * (9 * c * c + 2 * c)  # the other 7 - 3 convs
        total += first + rest
        cin = c
    total += 512 * 10 + 10
    assert ex("fractal3").params == total


# ---- the other examples -------------------------------------------------------------------


def test_fractalnet34_is_34_deep_on_imagenet():
    net = ex("fractalnet34")
    g = net.graph
    assert net.columns == 4 and net.blocks == 4 and net.classes == 1000
    assert deepest_path(net) == 4 * 8 + 2
    assert g.nodes["stem"]["node"].shape == (64, 56, 56)
    assert [f["shape"] for f in block_facts(net)] == [[64, 56, 56], [128, 28, 28], [256, 14, 14], [512, 7, 7]]
    assert [f["joins"] for f in block_facts(net)] == [[2, 3, 2, 4]] * 4
    assert g.nodes["b4_pool"]["node"].shape == g.nodes["head"]["node"].in_shape == (512, 7, 7)  # no pooling after the last block
    assert g.nodes["output"]["node"].shape == (1000,)


def test_ternary_rule_is_k_fold_composition():
    net = ex("ternary")
    for b in (1, 2):
        assert len(block_layers(net, b)) == 1 + 3 + 9
        assert [layers_on_column(net, k, b) for k in (1, 2, 3)] == [1, 3, 9]
    assert [f["joins"] for f in block_facts(net)] == [[2, 2, 3]] * 2
    assert [f["depth"] for f in block_facts(net)] == [9, 9]


def test_trunk_rule_shares_its_leading_conv_between_columns():
    net = ex("trunk")
    g = net.graph
    assert net.columns == 4
    assert g.nodes["b1_c2_d1_conv"]["node"].columns == (2, 3, 4)
    assert g.nodes["b1_c3_d2_conv"]["node"].columns == (3, 4)
    assert g.nodes["b1_c3_d3_wide"]["node"].columns == (3,)  # the base case f[2] wins over the rule
    assert [layers_on_column(net, k, 1) for k in (1, 2, 3, 4)] == [1, 2, 3, 4]
    assert [f["joins"] for f in block_facts(net)] == [[4], [4]]
    assert net.droppath.per == "sample" and net.droppath.local == 0.1


def test_nested_joins_keep_joins_of_two():
    net = ex("nested")
    g = net.graph
    assert not net.flat_joins
    assert [f["joins"] for f in block_facts(net)] == [[2, 2, 2]] * 2
    last = "b1_join_d4_2"  # the outer join shares row 4 with the inner one, so it gets a suffix
    assert g.nodes[last]["node"].columns == (1, 2, 3) and g.nodes["b1_join_d4"]["node"].columns == (2, 3)
    inner = [u for u in g.predecessors(last) if g.nodes[u]["node"].kind == "join"]
    assert len(inner) == 1 and g.edges[inner[0], last]["edge"].columns == (2, 3)
    assert ex("tiny").params != 0 and [layers_on_column(net, k, 1) for k in (1, 2, 3)] == [1, 2, 4]


def test_maxjoin_uses_max_joins_and_a_stem():
    net = ex("maxjoin")
    g = net.graph
    assert net.join_mode == "max"
    assert {g.nodes[n]["node"].op for n in g if g.nodes[n]["node"].kind == "join"} == {"max"}
    assert list(g.successors("input")) == ["stem"]
    assert [layer.type for layer in g.nodes["b1_c1_d1_conv"]["node"].layers] == ["conv2d", "batchnorm2d", "leakyrelu"]


def test_every_example_has_complete_columns_and_deterministic_output(example):
    net = load(example)
    for k in range(1, net.columns + 1):
        path = column_path(net, k)
        assert path[-1] == "output"
    again = load(example)
    assert json.dumps(describe(net)) == json.dumps(describe(again))
    assert nx.is_directed_acyclic_graph(net.graph)


# ---- general rules, in memory ----------------------------------------------------------------

PROGRAM = """network t {{
  input 3x8x8
  classes 4
  key {{
    conv(c) = conv3x3(c) . relu
    join = {join}
    pool = identity
    head = gap . flatten . linear(classes)
  }}
  {rules}
  columns {columns}
  blocks 4
}}
"""


def net_of(rules: str, columns: int = 3, join: str = "mean"):
    return loads(PROGRAM.format(rules=rules, columns=columns, join=join), "t.fdsl")


def edges_of(net):
    return sorted((u, v, e.index, e.columns) for u, v, e in net.graph.edges(data="edge"))


def test_written_order_does_not_change_column_numbers():
    a = net_of("f[1] = conv\n  f[C+1] = join(f[C] . f[C], conv)")
    b = net_of("f[1] = conv\n  f[C+1] = join(conv, f[C] . f[C])")
    assert sorted(a.graph.nodes) == sorted(b.graph.nodes)
    assert [layers_on_column(b, k, 1) for k in (1, 2, 3)] == [1, 2, 4]
    ins = sorted(b.graph.in_edges("b1_join_d4", data="edge"), key=lambda e: e[2].index)
    assert [e.columns for _, _, e in ins] == [(1,), (2,), (3,)]  # written order kept


def test_offset_rule_equals_the_paper_rule():
    a = net_of("f[1] = conv\n  f[C+1] = join(f[C] . f[C], conv)", columns=4)
    b = net_of("f[1] = conv\n  f[C] = join(f[C-1] . f[C-1], conv)", columns=4)
    c = net_of("f[1] = conv\n  f[2] = join(conv . conv, conv)\n  f[C+2] = join(f[C+1] . f[C+1], conv)", columns=4)
    assert edges_of(a) == edges_of(b) == edges_of(c)


def test_fixed_base_case_reference_inside_a_recursive_rule():
    net = net_of("f[1] = conv\n  f[C+1] = join(f[C] . f[C], f[1])")
    assert [layers_on_column(net, k, 1) for k in (1, 2, 3)] == [1, 2, 4]


def test_one_column_is_a_plain_stack():
    net = net_of("f[1] = conv . conv", columns=1)
    g = net.graph
    assert net.columns == 1
    assert not [n for n in g if g.nodes[n]["node"].kind == "join"]
    assert block_facts(net)[0]["depth"] == 2


def test_concat_join_sums_channels():
    net = net_of("f[1] = conv\n  f[C+1] = join(f[C] . f[C], conv)", columns=2, join="concat")
    g = net.graph
    assert g.nodes["b1_join_d2"]["node"].shape == (8, 8, 8)
    assert g.nodes["head"]["node"].in_shape == (8, 8, 8)
    assert net.params == (3 * 9 * 4 + 4) + (4 * 9 * 4 + 4) + (3 * 9 * 4 + 4) + (8 * 4 + 4)


def test_composition_of_unequal_widths_is_an_error():
    with pytest.raises(FractalError, match="cannot compose parts with 2 and 3 columns"):
        net_of("f[1] = conv\n  f[C+1] = join(f[C] . f[C-1], conv)\n  f[2] = join(conv, conv)", columns=4)


def test_key_entries_shadow_builtins_except_in_their_own_body():
    net = loads(
        PROGRAM.format(rules="f[1] = conv", columns=1, join="mean").replace(
            "conv(c) = conv3x3(c) . relu", "relu = leakyrelu(0.2)\n    conv(c) = conv(c, kernel=5, bias=false) . bn . relu"
        ),
        "t.fdsl",
    )
    layers = net.graph.nodes["b1_c1_d1_conv"]["node"].layers
    assert [layer.type for layer in layers] == ["conv2d", "batchnorm2d", "leakyrelu"]
    assert layers[0].arg("kernel") == 5 and layers[0].arg("padding") == 2 and layers[2].arg("slope") == 0.2


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("", (0.15, 0.5, "batch", True)),  # the paper's values
        ("droppath off", (0.15, 0.5, "batch", False)),
        ("droppath per sample local 0.3", (0.3, 0.5, "sample", True)),
        ("droppath global 1 local 0", (0.0, 1.0, "batch", True)),
    ],
)
def test_droppath_settings_and_defaults(statement, expected):
    net = loads(PROGRAM.format(rules="f[1] = conv", columns=1, join="mean").replace("  blocks 4\n", f"  blocks 4\n  {statement}\n"), "t.fdsl")
    dp = net.droppath
    assert (dp.local, dp.global_ratio, dp.per, dp.enabled) == expected


def test_comments_bom_crlf_and_any_statement_order_parse_alike():
    text = PROGRAM.format(rules="f[1] = conv\n  f[C+1] = join(f[C] . f[C], conv)", columns=2, join="sum")
    lines = text.split("\n")
    shuffled = "\n".join([lines[0], *lines[10:13], *lines[1:10], *lines[13:]])  # rules and columns before input
    variant = "\ufeff# a comment\r\n" + shuffled.replace("\n", "   # trailing\r\n")
    a, b = loads(text, "t.fdsl"), loads(variant, "t.fdsl")
    assert edges_of(a) == edges_of(b) and a.params == b.params and a.join_mode == "sum"


def test_classes_is_a_value_in_rules_and_blocks():
    def conv_args(blocks: str):
        text = PROGRAM.format(rules="f[1] = conv(classes) . conv", columns=1, join="mean").replace("blocks 4", f"blocks {blocks}")
        g = loads(text, "t.fdsl").graph
        return dict(g.nodes["b1_c1_d1_conv"]["node"].args), dict(g.nodes["b1_c1_d2_conv"]["node"].args)

    assert conv_args("3") == ({"c": 4}, {"c": 3})
    assert conv_args("(classes)") == ({"c": 4}, {"c": 4})
