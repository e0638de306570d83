"""The README: its walk-through code runs exactly as printed; quick start and images are in place."""
import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import jaxhlm  # noqa: E402
from jaxhlm._src import example  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
REF = Path(__file__).parent / "data" / "reference"


def section(text: str, heading: str) -> str:
    m = re.search(rf"^{re.escape(heading)}.*?$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert m, f"README has no section {heading!r}"
    return m.group(1)


WALK = section(README, "## Walk-through")
BLOCKS = re.findall(r"^```python\n(.*?)^```", WALK, flags=re.M | re.S)


def ref(case):
    return json.loads((REF / f"{case}.json").read_text())


def test_walkthrough_blocks_are_the_example_steps():
    """`jaxhlm example` runs the same code as the README shows."""
    assert [b.rstrip("\n") for b in BLOCKS] == [s.code for s in example.STEPS]


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory):
    """Run the README's steps, in order, in one namespace, in a scratch directory, capturing what
    each prints exactly as ``jaxhlm example`` (and the README generator) does."""
    work = tmp_path_factory.mktemp("walkthrough")
    ns: dict = {}
    results = list(example.run_steps(outdir=str(work), plots=True, namespace=ns))
    matplotlib.pyplot.close("all")
    for r in results:
        assert r.error is None, r.error
    return ns, work, results


_NUM = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:e[-+]?\d+)?")


def _same_output(old: str, new: str) -> bool:
    """Same text, and numbers equal to 1e-5 relative: the last digits of a fit depend on the BLAS
    and thread count of the machine, not on the code."""
    if _NUM.sub("#", old) != _NUM.sub("#", new):
        return False
    a, b = (np.array([float(x) for x in _NUM.findall(t)]) for t in (old, new))
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= 1e-5 * np.maximum(np.abs(a), np.abs(b)) + 1e-8))


def test_walkthrough_outputs_are_current(walkthrough):
    """The printed outputs in the README are what the code prints now (regenerate them with
    ``python -m jaxhlm._src.example``)."""
    _, _, results = walkthrough
    stale = []
    for r in results:
        if not (r.step.show_output and r.output):
            continue
        m = re.search(re.escape("```python\n" + r.step.code + "\n```\n\n```text\n") + r"(.*?)\n```", WALK, flags=re.S)
        assert m, f"README lacks the output block of step {r.step.title!r}"
        if not _same_output(m.group(1), r.output.rstrip("\n")):
            stale.append(r.step.title)
    assert stale == [], "README outputs are stale: run python -m jaxhlm._src.example"


def test_walkthrough_runs_and_gives_lme4_numbers(walkthrough):
    ns, _, _ = walkthrough
    for name, case in (("m1", "nels_m1"), ("m2", "nels_m2"), ("m3", "nels_m5"), ("m5", "nels_m6")):
        R = ref(case)
        fit = ns[name]
        assert fit.formula.replace(" ", "") == R["formula"].replace(" ", "").replace("1+family_inc", "family_inc")
        assert fit.objective == pytest.approx(R["objective_best"] if "objective_best" in R else R["objective"], abs=0.01)
        for k, v in R["beta"].items():
            assert fit.fixef[k] == pytest.approx(v, rel=1e-3)
    m0 = ns["m0"]
    assert m0.reml and m0.varcorr["vcov"].iloc[0] == pytest.approx(ref("nels_icc")["null_model"]["tau00"], rel=1e-4)
    cf = ns["cf"]
    assert len(cf) == 854 and ns["t"].df == 853
    assert ns["t"].statistic == pytest.approx(cf["(Intercept)"].mean() / cf["(Intercept)"].std(ddof=1) * np.sqrt(854))


def test_walkthrough_f_tests_and_emmeans_as_r(walkthrough):
    """The step after the model comparison against lmerTest / emmeans (R 4.2, lmerTest 3.1-3,
    emmeans 1.8.4; lme4's default optimizer warned max|grad| = 0.0066 there, hence 1e-3)."""
    ns, _, _ = walkthrough
    m6 = ns["m6"]
    a = m6.anova()
    np.testing.assert_allclose(a["F value"], [757.8746601, 1.502615163, 0.02458955992], rtol=1e-3)
    np.testing.assert_allclose(a["DenDF"], [676.0070042, 628.6021024, 676.0070034], rtol=1e-3)
    assert m6.ranova()["LRT"].iloc[1] == pytest.approx(4.286441912, rel=1e-3)
    e = ns["e"]
    np.testing.assert_allclose(e["emmean"], [49.51203191, 48.62670972], rtol=1e-6)
    np.testing.assert_allclose(e["SE"], [0.1770713554, 0.2753889007], rtol=1e-3)


def test_walkthrough_icc_and_anova(walkthrough):
    """ICC and anova of the walk-through against merTools / lme4."""
    ns, _, _ = walkthrough
    icc = jaxhlm.icc(ns["dat"], "mathscore", "sch_id")
    assert icc == pytest.approx(ref("nels_icc")["icc"], rel=1e-4)
    table = jaxhlm.anova(ns["m1"], ns["m2"])
    R = ref("nels_anova_m1_m2")["table"]
    assert table["Chisq"].iloc[1] == pytest.approx(R["Chisq"][1], abs=0.01)
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(R["Pr(>Chisq)"][1], abs=1e-3)


def test_walkthrough_images(walkthrough):
    _, work, _ = walkthrough
    step = next(s for s in example.STEPS if s.images)
    for img in step.images:
        for path in (work / img, ROOT / "docs" / img):  # written by the code; committed for the README
            assert path.exists(), path
            pix = mpimg.imread(path)[..., :3]
            assert len(np.unique((pix * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 100
            assert np.mean(np.any(pix < 0.95, axis=-1)) > 0.05  # not blank
        assert f"](docs/{img})" in WALK


def test_quick_start_commands():
    quick = section(README, "## Quick start")
    assert "pip install . && jaxhlm example" in quick
    assert 'pip install ".[test]" && python -m pytest -q' in quick
