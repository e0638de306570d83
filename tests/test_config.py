"""jaxhlm's configuration: float64 (the only global JAX setting it changes), its own compile
options per program, its own cache that your JAX code does not share, scipy imported on use."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxhlm
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
    """import jaxhlm, a fit, its summary, anova and Wald intervals (p-values and quantiles from
    scipy.special, jaxhlm._src.base.dist) leave scipy.stats (0.6-1.5 s to import) alone; the
    lazy proxy loads it on first use."""
    code = (
        "import sys, os, pandas as pd, jaxhlm;"
        "assert 'scipy.stats' not in sys.modules, 'import';"
        "d = pd.read_csv(os.path.join(sys.argv[1], 'sleepstudy.csv'));"
        "m = jaxhlm.lmer('Reaction ~ Days + (Days | Subject)', d);"
        "assert 'scipy.stats' not in sys.modules, 'fit';"
        "p = m.coef_table['Pr(>|t|)'];"
        "assert 'scipy.stats' not in sys.modules and (p < 1e-3).all(), 'p-values';"
        "str(m.summary()); m.anova(); m.confint(method='wald');"
        "assert 'scipy.stats' not in sys.modules, 'summary, anova, confint';"
        "from jaxhlm._src.base.lazy import scipy; scipy.stats.norm;"
        "assert 'scipy.stats' in sys.modules; print('ok')"
    )
    import os

    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
    env = dict(os.environ, JAXHLM_NO_CACHE="1")
    out = subprocess.run([sys.executable, "-c", code, data], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "ok", out.stderr[-2000:]


def test_import_loads_jax_and_the_exceptions_only():
    """``import jaxhlm`` imports JAX (for float64) and the exception classes; the fitting code,
    pandas and scipy load at the first use of a public name (PEP 562 ``__getattr__``), which
    ``from jaxhlm import lmer`` and ``from jaxhlm import *`` trigger as usual."""
    code = (
        "import sys, jaxhlm;"
        "assert 'pandas' not in sys.modules and 'scipy' not in sys.modules, sorted(sys.modules);"
        "assert 'jaxhlm._src.facade.entry' not in sys.modules;"
        "import jax; assert jax.config.jax_enable_x64;"
        "assert issubclass(jaxhlm.DataError, ValueError);"
        "from jaxhlm import lmer; assert 'jaxhlm._src.facade.entry' in sys.modules and callable(lmer);"
        "assert set(jaxhlm.__all__) <= set(dir(jaxhlm));"
        "ns = {}; exec('from jaxhlm import *', ns); assert all(n in ns for n in jaxhlm.__all__);"
        "assert jaxhlm.datasets.__name__ == 'jaxhlm.datasets';"
        "print('ok')"
    )
    import os

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, JAXHLM_NO_CACHE="1"))
    assert out.stdout.strip() == "ok", out.stderr[-2000:]
    with pytest.raises(AttributeError, match="no attribute 'lmerr'"):
        jaxhlm.lmerr


def test_lazy_scipy_proxy():
    from jaxhlm._src.base.lazy import scipy

    import scipy.special as special

    assert scipy.special is special
    with pytest.raises(AttributeError):
        scipy.__wrapped__  # dunder lookups are not submodules
    with pytest.raises(ModuleNotFoundError):
        scipy.no_such_submodule


def _python(code, env_extra, *args):
    env = dict(os.environ, **env_extra)
    env.pop("JAXHLM_NO_CACHE", None)
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


SLEEP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "sleepstudy.csv")


def test_import_and_fit_change_no_jax_setting_but_x64(tmp_path):
    """Every value of jax.config (and the environment) is the same before ``import jaxhlm`` and
    after it and a fit, except ``jax_enable_x64``."""
    code = (
        "import json, os, sys, jax; env0 = dict(os.environ); b = dict(jax.config.values)\n"
        "import jaxhlm, pandas as pd; a = dict(jax.config.values)\n"
        "m = jaxhlm.lmer('Reaction ~ Days + (Days | Subject)', pd.read_csv(sys.argv[1])); str(m.summary())\n"
        "c = dict(jax.config.values)\n"
        "diff = lambda x: sorted(k for k in set(b) | set(x) if repr(b.get(k)) != repr(x.get(k)))\n"
        "print(json.dumps({'import': diff(a), 'fit': diff(c), 'env': dict(os.environ) == env0}))"
    )
    out = _python(code, {"JAXHLM_CACHE_DIR": str(tmp_path)}, SLEEP)
    assert out == {"import": ["jax_enable_x64"], "fit": ["jax_enable_x64"], "env": True}


USER_JIT = (
    "import jax, jax.numpy as jnp\n"
    "@jax.jit\n"
    "def my_user_function(x):\n"
    "    return jnp.sin(x) * 3.0 + jnp.cos(x)\n"
    "my_user_function(jnp.arange(5.0)).block_until_ready()\n"
)


def test_users_jit_function_is_not_written_to_jaxhlms_cache(tmp_path):
    code = (
        "import json, sys, pandas as pd, jaxhlm\n" + USER_JIT
        + "m = jaxhlm.lmer('Reaction ~ Days + (Days | Subject)', pd.read_csv(sys.argv[1])); m.coef_table\n"
        "print(json.dumps('ok'))"
    )
    _python(code, {"JAXHLM_CACHE_DIR": str(tmp_path)}, SLEEP)
    files = [os.path.relpath(os.path.join(d, f), tmp_path) for d, _, fs in os.walk(tmp_path) for f in fs]
    assert files, "jaxhlm's own programs are still cached"
    assert all(f.startswith("programs" + os.sep) and f.endswith(".bin") for f in files), files
    for f in files:  # each file names a jaxhlm program in its key
        head = open(tmp_path / f, "rb").read(4096)
        assert b"jaxhlm._src." in head and b"my_user_function" not in head


def test_users_compilation_cache_is_respected(tmp_path):
    """A user's own persistent cache keeps its settings; jaxhlm's programs go to jaxhlm's folder."""
    user, ours = tmp_path / "user_cache", tmp_path / "jaxhlm_cache"
    code = (
        "import json, sys, jax\n"
        "jax.config.update('jax_compilation_cache_dir', sys.argv[2])\n"
        "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)\n"
        "jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)\n"
        "import pandas as pd, jaxhlm\n" + USER_JIT
        + "m = jaxhlm.lmer('Reaction ~ Days + (Days | Subject)', pd.read_csv(sys.argv[1]))\n"
        "print(json.dumps([jax.config.jax_compilation_cache_dir,"
        " jax.config.jax_persistent_cache_min_compile_time_secs, jax.config.jax_enable_x64]))"
    )
    out = _python(code, {"JAXHLM_CACHE_DIR": str(ours)}, SLEEP, str(user))
    assert out == [str(user), 0.0, True]
    assert any("my_user_function" in f for f in os.listdir(user))  # the user's cache works as configured
    assert os.listdir(ours) == ["programs"] and os.listdir(ours / "programs")
