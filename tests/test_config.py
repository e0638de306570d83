"""jaxhlm's configuration: float64, its own compile options per program, scipy imported on use."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxhlm._src.base import config as config


def test_float64_on_import():
    assert jax.config.jax_enable_x64
    assert jnp.asarray(1.0).dtype == jnp.float64


def test_compiler_options_per_backend():
    assert config.compiler_options("cpu") == {"xla_cpu_use_fusion_emitters": False}
    assert config.compiler_options("gpu") is None
    # a copy: callers cannot change jaxhlm's settings by accident
    config.compiler_options("cpu")["xla_cpu_use_fusion_emitters"] = True
    assert config.compiler_options("cpu") == {"xla_cpu_use_fusion_emitters": False}


def test_jit_wrapper_direct_and_decorator():
    def f(x, k):
        return jnp.sum(x**k)

    g = config.jit(f, static_argnames=("k",))

    @config.jit(static_argnames=("k",))
    def h(x, k):
        return jnp.sum(x**k)

    x = jnp.arange(4.0)
    assert float(g(x, k=2)) == float(h(x, k=2)) == 14.0
    assert h.__name__ == "h"
    # one jax.jit object per backend, built with that backend's options
    j = g.jitted()
    assert j is g.jitted(jax.default_backend())
    low = g.lower(x, k=3)
    np.testing.assert_allclose(low.compile()(x), 36.0)


def test_user_jax_state_untouched_except_x64():
    # importing jaxhlm leaves XLA_FLAGS and other JAX flags of a fresh process alone
    code = (
        "import os, jax; before = jax.config.jax_default_matmul_precision;"
        "import jaxhlm; assert 'XLA_FLAGS' not in os.environ or os.environ['XLA_FLAGS'] == '';"
        "assert jax.config.jax_default_matmul_precision == before; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": "", "XLA_FLAGS": "", "JAXHLM_NO_CACHE": "1"})
    assert out.stdout.strip() == "ok", out.stderr


def test_scipy_stats_is_imported_on_first_use():
    """import jaxhlm and a fit leave scipy.stats (0.6 s to import) alone; p-values load it."""
    code = (
        "import sys, os, pandas as pd, jaxhlm;"
        "assert 'scipy.stats' not in sys.modules, 'import';"
        "d = pd.read_csv(os.path.join(sys.argv[1], 'sleepstudy.csv'));"
        "m = jaxhlm.lmer('Reaction ~ Days + (Days | Subject)', d);"
        "assert 'scipy.stats' not in sys.modules, 'fit';"
        "p = m.coef_table['Pr(>|t|)'];"
        "assert 'scipy.stats' in sys.modules and (p < 1e-3).all(); print('ok')"
    )
    import os

    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
    env = dict(os.environ, JAXHLM_NO_CACHE="1")
    out = subprocess.run([sys.executable, "-c", code, data], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_lazy_scipy_proxy():
    from jaxhlm._src.base.lazy import scipy

    import scipy.special as special

    assert scipy.special is special
    with pytest.raises(AttributeError):
        scipy.__wrapped__  # dunder lookups are not submodules
    with pytest.raises(ModuleNotFoundError):
        scipy.no_such_submodule
