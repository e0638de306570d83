"""The students-in-schools walk-through: the README's worked example and ``jaxhlm example``.

The classic two-level analysis of math scores of students (level 1) in schools (level 2) on the
bundled ``nels_like`` data: the null model and the intraclass correlation, a random intercept,
a random slope, school-level predictors, a fixed intercept with a random slope, likelihood-ratio
tests of nested models, per-school coefficients and a t-test of them, the chi-square test of
the random effects, and plots.

:data:`STEPS` is the single source of the walk-through: ``jaxhlm example`` (:func:`run`) prints
and runs each step's code; the README's walk-through section and the images in ``docs/`` are
written by :func:`update_readme` (``python -m jaxhlm._src.example`` in the repository root); a
test checks that the README's code blocks are these steps and runs them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
import textwrap
import traceback
import warnings

__all__ = ["Step", "StepResult", "STEPS", "run", "markdown", "run_steps", "update_readme"]


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of the walk-through.

    Fields
    ------
    title : str
    text : str
        Markdown prose shown before the code.
    code : str
        Python code; steps share one namespace, in order.
    images : tuple of str
        PNG files the code writes (in the current directory), shown in the README from ``docs/``.
    show_output : bool
        Put the step's printed output in the README.
    """

    title: str
    text: str
    code: str
    images: tuple = ()
    show_output: bool = True

    @property
    def plots(self) -> bool:
        return bool(self.images)


def _code(s: str) -> str:
    return textwrap.dedent(s).strip("\n")


def _text(s: str) -> str:
    return textwrap.dedent(s).strip()


STEPS = (
    Step(
        "The data",
        """
        8,378 students in 854 schools: a math score, the family's income category (1 to 15) and
        whether the school is urban. `sch_id` loads as a categorical, as R's `factor()`.
        """,
        """
        import jaxhlm

        dat = jaxhlm.datasets.load("nels_like")
        print(dat.head())
        print(dat.shape, dat["sch_id"].nunique(), "schools")
        """,
    ),
    Step(
        "Null model and intraclass correlation",
        """
        `mathscore ~ 1 + (1 | sch_id)`: a grand mean plus a school effect, `y_ij = g00 + u_0j + e_ij`,
        `u_0j ~ N(0, tau00)`, `e_ij ~ N(0, sigma^2)`. The intraclass correlation
        `tau00 / (tau00 + sigma^2)` is the share of the variance of math scores that lies between
        schools. (REML, lme4's default; `reml=False` gives maximum likelihood.)
        """,
        """
        m0 = jaxhlm.lmer("mathscore ~ 1 + (1 | sch_id)", data=dat)
        print(m0.summary())
        vc = m0.varcorr
        tau00, sigma2 = vc["vcov"].iloc[0], vc["vcov"].iloc[-1]
        print("ICC by hand:", tau00 / (tau00 + sigma2))
        print("ICC:", jaxhlm.icc(dat, "mathscore", "sch_id"))   # merTools::ICC
        print(m0.icc())                                          # performance::icc
        """,
    ),
    Step(
        "Random intercept",
        """
        Family income as a student-level predictor; schools differ in their intercepts only:
        `y_ij = g00 + g10 x_ij + u_0j + e_ij`. Fitted by maximum likelihood (`reml=False`) so that
        models with different fixed effects can be compared below. The t tests use
        Satterthwaite's degrees of freedom, as lmerTest.
        """,
        """
        m1 = jaxhlm.lmer("mathscore ~ family_inc + (1 | sch_id)", data=dat, reml=False, name="m1")
        print(m1.summary())
        """,
    ),
    Step(
        "Random slope",
        """
        `(family_inc | sch_id)` lets the income slope vary between schools too:
        `y_ij = g00 + g10 x_ij + u_0j + u_1j x_ij + e_ij`, with a 2 x 2 covariance of
        `(u_0j, u_1j)`. The likelihood-ratio test of `m1` against `m2` (R's `anova(m1, m2)`) tests
        the slope variance and the covariance together (2 df); as the null value of a variance
        lies on the boundary, `boundary=True` adds the p-value from the 50:50 mixture of
        chi-square(1) and chi-square(2), which is the better reference here.
        """,
        """
        m2 = jaxhlm.lmer("mathscore ~ family_inc + (family_inc | sch_id)", data=dat, reml=False, name="m2")
        print(m2.summary())
        print(jaxhlm.anova(m1, m2, boundary=True))
        """,
    ),
    Step(
        "School-level predictors",
        """
        A level-2 predictor is constant within a school: `urban`, or the school's mean family
        income (a contextual effect). Both enter the fixed part like any other column.
        """,
        """
        m3 = jaxhlm.lmer("mathscore ~ family_inc + urban + (1 | sch_id)", data=dat, reml=False, name="m3")
        print(m3.coef_table)

        dat["sch_inc"] = dat.groupby("sch_id", observed=True)["family_inc"].transform("mean")
        m4 = jaxhlm.lmer("mathscore ~ family_inc + sch_inc + (1 | sch_id)", data=dat, reml=False, name="m4")
        print(m4.coef_table)
        print(jaxhlm.anova(m1, m3))
        """,
    ),
    Step(
        "Fixed intercept, random slope",
        """
        `(0 + family_inc | sch_id)` drops the random intercept: all schools share one intercept
        and differ in their income slopes only. It is nested in `m2`.
        """,
        """
        m5 = jaxhlm.lmer("mathscore ~ family_inc + (0 + family_inc | sch_id)",
                         data=dat, reml=False, name="m5")
        print(m5.varcorr)
        print(jaxhlm.anova(m5, m2))
        """,
    ),
    Step(
        "F tests, marginal means and predictions",
        """
        The next lines of an R analysis: lmerTest's `anova(m)` (F tests of each fixed-effects term,
        type III with Satterthwaite's df; `ddf="kenward-roger"` is there too), `ranova(m)`
        (likelihood-ratio tests of the random terms), emmeans' marginal means and their
        comparison, and predictions with confidence intervals for new students in a new school
        (`re_form="~0"`: the population line, as lme4's `re.form = NA`).
        """,
        """
        import pandas as pd

        m6 = jaxhlm.lmer("mathscore ~ family_inc * factor(urban) + (family_inc | sch_id)", data=dat)
        print(m6.anova())
        print(m6.ranova())
        e = m6.emmeans("urban", at={"family_inc": 8})
        print(e)
        print(e.pairs())
        new = pd.DataFrame({"family_inc": [4, 12], "urban": [0, 1], "sch_id": ["new", "new"]})
        print(m6.predict(new, re_form="~0", interval="confidence"))
        """,
    ),
    Step(
        "Coefficients per school and a t-test of the intercepts",
        """
        `coef` adds each school's conditional modes to the fixed effects (R's `coef(m2)$sch_id`).
        A one-sample t-test of the school intercepts (R's `t.test(coef(m2)$sch_id[, 1])`) treats
        them as 854 observations.
        """,
        """
        from scipy import stats

        cf = m2.coef["sch_id"]
        print(cf.head())
        t = stats.ttest_1samp(cf["(Intercept)"], popmean=0)
        print(f"t = {t.statistic:.1f}, df = {t.df}, p = {t.pvalue:.3g}")
        """,
    ),
    Step(
        "Chi-square test of the random effects",
        """
        Raudenbush and Bryk's test (HLM's chi-square): do the school intercepts (and slopes) vary
        more than sampling error explains? It compares each school's own least-squares estimate
        with the fixed effects, weighted by its sampling variance.
        """,
        """
        print(m1.ranef_chisq())
        print(m2.ranef_chisq())
        """,
    ),
    Step(
        "Plots",
        """
        One line per school (thin) and the average line (thick), for the random intercept,
        random slope and fixed-intercept models; then residuals against fitted values, a normal
        Q-Q plot, and the schools' intercepts with 95% intervals from their conditional variances.
        Every plot function returns its matplotlib `Axes` (`pip install "jaxhlm[plot]"`).
        """,
        """
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), sharey=True, layout="constrained")
        for ax, m in zip(axes, [m1, m2, m5]):
            jaxhlm.plotting.group_lines(m, "family_inc", ax=ax)
        fig.savefig("nels_lines.png", dpi=80)

        fig, axes = plt.subplots(1, 3, figsize=(15, 4.5), layout="constrained")
        jaxhlm.plotting.resid_fitted(m2, ax=axes[0])
        jaxhlm.plotting.qq(m2, ax=axes[1])
        jaxhlm.plotting.caterpillar(m2, ax=axes[2])
        fig.savefig("nels_diagnostics.png", dpi=80)
        """,
        images=("nels_lines.png", "nels_diagnostics.png"),
        show_output=False,
    ),
)
STEPS = tuple(dataclasses.replace(s, text=_text(s.text), code=_code(s.code)) for s in STEPS)


def _have_matplotlib() -> bool:
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")  # files only, never a window
    return True


@dataclasses.dataclass
class StepResult:
    """What running a :class:`Step` gave.

    Fields
    ------
    step : Step
    output : str
        Everything the code printed, then its warnings as ``warning: ...`` lines.
    ran : bool
        False for a plot step skipped because plots are off or matplotlib is missing.
    error : str or None
        The traceback (of the step's own code) if it raised.
    """

    step: Step
    output: str = ""
    ran: bool = True
    error: str | None = None


def _exec_step(step: Step, ns: dict) -> StepResult:
    import pandas as pd

    buf = io.StringIO()
    error = None
    wide = pd.option_context("display.width", 120, "display.max_columns", 20)  # a wide terminal's
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(buf), wide:
        warnings.simplefilter("always")
        try:
            exec(compile(step.code, f"<walk-through: {step.title}>", "exec"), ns)  # noqa: S102
        except Exception as exc:
            tb = traceback.extract_tb(exc.__traceback__)[1:]  # drop this function's frame
            error = "".join(traceback.format_list(tb)) + "".join(traceback.format_exception_only(exc))
    seen = []
    for w in caught:
        msg = f"warning: {w.message}"
        if msg not in seen:
            seen.append(msg)
    out = buf.getvalue() + "".join(m + "\n" for m in seen)
    return StepResult(step, out, True, error)


def run_steps(steps=None, *, outdir: str = ".", plots: bool = True, namespace: dict | None = None):
    """Run the steps in order in one namespace, yielding a :class:`StepResult` for each.

    Stops after the first step that raises.

    Parameters
    ----------
    steps : sequence of Step, optional
        Default :data:`STEPS`.
    outdir : str
        Directory the plot steps run in (their files land there); created if needed.
    plots : bool
        Run the plot steps (needs matplotlib); otherwise they are skipped (``ran`` False).
    namespace : dict, optional
        The namespace the steps run in (default a new one); the caller can read it afterwards.

    Yields
    ------
    StepResult
    """
    ns: dict = {} if namespace is None else namespace
    ns.setdefault("__name__", "__jaxhlm_example__")
    for step in STEPS if steps is None else steps:
        if step.plots and not (plots and _have_matplotlib()):
            yield StepResult(step, ran=False)
            continue
        cwd = os.getcwd()
        try:
            if step.plots:
                os.makedirs(outdir, exist_ok=True)
                os.chdir(outdir)
            res = _exec_step(step, ns)
        finally:
            os.chdir(cwd)
            if step.plots:
                import matplotlib.pyplot as plt

                plt.close("all")
        yield res
        if res.error:
            return


def run(outdir: str = "jaxhlm-example", plots: bool = True, file=None) -> int:
    """Run the walk-through, printing each step's code and then its output (``jaxhlm example``).

    Parameters
    ----------
    outdir : str
        Folder for the plot files.
    plots : bool
        Draw the plots (skipped with a note when matplotlib is not installed).
    file : file-like, optional
        Where to print; default ``sys.stdout``.

    Returns
    -------
    int
        0 when every step ran, 1 when a step raised (its traceback is printed).
    """
    out = file or sys.stdout
    n = len(STEPS)
    for i, res in enumerate(run_steps(outdir=outdir, plots=plots), start=1):
        step = res.step
        rule = f"== {i}/{n}. {step.title} "
        print(rule + "=" * max(3, 78 - len(rule)), file=out)
        print(textwrap.fill(step.text.replace("`", ""), 78), file=out)
        print("", file=out)
        print(textwrap.indent(step.code, "    "), file=out)
        print("", file=out)
        if not res.ran:
            why = "--no-plots" if not plots else 'matplotlib is not installed (pip install "jaxhlm[plot]")'
            print(f"(skipped: {why})\n", file=out)
            continue
        if res.output:
            print(res.output.rstrip("\n") + "\n", file=out)
        if res.error:
            print(f"Step {i} failed:\n{res.error}", file=out)
            return 1
        if step.images:
            print(f"(saved {', '.join(os.path.join(outdir, f) for f in step.images)})\n", file=out)
    return 0


def markdown(image_dir: str = "docs", heading: str = "## Walk-through: students in schools") -> str:
    """The README's walk-through section: prose, code and output of each step (runs them).

    Parameters
    ----------
    image_dir : str
        Folder (relative to the README) where the plot steps write their images.
    heading : str
        The section's heading line.

    Returns
    -------
    str
        Markdown. Plot images are written into ``image_dir``.
    """
    parts = [heading, "", "<!-- generated by `python -m jaxhlm._src.example` from jaxhlm/_src/example.py -->", "", (
        "The classic two-level analysis of students in schools, in Python. The same steps run "
        "with `jaxhlm example`, which prints each step's code and output."
    ), ""]
    for i, res in enumerate(run_steps(outdir=image_dir, plots=True), start=1):
        step, text = res.step, res.output
        if res.error:
            raise RuntimeError(f"walk-through step {i} ({step.title}) failed:\n{res.error}")
        parts += [f"### {i}. {step.title}", "", step.text, "", "```python", step.code, "```", ""]
        if step.show_output and text:
            parts += ["```text", text.rstrip("\n"), "```", ""]
        for img in step.images:
            parts += [f"![{img}]({image_dir}/{img})", ""]
    return "\n".join(parts).rstrip("\n") + "\n"


def update_readme(path: str = "README.md", image_dir: str = "docs") -> None:
    """Rewrite the walk-through section of the README in place (run from the repository root).

    Replaces the lines from the ``## Walk-through`` heading up to the next ``## `` heading with
    :func:`markdown`, and writes the plot images into ``image_dir``.
    """
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    start = text.index("## Walk-through")
    nxt = text.find("\n## ", start + 1)
    end = len(text) if nxt < 0 else nxt + 1
    new = text[:start] + markdown(image_dir) + ("\n" if nxt >= 0 else "") + text[end:]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(new)


if __name__ == "__main__":  # pragma: no cover
    import argparse

    ap = argparse.ArgumentParser(description="Regenerate the README's walk-through section and its images.")
    ap.add_argument("--readme", default="README.md", help="README to update (default: %(default)s)")
    ap.add_argument("--images", default="docs", help="image folder, relative to the README (default: %(default)s)")
    args = ap.parse_args()
    update_readme(args.readme, args.images)
