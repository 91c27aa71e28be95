"""A hint never leads to a second error: every suggested spelling in the bad-program corpus
is carried as a :class:`~fractal_dsl.errors.Fix`, and following it gives a program that
checks clean, or fails only with problems the file already had.

Then the newcomer's habits in other spellings than the fixtures': the hints recognise the
habit, not one string.
"""

from __future__ import annotations

import re

import pytest
from conftest import ROOT

from fractal_dsl import FractalError, load
from fractal_dsl.errors import Source
from fractal_dsl.expand import expand
from fractal_dsl.syntax import parse
from fractal_dsl.validate import validate

BAD = ROOT / "tests" / "fixtures" / "bad"
CASES = sorted(BAD.glob("*.fdsl"))
# a hint that suggests a spelling: it must carry the spelling as a fix
SUGGESTS = re.compile(r"did you mean `|: write `|^write `")


def _problems(text: str, name: str = "t.fdsl") -> list:
    """The diagnostics of a program's text ([] when it checks clean)."""
    try:
        validate(expand(parse(Source(name, text))), Source(name, text))
    except FractalError as exc:
        return exc.diagnostics
    return []


def _apply(text: str, fixes) -> str:
    for fix in sorted(fixes, key=lambda f: f.span, reverse=True):  # from the end: earlier spans keep their place
        text = fix.apply(text)
    return text


def _diagnostics(case):
    with pytest.raises(FractalError) as info:
        load(case)
    return info.value.diagnostics


@pytest.mark.parametrize("case", CASES, ids=[p.stem for p in CASES])
def test_a_suggested_spelling_is_carried_as_a_fix(case):
    for d in _diagnostics(case):
        assert "\n" not in d.message + (d.hint or ""), d  # one line each
        if d.hint and SUGGESTS.search(d.hint):
            assert d.fix is not None, (case.name, d.hint)


WITH_FIXES = [c for c in CASES if c.suffix == ".fdsl" and not c.stem.startswith(("binary", "non_utf8", "nul"))]


@pytest.mark.parametrize("case", WITH_FIXES, ids=[p.stem for p in WITH_FIXES])
def test_following_a_hint_leads_to_no_new_error(case):
    text = case.read_bytes().decode("utf-8")
    before = _problems(text, case.name)
    fixes = [d.fix for d in before if d.fix is not None]
    if not fixes:
        pytest.skip("no fix suggested")
    after = _problems(_apply(text, fixes), case.name)
    old = {d.message for d in before}
    new = [d.format(Source(case.name, _apply(text, fixes))) for d in after if d.message not in old]
    assert not new, "\n".join(new)


def test_the_newcomer_fixtures_check_clean_once_their_hints_are_followed():
    newcomer = [c for c in CASES if c.stem.startswith("hint_")]
    fixed = 0
    for case in newcomer:
        text = case.read_text("utf-8")
        fixes = [d.fix for d in _problems(text, case.name) if d.fix is not None]
        if fixes:
            assert _problems(_apply(text, fixes), case.name) == [], case.name
            fixed += 1
    assert fixed >= 20


# ---- the same habits, written differently ---------------------------------------------------

PROGRAM = """network t {
  input 3x32x32
  classes 10
  key {
    KEY
    join = mean
    pool = maxpool(2)
    head = gap . flatten . linear(classes)
  }
  RULES
  columns 2
  BLOCKS
  DROPPATH
}
"""
DEFAULTS = {
    "KEY": "unit(c, p) = conv3x3(c) . dropout(p) . bn . relu",
    "RULES": "f[1] = unit\n  f[C+1] = join(f[C] . f[C], unit)",
    "BLOCKS": "blocks (32, 0.1) (64, 0.2)",
    "DROPPATH": "droppath local 0.1",
}


def _program(**parts: str) -> str:
    text = PROGRAM
    for k, v in {**DEFAULTS, **parts}.items():
        text = text.replace(k, v)
    return text


def _one_fixed(text: str) -> tuple[str, str]:
    """The one diagnostic's message and the program with its fix applied (which must check clean)."""
    problems = _problems(text)
    assert len(problems) == 1, [d.message for d in problems]
    (d,) = problems
    assert d.fix is not None, d
    fixed = d.fix.apply(text)
    assert _problems(fixed) == [], [p.message for p in _problems(fixed)]
    return d.message, fixed


def test_a_rewrite_that_would_not_parse_is_not_suggested():
    """Blocks over two lines, one of them broken: the commas are named, but no spelling is
    suggested, since rewriting them would not parse either (found by tests/test_fuzz.py)."""
    text = _program(BLOCKS="blocks (32, 0.1) \n64, 0.2) (64, 0.3)")
    (d,) = _problems(text)
    assert d.message == "blocks are separated by spaces, not ','"
    assert d.fix is None and (d.hint is None or "write" not in d.hint)


def test_the_default_program_checks_clean():
    assert _problems(_program()) == []


COMMAS = "composed with '.', not ','"
NESTED = "not called on another layer"


@pytest.mark.parametrize(
    ("key", "habit"),
    [
        ("unit(c, p) = conv3x3(c),dropout(p),bn,relu", COMMAS),
        ("unit(c, p) = conv(c, kernel=5, stride=1) , bn , relu . dropout(p)", COMMAS),
        ("unit(c, p) = dropout(p), conv3x3(c) . relu, bn", COMMAS),
        ("unit(c, p) = conv3x3(c),   # over lines\n      dropout(p), bn,\n      relu", COMMAS),
        ("unit(c, p) = conv3x3(c) .\n      dropout(p), bn . relu", COMMAS),
        ("unit(c, p) = conv3x3(c)\n      , dropout(p)\n      , relu", COMMAS),
        ("unit(c, p) = relu(\n      bn(conv3x3(c))) . dropout(p)", NESTED),
        ("unit(c, p) = relu(bn(conv3x3(c, bias=false)) . dropout(p))", NESTED),
        ("unit(c, p) = dropout(relu(conv3x3(c)), p)", NESTED),
        ("unit(c, p) = dropout(relu(bn(conv(c, kernel=5))), p=p)", NESTED),
    ],
)
def test_commas_anywhere_between_composed_layers_and_any_nested_call(key, habit):
    message, _ = _one_fixed(_program(KEY=key))
    assert habit in message


@pytest.mark.parametrize(
    "rules",
    [
        "f[1] = relu(unit)",
        "f[1] = dropout(unit, 0.1)",
        "f[1] = unit\n  f[C+1] = join(relu(f[C]) . f[C], unit)",
        "f[1] = unit\n  f[C+1] = join(f[C] . f[C], relu(bn(unit)))",
        "f[1] = unit, relu",
    ],
)
def test_the_same_habits_in_rules(rules):
    if "C+1" not in rules:
        rules += "\n  f[C+1] = join(f[C] . f[C], unit)"
    message, _ = _one_fixed(_program(RULES=rules))
    assert NESTED in message or COMMAS in message


@pytest.mark.parametrize(
    "droppath",
    ["droppath local=0.1", "droppath local = 0.1 global=0.4", "droppath global: 0.5, local: 0.1", "droppath(local=0.2)"],
)
def test_any_name_value_in_droppath(droppath):
    message, fixed = _one_fixed(_program(DROPPATH=droppath))
    assert "drop-path options are a word and a value" in message


@pytest.mark.parametrize(
    "blocks",
    [
        "blocks 32, 64",
        "blocks (32, 0.1),(64, 0.2)",
        "blocks (c=32, p=0.1), (c=64, p=0)",
        "blocks [32, 64]",
        "blocks (32, 0.1); (64, 0.2)",
        "blocks (32, 0.1),\n         (64, 0.2)",  # over two lines: still one error
    ],
)
def test_blocks_separated_by_commas_or_written_as_a_list(blocks):
    key = "unit(c) = conv3x3(c) . relu" if "(" not in blocks else DEFAULTS["KEY"]
    message, _ = _one_fixed(_program(BLOCKS=blocks, KEY=key))
    assert message.startswith("blocks are separated by spaces")


@pytest.mark.parametrize("indent", ["  ", "    ", "\t"])
def test_any_python_style_program(indent):
    text = "network resnet_ish:\n  input 3x32x32\n  classes 10\n  columns 2\n  key:\n    unit(c) = conv3x3(c) . relu\n"
    text += "    head = gap . flatten . linear(classes)\n\n  f[1] = unit\n  f[C+1] = join(f[C] . f[C], unit)\n"
    text += "  blocks 16 32   # channels\n"
    message, fixed = _one_fixed(text.replace("  ", indent))
    assert "braces" in message
    assert fixed.count("{") == fixed.count("}") == 2
    only_key = _program().replace("key {", "key:").replace("  }\n  RULES", "  RULES")
    message, _ = _one_fixed(only_key.replace("\n  }\n  f[1]", "\n  f[1]"))
    assert "braces" in message


@pytest.mark.parametrize(
    ("key", "names"),
    [
        ("unit(c, p) = conv3x3(c, activation=relu) . dropout(p)", "channels, stride, padding, bias"),
        ("unit(c, p) = conv3x3(c, Stride=1) . dropout(p) . relu", "channels, stride"),
        ("unit(c, p) = conv3x3(c) . dropout(p, inplace=true) . relu", "p"),
        ("unit(c, p) = conv3x3(c) . dropout(p) . leakyrelu(alpha=0.2)", "slope"),
    ],
)
def test_any_unknown_keyword_argument_lists_the_real_ones(key, names):
    problems = _problems(_program(KEY=key))
    assert len(problems) == 1
    assert "has no argument" in problems[0].message and names in problems[0].message
    if problems[0].fix is not None:
        assert _problems(problems[0].fix.apply(_program(KEY=key))) == []


@pytest.mark.parametrize("op", ["->", ">>", "|", "*", "\u2218", "|>"])
def test_composition_written_as_in_other_languages(op):
    message, fixed = _one_fixed(_program(KEY=f"unit(c, p) = conv3x3(c) {op} dropout(p) . bn . relu"))
    assert message == f"layers are composed with '.', not `{op}`"
    message, _ = _one_fixed(_program(RULES=f"f[1] = unit\n  f[C+1] = join(f[C] {op} f[C], unit)"))
    assert message == f"layers are composed with '.', not `{op}`"


@pytest.mark.parametrize(("written", "meant"), [("local 15", "local 0.15"), ("local 0.1 global 50", "global 0.5")])
def test_drop_path_given_as_a_percentage(written, meant):
    message, fixed = _one_fixed(_program(DROPPATH=f"droppath {written}"))
    assert "probability must be between 0 and 1" in message and meant in fixed


def test_a_key_entry_given_an_activation_keyword():
    text = _program(RULES="f[1] = unit\n  f[C+1] = join(f[C] . f[C], unit(activation=relu))")
    message, fixed = _one_fixed(text)
    assert message == "`unit` has no parameter `activation` (its parameters are c, p)"
    assert "join(f[C] . f[C], unit . relu)" in fixed


@pytest.mark.parametrize("layer", ["bn(c)", "batchnorm(64)", "relu(0.1)", "gap(1)", "flatten(1)"])
def test_any_parameterless_layer_given_arguments(layer):
    key = f"unit(c, p) = conv3x3(c) . dropout(p) . {layer} . relu"
    if layer.startswith(("gap", "flatten")):
        key = "unit(c, p) = conv3x3(c) . dropout(p) . relu"
        head = f"head = {layer} . flatten . linear(classes)" if layer.startswith("gap") else "head = gap . flatten(1)"
        text = _program(KEY=key).replace("head = gap . flatten . linear(classes)", head + " . linear(classes)")
        text = text.replace("flatten . flatten(1)", "flatten(1)")
    else:
        text = _program(KEY=key)
    message, _ = _one_fixed(text)
    assert "takes no arguments" in message


@pytest.mark.parametrize("name", ["my-net", "my net", "3net", "net.v2"])
def test_any_network_name_that_is_not_a_name(name):
    message, fixed = _one_fixed(_program().replace("network t", f"network {name}"))
    assert "cannot name a network" in message


@pytest.mark.parametrize(
    ("line", "written"),
    [("columns 2", "columns: 2"), ("columns 2", "columns = 2"), ("classes 10", "classes=10"),
     ("input 3x32x32", "input: 3x32x32"), ("blocks (32, 0.1) (64, 0.2)", "blocks = (32, 0.1) (64, 0.2)")],
)  # fmt: skip
def test_a_statement_written_with_a_colon_or_equals(line, written):
    message, fixed = _one_fixed(_program().replace(line, written))
    assert "a statement is its keyword, then its value" in message
    assert fixed == _program()


def test_head_never_suggests_a_parameter_it_cannot_take():
    text = _program().replace("head = gap . flatten", "head = gap . flatten . dropout(p)")
    message, fixed = _one_fixed(text)
    assert "dropout(0.2)" in fixed


@pytest.mark.parametrize(
    ("layer", "spelling"),
    [
        ("Conv2d(16, 64, 3)", "conv3x3(c)"),
        ("Conv2D(64, 5)", "conv5x5(c)"),
        ("Conv2d(16, 64, kernel_size=3, stride=1)", "conv3x3(c, stride=1)"),
        ("conv3x3(c) . BatchNorm2d(c)", "conv3x3(c) . batchnorm"),
        ("conv3x3(c) . batchnorm2d", "conv3x3(c) . batchnorm"),
    ],
)
def test_pytorch_and_keras_layers_get_their_fdsl_spelling(layer, spelling):
    message, fixed = _one_fixed(_program(KEY=f"unit(c, p) = {layer} . dropout(p) . relu"))
    assert spelling in fixed


@pytest.mark.parametrize(
    ("head", "spelling"),
    [
        ("gap . flatten . Linear(64, 10)", "linear(10)"),
        ("gap . flatten . Dense(10)", "linear(10)"),
        ("AdaptiveAvgPool2d(1) . flatten . linear(classes)", "gap . flatten"),
        ("gap . flatten . linear(classes, activation=softmax)", "linear(classes)"),
    ],
)
def test_a_head_written_as_in_pytorch_or_keras(head, spelling):
    message, fixed = _one_fixed(_program().replace("head = gap . flatten . linear(classes)", f"head = {head}"))
    assert spelling in fixed


def test_a_stem_never_suggests_a_parameter_it_cannot_take():
    text = _program().replace("join = mean", "join = mean\n    stem = conv3x3(c) . relu")
    message, fixed = _one_fixed(text)
    assert "stem = conv3x3(32)" in fixed


@pytest.mark.parametrize(
    ("layer", "spelling"),
    [
        ("conv3x3(c, kernel_size=5)", "conv(c, kernel=5)"),
        ("conv1x1(c, kernel_size=3, stride=1)", "conv(c, kernel=3, stride=1)"),
        ("conv5x5(c, bias=false, kernel_size=7)", "conv(c, bias=false, kernel=7)"),
    ],
)
def test_pytorchs_kernel_size_on_a_fixed_kernel_names_conv_and_its_kernel(layer, spelling):
    message, fixed = _one_fixed(_program(KEY=f"unit(c, p) = {layer} . dropout(p) . relu"))
    assert "has no argument `kernel_size`" in message
    assert f"unit(c, p) = {spelling} . dropout(p)" in fixed


@pytest.mark.parametrize(
    ("written", "meant"),
    [("columns two", "columns 2"), ("columns Two", "columns 2"), ("classes ten", "classes 10"),
     ("classes twenty", "classes 20"), ("classes sixty-four", "classes 64"), ("classes twenty one", "classes 21")],
)  # fmt: skip
def test_a_count_written_as_a_word_is_written_in_digits(written, meant):
    line = "columns 2" if written.startswith("columns") else "classes 10"
    message, fixed = _one_fixed(_program().replace(line, written))
    assert "is a number written in digits" in message
    assert fixed == _program().replace(line, meant)


@pytest.mark.parametrize(
    ("written", "meant"),
    [("(thirty, 0.1) (64, 0.2)", "(30, 0.1) (64, 0.2)"), ("(c=eighteen, p=0.1) (64, 0.2)", "(c=18, p=0.1) (64, 0.2)")],
)
def test_a_block_value_written_as_a_word_is_written_in_digits(written, meant):
    message, fixed = _one_fixed(_program(BLOCKS=f"blocks {written}"))
    assert fixed == _program(BLOCKS=f"blocks {meant}")


def test_number_words_from_zero_to_a_hundred():
    from fractal_dsl.habits import number_word

    words = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen"
    words += " seventeen eighteen nineteen twenty"
    assert [number_word(w) for w in words.split()] == list(range(21))
    assert [number_word(w) for w in ("Forty-two", "ninety nine", "hundred", "one hundred")] == [42, 99, 100, 100]
    assert [number_word(w) for w in ("conv", "twenty zero", "ten one", "", "c")] == [None] * 5


YAML = """# the same program, as YAML
network: t
input: 3x32x32
classes: 10
key:
  unit(c, p): conv3x3(c) . dropout(p) . bn . relu
  join: mean
  pool: maxpool(2)
  head: gap . flatten . linear(classes)
f[1] = unit
f[C+1] = join(f[C] . f[C], unit)
columns: 2
blocks: [[32, 0.1], [64, 0.2]]
droppath: local 0.1
"""


def test_a_yaml_style_program_is_one_error_at_its_first_line_with_the_program_rewritten():
    problems = _problems(YAML)
    assert len(problems) == 1, [d.message for d in problems]
    (d,) = problems
    assert d.message.startswith("fractal-dsl is not YAML: a program is `network NAME { ... }`")
    assert (d.span.line, d.span.column) == (2, 8)
    fixed = d.fix.apply(YAML)
    assert _problems(fixed) == []
    assert fixed.startswith("# the same program, as YAML\nnetwork t {\n  input 3x32x32\n")
    assert "  blocks (32, 0.1) (64, 0.2)\n  droppath local 0.1\n}\n" in fixed


def test_a_yaml_style_file_without_a_network_line_is_still_one_error_without_a_fix():
    (d,) = _problems("columns: 3\nclasses: 10\ninput: 1x8x8\n")
    assert d.message.startswith("fractal-dsl is not YAML") and (d.span.line, d.span.column) == (1, 8)
    assert d.fix is None and "write" not in d.hint


@pytest.mark.parametrize(
    ("droppath", "meant"),
    [
        ("droppath local 0.1   /* the paper's */", "droppath local 0.1   # the paper's"),
        ("droppath local 0.1 /**/", "droppath local 0.1 #"),
        ("/* drop-path:\n   * local only\n   */ \n  droppath local 0.1", "# drop-path:\n   # local only\n   # \n  droppath local 0.1"),
    ],
)  # fmt: skip
def test_a_c_style_comment_is_fixed_to_a_hash(droppath, meant):
    message, fixed = _one_fixed(_program(DROPPATH=droppath))
    assert message == "comments start with '#', not '/*'"
    assert fixed == _program(DROPPATH=meant)


def test_a_c_style_comment_before_code_is_named_without_a_fix():
    (d,) = _problems(_program(DROPPATH="/* local */ droppath local 0.1"))
    assert d.message == "comments start with '#', not '/*'" and d.fix is None
