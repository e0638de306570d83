"""jaxhlm's implementation, one subpackage per step of the pipeline, in the order data flow
through them (a module imports only from its own subpackage and those listed before it;
``tests/test_layering.py`` checks this and that there are no import cycles):

base/      errors and warnings, configuration, lazy imports, the cache of compiled programs, BLAS threads
formula/   lme4 formulas in R's spelling: parser, R's terms (``*``, ``/``, ``%in%``, ``^``, ``||``), ``update``
design/    the model frame and matrices: R's functions and contrasts, checks, the fast path, out-of-core sources
stats/     the structure decided once per design (``Layout``, ``Plan``, the theta layout) and the typed
           sufficient statistics (in memory, per response, sharded over devices)
engine/    the blocked Cholesky factorisation of the penalised least squares, one kernel per block type;
           the profiled criterion and its exact derivatives
optim/     the quasi-Newton core, starts, the compiled fit with boundary handling and lme4's convergence
           rule, the batched refits
model/     the fitted state (``FitState``) and lme4's modular steps (``lFormula -> mkLmerDevfun ->
           optimizeLmer -> mkMerMod``, ``refitML``)
infer/     Satterthwaite, Kenward-Roger, contrasts, F tests, anova, emmeans, profiles, condVar, predict, ...
sim/       simulate, batched replicates, bootstrap, power
plots/     matplotlib figures of a fit (public as :mod:`jaxhlm.plotting`)
facade/    ``lmer`` and ``LinearMixedModel`` (the fitted state plus methods delegating to the steps above)
"""
