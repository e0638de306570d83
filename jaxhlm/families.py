"""GLM families for :func:`jaxhlm.glmer`, as R's family objects: ``Binomial(link="logit" |
"probit" | "cloglog")`` and ``Poisson(link="log")`` (see :mod:`jaxhlm._src.engine.families`)."""
from ._src.engine.families import Binomial, Family, Poisson, get_family

__all__ = ["Binomial", "Poisson", "Family", "get_family"]
