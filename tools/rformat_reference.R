# R's formatting of numbers, p-values, abbreviations, formulas and wrapped text, for
# tests/test_rprint.py (jaxhlm/_src/infer/rprint.py re-implements them).
# Run: Rscript tools/rformat_reference.R  (writes tests/data/rformat_reference.json)
library(jsonlite)
set.seed(20261201)
num_cases <- list(
  list(c(565.48, 32.68, 654.95), 4), list(c(23.780, 5.717, 25.592), 4),
  list(c(0.1056548, 0.2714832, 1.386614), 4), list(c(0.3250459, 0.5210405, 1.1775456), 4),
  list(c(40.55532, 1.08727, 0.36597, 0.03607, 633.95007, 663.54451), 4),
  list(c(40.66, 1.077, 0.3187, 0.03531, 8140.123, 4752.456), 4),
  list(c(40.84839, 1.08409, -0.87368, 0.35816, 0.03437, 0.30888, 4249.70386, 7119.64245, 824.00074), 4),
  list(c(1527.5, 17.7, 6.0), 4), list(c(0.1236, 0.04), 3), list(c(1e-5, 3e-5), 3),
  list(c(123456789, 0.1), 4), list(99999.5, 4), list(c(9.9996, 1.5), 4), list(1e5, 7),
  list(123456.7, 7), list(c(-3.894, -0.6579, -0.0003, 0.6653, 4.0119), 4),
  list(c(0, 1, -1), 4), list(c(1e-20, 1), 4), list(c(1e200, 1), 4), list(c(-0.000123, 1e4), 3),
  list(c(0.5, 0.25, 0.125), 2), list(c(2.5, 3.5), 1), list(1743.628, 7), list(13329, 7),
  list(c(-0.923, 1, 0.0004), 7, 3)
)
for (k in 1:40) {
  n <- sample(1:6, 1)
  x <- signif(rnorm(n) * 10^sample(-6:7, n, replace = TRUE), sample(1:8, 1))
  num_cases[[length(num_cases) + 1]] <- list(x, sample(2:7, 1))
}
format_out <- lapply(num_cases, function(cs) {
  nsmall <- if (length(cs) > 2) cs[[3]] else 0L
  list(x = cs[[1]], digits = cs[[2]], nsmall = nsmall,
       out = format(cs[[1]], digits = cs[[2]], nsmall = nsmall))
})
pv_cases <- list(c(1.65e-06, 2e-20), c(0.1236, 1e-30), c(3e-5, 0.5), c(1e-30, 1e-40), c(0.00479, 1e-20, 1e-17),
                 c(0.687, 0.662, 0.816, 1.34e-07, 0.786, 0.958), c(0.43403, 0.00834, 2.81e-08, 0.00041),
                 c(6.23e-09), c(0.0103, 2.65e-10), c(0.05, 0.0001, 0.00012), c(0.99999, 0.2))
pval_out <- lapply(pv_cases, function(p) list(p = p, out = format.pval(p, digits = 3, eps = .Machine$double.eps)))
names_cases <- list(
  list(c("(Intercept)", "family_inc", "urban"), 6), list(c("(Intercept)", "family_inc", "urban"), 11),
  list(c("recipeB:temp", "recipeC:temp", "temp", "recipeB", "(Intercept)"), 6),
  list(c("recipeB:temp", "recipeC:temp"), 11), list(c("family_inc:urban"), 11), list(c("family_inc:urban"), 6),
  list(c("Days", "Days2", "(Intercept)"), 6), list(c("service", "x", "cond"), 6),
  list(c("temperature185", "temperature195", "recipeB:temperature185", "recipeC:temperature185"), 6),
  list(c("log(x + 1)", "I(x^2)", "poly(x, 2)1", "poly(x, 2)2"), 6),
  list(c("ABCDEFGH", "abcdefgh", "Ab Cd Ef", "x_y_z_w"), 4)
)
abbrev_out <- lapply(names_cases, function(cs) list(names = cs[[1]], minlength = cs[[2]],
                                                   out = unname(abbreviate(cs[[1]], minlength = cs[[2]]))))
formulas <- c("y~x*z+(1|g)", "y ~ log(x+1) + I(x^2) + (0+x||g)", "y ~ a:b + x - 1 + (1|a/b)",
              "y~poly(x,2)+x%in%g", "y ~ -1 + x + offset(w)", "y ~ x + (1|g:h) + (x-1|g)",
              "mathscore ~ 1 + family_inc + (family_inc | sch_id)", "y ~ x + ( 1 + x | g )",
              "y ~ x^2 + (x|g) + (1|h)", "y ~ f*x + (1|g/h/k)")
deparse_out <- lapply(formulas, function(f) list(formula = f, out = deparse(as.formula(f))))
texts <- list(
  list("Linear mixed model fit by maximum likelihood . t-tests use Satterthwaite's method", 78, 2),
  list("Linear mixed model fit by REML. t-tests use Satterthwaite's method", 78, 2),
  list("Linear mixed model fit by maximum likelihood. t-tests use Kenward-Roger's method", 78, 2),
  list("a bb ccc dddd eeeee ffffff ggggggg hhhhhhhh iiiiiiiii jjjjjjjjjj", 20, 0)
)
wrap_out <- lapply(texts, function(t) list(text = t[[1]], width = t[[2]], exdent = t[[3]],
                                          out = strwrap(t[[1]], width = t[[2]], exdent = t[[3]])))
zap_cases <- list(c(-2.079228, -0.671401, 0.062917, 0.583771, 2.979591), c(-3.89396, -0.657871, -0.000338, 0.66531, 4.01188),
                  c(1e-9, 1, 12.5), c(-0.5, 1234.5678, 0.00071), c(0.000123, 0.000456))
zap_out <- lapply(zap_cases, function(x) list(x = x, digits = 5L, out = zapsmall(x, 5L)))
out <- list(R = R.version.string, zapsmall = zap_out, format = format_out, format_pval = pval_out, abbreviate = abbrev_out,
            deparse = deparse_out, strwrap = wrap_out)
writeLines(toJSON(out, digits = NA, auto_unbox = FALSE), "tests/data/rformat_reference.json")
