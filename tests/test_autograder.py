"""The hidden tests grade the student's code: wrong submissions lose the points of the behaviour they break.

Each case is one student's version of a graded function (the code a student would write in the
notebook), graded in this process by the built autograder's own test files through otter's
`ExceptionTestFile` (the same code `otter run` uses, without a kernel per case). Delegating to a
reference (langneurons, the course kit, scikit-learn, also through an alias) or looping where
vectorization is asked loses the question's points; a correct solution written differently keeps
them; a defect in one behaviour costs that behaviour's tests and names it in the message.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from langneurons.course import build, checks, kit

pytestmark = pytest.mark.xdist_group("course")


@pytest.fixture(scope="module")
def tests_of(tmp_path_factory) -> dict[str, Path]:
    """Assignment -> its autograder's tests/ folder (built once)."""
    out = tmp_path_factory.mktemp("dist")
    found = {}
    for master in build.masters():
        build.build_one(master, out)
        found[master.stem] = out / master.stem / "autograder" / "tests"
    return found


@pytest.fixture(scope="module")
def env() -> dict:
    model, tokenizer = kit.tiny_model()
    return {"np": np, "torch": torch, "pd": pd, "kit": kit, "model": model, "tokenizer": tokenizer}


def student(env: dict, *cells: str) -> dict:
    """The notebook's globals after a student's cells: compiled as notebook code (not a library file)."""
    namespace = dict(env)
    for cell in cells:
        exec(compile(textwrap.dedent(cell), "<student cell>", "exec"), namespace)
    return namespace


def grade(tests: Path, question: str, namespace: dict) -> tuple[float, float, dict[str, tuple[bool, str]]]:
    """(score, possible, {test name: (passed, message)}) of one question's test file, hidden tests included."""
    from otter.test_files.exception_test import ExceptionTestFile

    checks.hide_test_sources()  # as grading does in the kernel
    test_file = ExceptionTestFile.from_file(str(tests / f"{question}.py"))
    test_file.run(namespace)
    results = {r.test_case.name: (r.passed, r.message.removeprefix("❌ Test case failed\n"))
               for r in test_file.test_case_results}
    return test_file.score, test_file.possible, results


def failed(results: dict[str, tuple[bool, str]]) -> str:
    return " | ".join(message for passed, message in results.values() if not passed)


# --- assignment 1 ---------------------------------------------------------------------------------

MEAN_POOL = """
def mean_pool(output, attention_mask):
    mask = attention_mask.to(output.dtype).unsqueeze(-1)
    return (output * mask).sum(dim=1) / mask.sum(dim=1)
"""

COLLECT = """
def collect_responses(model, tokenizer, texts, module_names, batch_size=8):
    modules = dict(model.named_modules())
    pooled = {name: [] for name in module_names}
    state = {}

    def make_hook(name):
        def hook(module, inputs, output):
            pooled[name].append(mean_pool(output, state["mask"]).detach().float().cpu())
        return hook

    handles = [modules[name].register_forward_hook(make_hook(name)) for name in module_names]
    try:
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], padding=True, return_tensors="pt")
            state["mask"] = batch["attention_mask"]
            with torch.no_grad():
                model(**batch)
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.cat(parts).numpy() for name, parts in pooled.items()}
"""


@pytest.mark.slow
def test_a1_mean_pool(tests_of, env):
    tests = tests_of["a1_responses"]
    score, possible, _ = grade(tests, "q1", student(env, MEAN_POOL))
    assert score == possible == 3
    different = """
    def mean_pool(output, attention_mask):
        weights = attention_mask.float()
        weights /= weights.sum(1, keepdim=True)
        return torch.einsum("btw,bt->bw", output, weights)
    """
    assert grade(tests, "q1", student(env, different))[0] == 3
    loop = """
    def mean_pool(output, attention_mask):
        return torch.stack([output[i][attention_mask[i].bool()].mean(0) for i in range(len(output))])
    """
    score, _, results = grade(tests, "q1", student(env, loop))
    assert score == 0 and "not vectorized over texts" in failed(results)
    delegated = """
    from langneurons.model import activations as helpers
    def mean_pool(output, attention_mask):
        mask = attention_mask.bool()
        return helpers.token_mean(output, mask, mask.sum(1))
    """
    score, _, results = grade(tests, "q1", student(env, delegated))
    assert score == 0 and "your code called langneurons" in failed(results)


@pytest.mark.slow
def test_a1_collect_responses(tests_of, env):
    tests = tests_of["a1_responses"]
    good = student(env, MEAN_POOL, COLLECT)
    assert grade(tests, "q2", good)[:2] == (6, 6)
    outside_finally = COLLECT.replace("""    try:
        for start""", """    if True:
        for start""").replace("""    finally:
        for handle""", """    if True:
        for handle""")
    score, _, results = grade(tests, "q2", student(env, MEAN_POOL, outside_finally))
    assert score == 4 and failed(results).startswith("AssertionError: hook removal:"), results
    assert "stayed registered when the forward pass raised" in failed(results)
    left_registered = COLLECT.replace("            handle.remove()", "            pass")
    score, _, results = grade(tests, "q2", student(env, MEAN_POOL, left_registered))
    assert score == 3 and all(m.startswith("AssertionError: hook removal") for ok, m in results.values() if not ok), results
    delegated = """
    def collect_responses(model, tokenizer, texts, module_names, batch_size=8):
        matrix, units = kit.responses(model, tokenizer, texts)
        return {name: kit.module_responses(matrix, units, name) for name in module_names}
    """
    score, _, results = grade(tests, "q2", student(env, MEAN_POOL, delegated))
    assert score == 0 and "your code called langneurons" in failed(results)


# --- assignment 2 ---------------------------------------------------------------------------------

AP_ONE = """
def average_precision(scores, labels):
    scores, labels = np.asarray(scores, dtype=float), np.asarray(labels).astype(bool)
    return float(np.mean([labels[scores >= s].sum() / (scores >= s).sum() for s in scores[labels]]))
"""

AP_ALL = """
def ap_all_units(responses, labels):
    x = np.asarray(responses, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    n, u = x.shape
    order = np.argsort(-x, axis=0, kind="stable")
    xs = np.take_along_axis(x, order, axis=0)
    ys = np.take_along_axis(np.broadcast_to(y[:, None], (n, u)), order, axis=0)
    hits = np.cumsum(ys, axis=0)
    is_end = np.ones((n, u), dtype=bool)
    is_end[:-1] = xs[1:] != xs[:-1]
    end = np.minimum.accumulate(np.where(is_end, np.arange(n)[:, None], n)[::-1], axis=0)[::-1]
    return (np.take_along_axis(hits, end, axis=0) / (end + 1) * ys).sum(axis=0) / y.sum()
"""


@pytest.mark.slow
def test_a2_average_precision(tests_of, env):
    tests = tests_of["a2_expertise"]
    assert grade(tests, "q1", student(env, AP_ONE))[:2] == (4, 4)
    different = """
    def average_precision(s, y):
        s = np.asarray(s, dtype=float); y = np.asarray(y) == 1
        at_or_above = s[None, :] >= s[y][:, None]           # [positives, texts]
        return float(np.mean((at_or_above & y).sum(1) / at_or_above.sum(1)))
    """
    assert grade(tests, "q1", student(env, different))[0] == 4
    for delegated in ("""
    import sklearn.metrics as sm
    my_ap = sm.average_precision_score
    def average_precision(scores, labels):
        return float(my_ap(labels, scores))
    """, """
    from langneurons.scoring import ap as _ap
    def average_precision(scores, labels):
        return float(_ap.average_precision(torch.tensor(np.asarray(scores, dtype=np.float32))[:, None],
                                           torch.tensor(np.asarray(labels)))[0])
    """, """
    def average_precision(scores, labels):
        try:                                         # caught: the refusal is recorded all the same
            from sklearn.metrics import average_precision_score
            return float(average_precision_score(labels, scores))
        except Exception:
            return 0.5
    """):
        score, _, results = grade(tests, "q1", student(env, delegated))
        assert score == 0 and "instead of computing it itself" in failed(results), results


@pytest.mark.slow
def test_a2_ap_all_units(tests_of, env):
    tests = tests_of["a2_expertise"]
    assert grade(tests, "q2", student(env, AP_ALL))[:2] == (4, 4)
    different = """
    def ap_all_units(responses, labels):   # torch, float64, ties by searchsorted on each sorted column
        x = torch.as_tensor(np.asarray(responses, dtype=np.float64))
        y = torch.as_tensor(np.asarray(labels)).bool()
        xs, order = torch.sort(x, dim=0, descending=True)
        ys = y[order].double()
        hits = ys.cumsum(0)
        ascending = torch.flip(xs, [0]).T.contiguous()
        below = torch.searchsorted(ascending, ascending, right=False).T.flip(0)   # texts strictly below
        end = x.shape[0] - 1 - below
        precision = torch.gather(hits, 0, end) / (end + 1)
        return ((precision * ys).sum(0) / y.sum()).numpy()
    """
    assert grade(tests, "q2", student(env, different))[0] == 4
    loop = """
    def ap_all_units(responses, labels):
        return np.array([average_precision(responses[:, j], labels) for j in range(responses.shape[1])])
    """
    score, _, results = grade(tests, "q2", student(env, AP_ONE, loop))
    assert score == 0 and "not vectorized over units" in failed(results)
    vectorize = """
    def ap_all_units(responses, labels):
        return np.apply_along_axis(average_precision, 0, np.asarray(responses, dtype=float), labels)
    """
    assert grade(tests, "q2", student(env, AP_ONE, vectorize))[0] == 0
    delegated = """
    import langneurons.scoring.ap as anything
    def ap_all_units(responses, labels):
        return anything.average_precision(torch.as_tensor(np.ascontiguousarray(responses)), torch.as_tensor(labels)).double().numpy()
    """
    score, _, results = grade(tests, "q2", student(env, delegated))
    assert score == 0 and "your code called langneurons" in failed(results)


# --- assignment 3 ---------------------------------------------------------------------------------

FORCE = """
from contextlib import contextmanager

@contextmanager
def force_units(model, spec):
    modules = dict(model.named_modules())
    handles = []

    def make_hook(units, values):
        def hook(module, inputs, output):
            output = output.clone()
            output[..., units] = values.to(output.dtype)
            return output
        return hook

    try:
        for name, (units, values) in spec.items():
            handles.append(modules[name].register_forward_hook(make_hook(units + OFFSET, values)))
        yield model
    finally:
        for handle in handles:
            handle.remove()
"""


def _force(env: dict, source: str, offset: int = 0) -> dict:
    return student(env, f"OFFSET = {offset}\n" + source)


@pytest.mark.slow
def test_a3_force_units(tests_of, env):
    tests = tests_of["a3_control"]
    assert grade(tests, "q1", _force(env, FORCE))[:2] == (9, 9)
    different = """
    class force_units:                       # a class, in-place writes, hooks kept in a dict
        def __init__(self, model, spec):
            self.model, self.spec, self.handles = model, spec, {}

        def __enter__(self):
            modules = dict(self.model.named_modules())
            for name, (units, values) in self.spec.items():
                def hook(module, inputs, output, units=units, values=values):
                    output = output.clone()
                    output.index_copy_(-1, units, values.to(output.dtype).expand(*output.shape[:-1], -1))
                    return output
                self.handles[name] = modules[name].register_forward_hook(hook)
            return self.model

        def __exit__(self, *exc):
            for handle in self.handles.values():
                handle.remove()
            return False
    """
    assert grade(tests, "q1", student(env, different))[0] == 9
    no_finally = FORCE.replace("    try:\n        for name", "    if True:\n        for name").replace(
        "    finally:\n        for handle", "    if True:\n        for handle")
    score, _, results = grade(tests, "q1", _force(env, no_finally))
    assert score == 7 and failed(results).startswith("AssertionError: restoring after an exception"), results
    swallows = FORCE.replace("        yield model\n    finally:", "        yield model\n    except Exception:\n        pass\n    finally:")
    score, _, results = grade(tests, "q1", _force(env, swallows))
    assert score == 8 and "propagating the exception" in failed(results)
    score, _, results = grade(tests, "q1", _force(env, FORCE, offset=1))
    messages = failed(results)
    assert score <= 6 and "unit indices" in messages and "positions" not in messages and "KV cache" not in messages, messages
    delegated = """
    def force_units(model, spec):
        return kit.reference_forcing(model, spec)
    """
    score, _, results = grade(tests, "q1", student(env, delegated))
    assert score == 0 and "your code called langneurons" in failed(results)


# --- assignment 4 ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_a4_figure_shown_not_saved_costs_the_figure_only(tests_of, env, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"condition": ["none", "all"], "language": ["ja", "ja"], "rate": [10.0, 60.0]}).to_csv("experiment.csv", index=False)
    score, possible, results = grade(tests_of["a4_experiment"], "q2", {**env, "grading_cell_errors": []})
    assert (score, possible) == (2, 3)
    assert all(m.startswith("AssertionError: saving the figure") for ok, m in results.values() if not ok), results


# --- messages ---------------------------------------------------------------------------------------

@pytest.mark.slow
def test_failure_messages_give_no_source_and_no_expected_value(tests_of, env):
    """Otter prints a failing test's line; grading shows the message alone, and no message holds the answer."""
    wrong = student(env, """
    ap_ties = 0.3
    ap_positives_first = 0.5
    """)
    score, _, results = grade(tests_of["a2_expertise"], "q3", wrong)
    text = failed(results)
    assert score == 0 and "ties by hand" not in text  # the behaviour is in failure_message, shown beside
    assert "0.325" not in text and "0.45" not in text and "assert" not in text and "Error at line" not in text


# --- assignment 5 ---------------------------------------------------------------------------------

LAPE = """
def activation_probability(counts, tokens):
    counts, tokens = np.asarray(counts), np.asarray(tokens)
    return (counts / tokens[:, None]).T

def lape_entropy(p):
    p = np.asarray(p, dtype=np.float64)
    total = p.sum(axis=1, keepdims=True)
    q = np.divide(p, total, out=np.zeros_like(p), where=total > 0)
    entropy = -(q * np.log(q, out=np.zeros_like(q), where=q > 0)).sum(axis=1)
    entropy[total[:, 0] == 0] = np.inf
    return entropy

def kth_smallest(values, rate):
    flat = np.ravel(values)
    k = min(max(int(round(flat.size * rate)), 1), flat.size)
    return float(np.partition(flat, k - 1)[k - 1])

def lape_select(p, top_rate, filter_rate, activation_bar_ratio):
    p = np.asarray(p, dtype=np.float64)
    passes = (p > kth_smallest(p, filter_rate)).any(axis=1)
    ranked = np.where(passes, lape_entropy(p), np.inf)
    order = np.argsort(ranked, kind="stable")[:int(round(len(p) * top_rate))]
    kept = order[np.isfinite(ranked[order])]
    bar = kth_smallest(p, activation_bar_ratio)
    return [np.sort(kept[p[kept, lang] > bar]) for lang in range(p.shape[1])]
"""


@pytest.mark.slow
def test_a5_lape(tests_of, env):
    tests = tests_of["a5_ap_vs_lape"]
    good = student(env, LAPE)
    assert grade(tests, "q1", good)[:2] == (3, 3) and grade(tests, "q2", good)[:2] == (5, 5)
    operators_only = """
    def activation_probability(counts, tokens):   # no call per unit, one line run per unit
        return np.array([counts[:, u] / tokens for u in range(counts.shape[1])])
    """
    score, _, results = grade(tests, "q1", student(env, LAPE, operators_only))
    assert score == 0 and "not vectorized over units" in failed(results)
    row_loop = """
    def lape_entropy(p):
        return np.array([-(r / r.sum() * np.log(np.where(r > 0, r / max(r.sum(), 1e-300), 1))).sum() if r.sum() > 0 else np.inf
                         for r in np.asarray(p, dtype=np.float64)])
    """
    score, _, results = grade(tests, "q2", student(env, LAPE, row_loop))
    assert score == 0 and "not vectorized over units" in failed(results)
    delegated = """
    from langneurons.scoring import lape as theirs
    def activation_probability(counts, tokens):
        return theirs.activation_probability(np.asarray(counts), np.asarray(tokens))
    """
    score, _, results = grade(tests, "q1", student(env, LAPE, delegated))
    assert score == 0 and "your code called langneurons" in failed(results)
