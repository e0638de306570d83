#!/usr/bin/env Rscript
## R references for jaxhlm's formula syntax layer: deparse() of expressions (model-matrix column
## names), terms() of formulas (term labels, order, intercept, variables, factor codes), contrast
## matrices (contr.treatment / sum / helmert / poly / SAS) and the collation order of text levels.
##
## Usage (from the repository root):  Rscript tools/formula_syntax_reference.R
## Writes tests/data/rformula/syntax.json.

suppressPackageStartupMessages(library(jsonlite))

exprs <- c("I(x^2)", "I(x**2)", "I((x-3)^2)", "I(x*2)", "I(-x)", "exp(x/10)", "log(z,2)", "log(z, base=2)",
           "sqrt(x)", "I(1e3*x)", "I(.5*x)", "I(2.0*x)", "I(x %% 3)", "I(x%/%3)", "I(x %in% c('a','b'))",
           "I(100000*x)", "I(0.0001*x)", "I(123456*x)", "I(0.001*x)", "I(1e-20*x)", "I(2L*x)", "I(1/3*x)",
           "-2^2", "-1:3", "!x==y", "C(f, Treatment('b'))", "np.log(x)", "I(x > 3 & z <= 2)", "`my x`", "`C`",
           "poly(x,2)", "poly(x, 2, raw=TRUE)", "poly(x,degree=3,raw=T)", "scale(x)", "offset(log(n))",
           "I(x^-1)", "I(2^x^2)", "I((x))", "a$b", "I(x|z)", "I(!x)", "ifelse(x>0,1,0)", "factor(x, levels=c(3,1,2))",
           "I(x - -1)", "I(1.5e10*x)", "I(123456789012*x)", "I(0.1+0.2)", "I(3.14159265358979*x)", "log1p(abs(x))",
           "I(x == 'a')", "`a b`:c", "x:`y z`", "I(pi*x)", "I(TRUE)", "I(NA)", "I(Inf*x)", "I(x %o% y)")
dep <- lapply(exprs, function(e) list(text = e, deparse = paste(deparse(parse(text = e, keep.source = FALSE)[[1]]), collapse = " ")))

formulas <- c("y ~ a*b + c*b", "y ~ a:b + c + a", "y ~ b:a + a", "y ~ (a+b+c)^2", "y ~ a/b", "y ~ (a+b)/c",
              "y ~ b %in% a", "y ~ a + b %in% a", "y ~ x:a + a", "y ~ a*b - a", "y ~ (a+b+c)^3 - a:b:c",
              "y ~ a/(b+c)", "y ~ x*z", "y ~ z:x + x", "y ~ (a+b):(c+e)", "y ~ (a+b+c+e)^3", "y ~ (a+b)^3",
              "y ~ x - 0", "y ~ 0 + x + 1", "y ~ x - 1 + 1", "y ~ -1 + x", "y ~ a + b - 1", "y ~ x^2",
              "y ~ (a*b)^2", "y ~ a*b*c - a:b:c", "y ~ a:b:c + a", "y ~ c:b + b:a", "y ~ (a+b) %in% c",
              "y ~ a %in% (b + c)", "y ~ a/b/c", "y ~ (a/b)/c", "y ~ a + (b:c)", "y ~ a + offset(x) + b",
              "y ~ a - a", "y ~ 1", "y ~ 0", "y ~ a:a", "y ~ x:x:a", "y ~ (a+b)*(c+e) - b:e", "y ~ a*b - 1",
              "y ~ log(x)+log( x )", "y ~ I(x^2) + x + I(x^2):a", "y ~ poly(x, 2)*a", "y ~ a + b + a:b:c",
              "y ~ (a + b + c)^2 - a:b", "y ~ 0 + a:b + a", "y ~ a*(b + c) - a:c", "log(y) ~ x + log(y)",
              "y ~ x + y", "y ~ (a + b)/(c + e)", "y ~ x %in% a + a", "y ~ a:(b + c):e",
              "y ~ scale(x) * a + offset(z)", "cbind(s, f) ~ a + x", "y ~ `my x` + `C`:a + `b c`")
tms <- lapply(formulas, function(f) {
  t <- terms(as.formula(f))
  fac <- attr(t, "factors")
  list(formula = f, labels = I(attr(t, "term.labels")), intercept = attr(t, "intercept"),
       variables = I(vapply(as.list(attr(t, "variables"))[-1], function(v) paste(deparse(v), collapse = " "), "")),
       order = I(attr(t, "order")), response = attr(t, "response"),
       offset = if (is.null(attr(t, "offset"))) I(integer(0)) else I(attr(t, "offset")),
       factors = if (length(fac)) lapply(seq_len(ncol(fac)), function(j) I(as.integer(fac[, j]))) else list(),
       factor_rows = if (length(fac)) I(rownames(fac)) else I(character(0)))
})

levs <- list(c("a", "b", "c"), c("lo", "mid", "hi", "top"), c("x1", "x2"), as.character(1:6))
ctr <- lapply(levs, function(l) {
  k <- length(l)
  one <- function(M) list(matrix = lapply(seq_len(nrow(M)), function(i) I(as.numeric(M[i, ]))),
                          colnames = if (is.null(colnames(M))) I(character(0)) else I(colnames(M)))
  list(levels = I(l), treatment = one(contr.treatment(l)), sum = one(contr.sum(l)),
       helmert = one(contr.helmert(l)), poly = one(contr.poly(k)), SAS = one(contr.SAS(l)))
})

words <- c("b", "B", "a", "A", "_x", "1", "Z10", "z2", "a b", "ab", "10", "9", "x.1", "x_1", "X-1", "beta", "Beta",
           "\u00e9t\u00e9", "ete", "S1WantCurse", "S1wantCurse", "a1", "a10", "a2", "", "3+", "0",
           "a-b", "a_b", "a.b", "a,b", "a;b", "a:b", "a!b", "a?b", "a'b", "a(b", "a@b", "a*b", "a/b", "a&b",
           "a#b", "a%b", "a+b", "a<b", "a=b", "a|b", "a~b", "a$b", "A_b", "ab", "Ab", "aB", "\u00c9t\u00e9",
           "etE", "n\u00f1", "nn", "no", "-1", "-2", "+1", "1.5", "1,5", "10a", "1a")
out <- list(versions = list(R = R.version.string, collate = Sys.getlocale("LC_COLLATE")),
            deparse = dep, terms = tms, contrasts = ctr, sort = list(input = I(words), sorted = I(sort(words))))
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", na = "null"), "tests/data/rformula/syntax.json")
cat("ok\n")
