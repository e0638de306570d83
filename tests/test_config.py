"""jaxhlm's numerical configuration: float64, and its own compile options per program."""
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np

from jaxhlm._src import config


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
