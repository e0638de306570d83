"""Progress bars: one labelled bar per task, open before the first compiled call."""
from __future__ import annotations

import re
import warnings

import pytest

import jaxhlm
from jaxhlm._src.optim import batch
from jaxhlm._src.sim import replicates


@pytest.fixture(scope="module")
def fits():
    d = jaxhlm.datasets.load("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return (jaxhlm.lmer("Reaction ~ Days + (1 | Subject)", d, reml=False),
                jaxhlm.lmer("Reaction ~ Days + (Days | Subject)", d, reml=False))


def bars(err: str) -> list:
    """The (label, total) of every bar in tqdm's captured output."""
    return sorted(set(re.findall(r"(?:^|\r)([^\r\n|]*?):\s+\d+%\|[^\r\n]*?\| *\d+/(\d+)", err)))


def test_bootstrap_bar_is_labelled_and_opened_before_compiling(fits, capsys, monkeypatch):
    seen = []
    run = batch._run_chunk

    def spy(*args, **kwargs):
        seen.append(capsys.readouterr().err)
        return run(*args, **kwargs)

    monkeypatch.setattr(batch, "_run_chunk", spy)
    m0, _ = fits
    m0.bootstrap(nsim=8, seed=1, chunk_size=2, progress=True)
    err = "".join(seen) + capsys.readouterr().err
    assert "bootstrap" in seen[0] and "compiling" in seen[0]  # shown before the first compiled call
    assert bars(err) == [("bootstrap", "8")]


def test_bootstrap_lrt_shows_one_labelled_bar(fits, capsys):
    m0, m1 = fits
    jaxhlm.bootstrap_lrt(m0, m1, nsim=6, seed=2, chunk_size=2, progress=True)
    err = capsys.readouterr().err
    labels = bars(err)
    assert {lab for lab, _ in labels} == {"bootstrap LRT: refit m0", "bootstrap LRT: refit m1"}
    assert {tot for _, tot in labels} == {"12"}  # one bar over both models' refits


def test_power_and_refit_many_labels(fits, capsys):
    m0, _ = fits
    jaxhlm.power(m0, "Days", nsim=4, seed=3, chunk_size=2, progress=True, method="z")
    assert bars(capsys.readouterr().err) == [("power", "4")]
    jaxhlm.power(m0, "Days", nsim=4, seed=3, chunk_size=2, progress="my study")
    assert bars(capsys.readouterr().err) == [("my study", "4")]
    Y = m0.simulate(4, seed=4)
    m0.refit_many(Y, chunk_size=2, progress=True)
    assert bars(capsys.readouterr().err) == [("refit", "4")]


def test_power_curve_one_bar_over_sizes(fits, capsys):
    m0, _ = fits
    jaxhlm.power_curve(m0, "Subject", [10, 14], "Days", nsim=3, seed=5, method="z", progress=True)
    labels = bars(capsys.readouterr().err)
    assert {tot for _, tot in labels} == {"6"}
    assert {lab for lab, _ in labels} >= {"power curve: Subject = 10", "power curve: Subject = 14"}


def test_no_bar_when_off_or_not_interactive(fits, capsys):
    m0, _ = fits
    m0.bootstrap(nsim=4, seed=1, chunk_size=1, progress=False)
    m0.bootstrap(nsim=4, seed=1, chunk_size=1)  # default: output is not a terminal here
    assert capsys.readouterr().err == ""
    assert replicates.progress_bar(None, 10, "x", chunks=100) is None
    assert replicates.progress_bar(False, 10, "x") is None
