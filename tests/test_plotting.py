"""Plots: each renders to a non-blank PNG (Agg), draws the numbers of the fit, has neutral labels."""
import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from scipy import stats  # noqa: E402

import jaxhlm  # noqa: E402
from jaxhlm import plotting  # noqa: E402


@pytest.fixture(scope="module")
def sleep():
    return jaxhlm.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def fits(sleep):
    return {
        "ri": jaxhlm.lmer("Reaction ~ Days + (1 | Subject)", sleep),
        "rs": jaxhlm.lmer("Reaction ~ Days + (Days | Subject)", sleep),
        "fi": jaxhlm.lmer("Reaction ~ Days + (0 + Days | Subject)", sleep),
    }


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def png_stats(ax):
    """Number of distinct colours and share of non-white pixels of the rendered figure."""
    buf = io.BytesIO()
    ax.figure.savefig(buf, format="png", dpi=72)
    buf.seek(0)
    img = mpimg.imread(buf, format="png")[..., :3]
    colours = np.unique((img * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    ink = np.mean(np.any(img < 0.95, axis=-1))
    return len(colours), ink


def assert_nontrivial(ax):
    n_colours, ink = png_stats(ax)
    assert n_colours > 50, n_colours
    assert 0.02 < ink < 0.9, ink


def segments(ax):
    (lc,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    return lc.get_segments()


def test_resid_fitted(fits):
    fit = fits["rs"]
    ax = plotting.resid_fitted(fit)
    assert isinstance(ax, matplotlib.axes.Axes)
    xy = ax.collections[0].get_offsets()
    np.testing.assert_allclose(xy[:, 0], fit.fitted.to_numpy())
    np.testing.assert_allclose(xy[:, 1], fit.resid.to_numpy())
    np.testing.assert_allclose(xy[:, 0] + xy[:, 1], fit.y.to_numpy())
    assert_nontrivial(ax)


def test_qq_residuals_and_ranef(fits):
    fit = fits["rs"]
    ax = plotting.qq(fit)
    xy = ax.collections[0].get_offsets()
    n = fit.nobs
    np.testing.assert_allclose(xy[:, 1], np.sort(fit.resid.to_numpy() / fit.sigma))
    np.testing.assert_allclose(xy[:, 0], stats.norm.ppf((np.arange(1, n + 1) - 0.5) / n))
    assert_nontrivial(ax)
    ax2 = fit.plot("qq", group="Subject", term="Days")
    np.testing.assert_allclose(ax2.collections[0].get_offsets()[:, 1], np.sort(fit.ranef["Subject"]["Days"]))


@pytest.mark.parametrize("kind", ["ri", "rs", "fi"])
def test_group_lines(fits, kind):
    fit = fits[kind]
    ax = plotting.group_lines(fit, "Days")
    segs = segments(ax)
    coef = fit.coef["Subject"]
    assert len(segs) == len(coef) == 18
    x0, x1 = segs[0][:, 0]
    assert (x0, x1) == (0.0, 9.0)
    np.testing.assert_allclose([s[0, 1] for s in segs], coef["(Intercept)"] + coef["Days"] * x0)
    np.testing.assert_allclose([s[1, 1] for s in segs], coef["(Intercept)"] + coef["Days"] * x1)
    slopes = np.array([(s[1, 1] - s[0, 1]) / (x1 - x0) for s in segs])
    ints = np.array([s[0, 1] for s in segs])
    if kind == "ri":
        np.testing.assert_allclose(slopes, fit.fixef["Days"])  # parallel lines
    if kind == "fi":
        np.testing.assert_allclose(ints, fit.fixef["(Intercept)"])  # common intercept
    if kind == "rs":
        assert np.ptp(slopes) > 1 and np.ptp(ints) > 1
    (avg,) = ax.get_lines()
    np.testing.assert_allclose(avg.get_ydata(), fit.fixef["(Intercept)"] + fit.fixef["Days"] * np.array([x0, x1]))
    assert avg.get_linewidth() > 2 * segs_linewidth(ax)
    assert_nontrivial(ax)


def segs_linewidth(ax):
    (lc,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    return float(np.max(lc.get_linewidths()))


def test_group_lines_hold_level2_predictor_at_group_value(sleep):
    df = sleep.copy()
    codes = df["Subject"].cat.codes.to_numpy()
    df["w"] = (codes % 3).astype(float)  # a subject-level predictor
    fit = jaxhlm.lmer("Reaction ~ Days + w + (1 | Subject)", df)
    ax = plotting.group_lines(fit, "Days", points=True)
    segs = segments(ax)
    coef = fit.coef["Subject"]
    w = np.arange(18) % 3
    np.testing.assert_allclose([s[0, 1] for s in segs], coef["(Intercept)"] + coef["w"] * w)
    (avg,) = ax.get_lines()
    assert avg.get_ydata()[0] == pytest.approx(fit.fixef["(Intercept)"] + fit.fixef["w"] * df["w"].mean())
    ax = plotting.group_lines(fit, "Days", at={"w": 2.0})
    np.testing.assert_allclose([s[0, 1] for s in segments(ax)], coef["(Intercept)"] + coef["w"] * 2.0)
    with pytest.raises(jaxhlm.ColumnNotFoundError, match="Dayz"):
        plotting.group_lines(fit, "Dayz")
    with pytest.raises(jaxhlm.ColumnNotFoundError, match="Subj"):
        plotting.group_lines(fit, "Days", group="Subj")


def test_group_lines_rejects_interaction_with_x(sleep):
    df = sleep.assign(w=np.tile([0.0, 1.0], 90))
    fit = jaxhlm.lmer("Reaction ~ Days * w + (1 | Subject)", df)
    with pytest.raises(jaxhlm.ArgumentError, match="interaction"):
        plotting.group_lines(fit, "Days")


def test_caterpillar_without_condvar_draws_points(fits, monkeypatch):
    fit = fits["rs"]

    def unavailable(self):
        raise NotImplementedError("not yet")

    monkeypatch.setattr(jaxhlm.LinearMixedModel, "ranef_condsd", property(unavailable))
    ax = plotting.caterpillar(fit, term="Days")
    b = fit.ranef["Subject"]["Days"].to_numpy()
    pts = ax.collections[-1].get_offsets()
    np.testing.assert_allclose(pts[:, 0], np.sort(b))
    assert [t.get_text() for t in ax.get_yticklabels()] == [str(v) for v in fit.ranef["Subject"].index[np.argsort(b)]]
    assert not [c for c in ax.collections if isinstance(c, LineCollection)]
    assert "unavailable" in ax.get_xlabel()
    assert_nontrivial(ax)


def test_caterpillar_intervals_from_condsd(fits, monkeypatch):
    fit = fits["ri"]
    # random intercept: Var(b_j | y) = (1/tau^2 + n_j/sigma^2)^-1 at the estimates
    tau2 = fit.varcorr["vcov"].iloc[0]
    n_j = np.bincount(fit.design.factors[0].codes)
    sd = np.sqrt(1.0 / (1.0 / tau2 + n_j / fit.sigma**2))
    fake = {"Subject": pd.DataFrame({"(Intercept)": sd}, index=fit.ranef["Subject"].index)}
    monkeypatch.setattr(jaxhlm.LinearMixedModel, "ranef_condsd", property(lambda self: fake))
    ax = fit.plot("caterpillar", level=0.9)
    b = fit.ranef["Subject"]["(Intercept)"].to_numpy()
    o = np.argsort(b)
    segs = segments(ax)
    z = stats.norm.ppf(0.95)
    np.testing.assert_allclose([s[0, 0] for s in segs], (b - z * sd)[o])
    np.testing.assert_allclose([s[1, 0] for s in segs], (b + z * sd)[o])
    assert "90% interval" in ax.get_xlabel()
    assert_nontrivial(ax)


def test_caterpillar_many_levels_and_given_axes(fits):
    fit = fits["ri"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 5))
    ax = plotting.caterpillar(fit, ax=axes[0], max_labels=10)
    assert ax is axes[0]
    assert len(ax.get_yticks()) == 0
    assert len(ax.collections[-1].get_offsets()) == 18
    ax2 = plotting.group_lines(fit, "Days", ax=axes[1])
    assert ax2 is axes[1]
    assert_nontrivial(ax)


def test_plot_dispatch_errors(fits):
    with pytest.raises(jaxhlm.ArgumentError, match="unknown plot kind"):
        fits["rs"].plot("scatter")
    with pytest.raises(jaxhlm.ArgumentError, match="x="):
        fits["rs"].plot("lines")
    with pytest.raises(jaxhlm.ArgumentError, match="x="):
        fits["rs"].plot("panels")
    with pytest.raises(jaxhlm.ArgumentError, match="level"):
        plotting.caterpillar(fits["rs"], level=95)
    with pytest.raises(jaxhlm.ColumnNotFoundError, match="Day"):
        plotting.qq(fits["rs"], group="Subject", term="Day")


def titles(obj):
    fig = obj if isinstance(obj, matplotlib.figure.Figure) else obj.figure
    out = [a.get_title() for a in fig.axes] + [a.get_xlabel() for a in fig.axes] + [a.get_ylabel() for a in fig.axes]
    if fig._suptitle is not None:
        out.append(fig._suptitle.get_text())
    return out


@pytest.mark.parametrize("make", [
    lambda f: plotting.resid_fitted(f), lambda f: plotting.scale_location(f), lambda f: plotting.qq(f),
    lambda f: plotting.caterpillar(f), lambda f: plotting.caterpillar_panels(f),
    lambda f: plotting.group_lines(f, "Days"), lambda f: plotting.group_panels(f, "Days"),
])
def test_neutral_titles_and_label_options(fits, make):
    fit = fits["rs"]
    obj = make(fit)
    for t in titles(obj):
        assert "~" not in t and fit.formula not in t and "thick" not in t.lower()


def test_labels_can_be_replaced(fits):
    ax = plotting.resid_fitted(fits["rs"], title="", xlabel="Predicted reaction time (ms)", ylabel="Residual (ms)")
    assert ax.get_title() == "" and ax.get_xlabel() == "Predicted reaction time (ms)"
    assert ax.get_ylabel() == "Residual (ms)"
    ax = plotting.group_lines(fits["rs"], "Days", title="Figure 2", ylabel="RT", legend=False)
    assert ax.get_title() == "Figure 2" and ax.get_ylabel() == "RT" and ax.get_legend() is None
    fig = plotting.group_panels(fits["rs"], "Days", xlabel="Days of deprivation", title="Per subject")
    assert fig._supxlabel.get_text() == "Days of deprivation" and fig._suptitle.get_text() == "Per subject"


def test_resid_fitted_smooth_is_an_option_with_a_legend(fits):
    fit = fits["rs"]
    ax = plotting.resid_fitted(fit)
    assert ax.get_lines() == [] or all("binned" not in ln.get_label() for ln in ax.get_lines())
    assert ax.get_legend() is None
    ax = plotting.resid_fitted(fit, smooth=True, nbins=6)
    (curve,) = [ln for ln in ax.get_lines() if "binned" in ln.get_label()]
    assert "6 quantile bins" in curve.get_label()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [curve.get_label()]
    # the curve is the mean residual per sextile of the fitted values
    f, r = fit.fitted.to_numpy(), fit.resid.to_numpy()
    edges = np.quantile(f, np.linspace(0, 1, 7))
    k = np.clip(np.searchsorted(edges, f, side="right") - 1, 0, 5)
    np.testing.assert_allclose(curve.get_ydata(), [r[k == i].mean() for i in range(6)])
    assert_nontrivial(ax)


def test_scale_location(fits):
    fit = fits["rs"]
    ax = plotting.scale_location(fit)
    xy = ax.collections[0].get_offsets()
    np.testing.assert_allclose(xy[:, 0], fit.fitted.to_numpy())
    np.testing.assert_allclose(xy[:, 1], np.sqrt(np.abs(fit.resid.to_numpy() / fit.sigma)))
    ref = [ln for ln in ax.get_lines() if ln.get_label() == "expected under normality"]
    z = stats.norm.rvs(size=400000, random_state=1)
    assert ref[0].get_ydata()[0] == pytest.approx(np.mean(np.sqrt(np.abs(z))), abs=2e-3)
    assert_nontrivial(ax)


def test_caterpillar_panels_all_terms_side_by_side(fits):
    fit = fits["rs"]
    fig = plotting.caterpillar_panels(fit)
    assert isinstance(fig, matplotlib.figure.Figure)
    axs = fig.axes
    re = fit.ranef["Subject"]
    assert [a.get_title() for a in axs] == [f"{t} | Subject" for t in re.columns]
    order = np.argsort(re["(Intercept)"].to_numpy(), kind="stable")  # both panels: sorted by the first term
    for a, t in zip(axs, re.columns):
        np.testing.assert_allclose(a.collections[-1].get_offsets()[:, 0], re[t].to_numpy()[order])
        lo = [s[0, 0] for s in segments(a)]
        sd = fit.ranef_condsd["Subject"][t].to_numpy()[order]
        np.testing.assert_allclose(lo, re[t].to_numpy()[order] - stats.norm.ppf(0.975) * sd)
    assert [t.get_text() for t in axs[0].get_yticklabels()] == [str(v) for v in re.index[order]]
    assert all(t.get_text() == "" for t in axs[1].get_yticklabels())
    fig2 = plotting.caterpillar_panels(fit, sort_by="Days")
    o2 = np.argsort(re["Days"].to_numpy(), kind="stable")
    np.testing.assert_allclose(fig2.axes[0].collections[-1].get_offsets()[:, 0], re["(Intercept)"].to_numpy()[o2])
    assert_nontrivial(fig.axes[0])


def test_caterpillar_panels_several_factors():
    d = jaxhlm.datasets.load("Penicillin")
    fit = jaxhlm.lmer("diameter ~ 1 + (1 | plate) + (1 | sample)", d)
    fig = fit.plot("ranef")
    assert [a.get_title() for a in fig.axes] == ["(Intercept) | plate", "(Intercept) | sample"]
    assert len(fig.axes[0].collections[-1].get_offsets()) == 24 and len(fig.axes[1].collections[-1].get_offsets()) == 6
    with pytest.raises(jaxhlm.ColumnNotFoundError, match="Days"):
        plotting.caterpillar_panels(fit, sort_by="Days")


def test_group_panels_data_and_fitted_lines(fits):
    fit = fits["rs"]
    fig = plotting.group_panels(fit, "Days")
    axs = fig.axes
    fac = fit.design.factors[0]
    assert len(axs) == 18 and [a.get_title() for a in axs] == [str(v) for v in fac.levels]
    coef = fit.coef["Subject"]
    y, days = fit.y.to_numpy(), fit.design.X[:, 1]
    for j, a in enumerate(axs):
        rows = fac.codes == j
        np.testing.assert_allclose(a.collections[0].get_offsets(), np.column_stack([days[rows], y[rows]]))
        line, avg = a.get_lines()
        np.testing.assert_allclose(line.get_ydata(), coef["(Intercept)"].iloc[j] + coef["Days"].iloc[j] * np.array([0, 9]))
        np.testing.assert_allclose(avg.get_ydata(), fit.fixef["(Intercept)"] + fit.fixef["Days"] * np.array([0, 9]))
    assert axs[0].get_shared_y_axes().joined(axs[0], axs[-1])
    assert_nontrivial(axs[0])


def test_group_panels_many_levels_picks_a_spread(nels):
    fit = jaxhlm.lmer("mathscore ~ family_inc + (family_inc | sch_id)", nels)
    fig = plotting.group_panels(fit, "family_inc", max_panels=12)
    assert len(fig.axes) == 12
    assert "12 of 854 levels" in fig._suptitle.get_text()
    b = fit.ranef["sch_id"]["(Intercept)"]
    shown = [a.get_title() for a in fig.axes]
    assert str(b.idxmin()) in shown and str(b.idxmax()) in shown  # spans the range
    fig = plotting.group_panels(fit, "family_inc", levels=list(b.index[:3]), ncols=3, average=False)
    assert [a.get_title() for a in fig.axes] == [str(v) for v in b.index[:3]]
    assert all(len(a.get_lines()) == 1 for a in fig.axes)
    with pytest.raises(jaxhlm.ColumnNotFoundError):
        plotting.group_panels(fit, "family_inc", levels=["no such school"])


def test_every_plot_renders_to_png(fits, tmp_path):
    fit = fits["rs"]
    objs = [plotting.resid_fitted(fit, smooth=True), plotting.scale_location(fit), plotting.qq(fit),
            plotting.caterpillar(fit), plotting.caterpillar_panels(fit), plotting.group_lines(fit, "Days"),
            plotting.group_panels(fit, "Days")]
    for k, obj in enumerate(objs):
        fig = obj if isinstance(obj, matplotlib.figure.Figure) else obj.figure
        path = tmp_path / f"p{k}.png"
        fig.savefig(path, dpi=80)
        img = mpimg.imread(path)[..., :3]
        assert img.shape[0] > 100 and np.mean(np.any(img < 0.95, axis=-1)) > 0.02
