#!/usr/bin/env Rscript
## R's values of formula expressions (arithmetic, logic with NA, functions, scale(), poly() and
## their use on new data) on small vectors, for jaxhlm's evaluator tests.
## Usage (from the repository root):  Rscript tools/formula_eval_reference.R
## Writes tests/data/rformula/eval.json.
suppressPackageStartupMessages(library(jsonlite))
d <- data.frame(x = c(-2, -0.5, 0, 1, 2.5, NA, 4), z = c(3, 1, NA, 0, 2, 5, -1),
                f = c("b", "a", "c", NA, "a", "b", "c"), w = c(0.5, 1.7, 2, 3.2, 5, 5.5, 7.1),
                stringsAsFactors = FALSE)
new <- data.frame(x = c(1, -3, 10), z = c(0, 2, 1), f = c("a", "c", "b"), w = c(0, 2.5, 9), stringsAsFactors = FALSE)
exprs <- c("x %% 3", "x %/% 3", "x %% -3", "-x %% 3", "x^0.5", "2^x", "x/z", "x > 0 & z > 0", "x > 0 | z > 0",
           "!(x > 0)", "x == z", "ifelse(x > 0, x, -x)", "pmin(x, z)", "pmax(x, 1)", "log(x + 3, base = 2)",
           "exp(x)", "sqrt(abs(x))", "round(x / 3, 2)", "floor(x)", "ceiling(x)", "trunc(x)", "sign(x)",
           "as.integer(x)", "is.na(x)", "f == 'a'", "f %in% c('a', 'c')", "x %in% c(1, 4)", "as.numeric(factor(f))",
           "log1p(abs(x))", "x^2 - 2*x + 1", "-x^2", "(x - 1)^2", "1^z", "z^0", "x %/% 0", "x %% 0", "log(x)",
           "as.numeric(f == 'b') * w", "(x > 0) + (z > 0)")
enc <- function(v) lapply(as.numeric(v), function(a)
  if (is.nan(a)) "NaN" else if (is.na(a)) NA else if (is.infinite(a)) (if (a > 0) "Inf" else "-Inf") else a)
vals <- lapply(exprs, function(e) {
  v <- eval(parse(text = e), d)
  list(expr = e, values = enc(v), logical = is.logical(v))
})
tr <- list(
  list(expr = "scale(x)", fit = scale(d$x), new = NULL),
  list(expr = "scale(x, center = FALSE)", fit = scale(d$x, center = FALSE)),
  list(expr = "scale(x, scale = FALSE)", fit = scale(d$x, scale = FALSE)),
  list(expr = "scale(x, center = 1, scale = 2)", fit = scale(d$x, center = 1, scale = 2)),
  list(expr = "poly(w, 3)", fit = poly(d$w, 3)),
  list(expr = "poly(w, 2, raw = TRUE)", fit = poly(d$w, 2, raw = TRUE))
)
trans <- lapply(tr, function(t) {
  fitv <- t$fit
  newv <- if (startsWith(t$expr, "poly")) predict(fitv, new$w) else
    scale(new$x, center = if (is.null(attr(fitv, "scaled:center"))) FALSE else attr(fitv, "scaled:center"),
          scale = if (is.null(attr(fitv, "scaled:scale"))) FALSE else attr(fitv, "scaled:scale"))
  m <- as.matrix(fitv); nm <- as.matrix(newv)
  list(expr = t$expr, fit = lapply(seq_len(ncol(m)), function(j) I(as.numeric(m[, j]))),
       new = lapply(seq_len(ncol(nm)), function(j) I(as.numeric(nm[, j]))))
})
out <- list(data = d, newdata = new, values = vals, transforms = trans)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, na = "null", null = "null"), "tests/data/rformula/eval.json")
cat("ok\n")
