#!/usr/bin/env Rscript
## R's update.formula on pairs of formulas, for tests/test_update.py.
## Usage: Rscript tools/reference_update_formula.R  (writes tests/data/inference_extra/update_formula.json)
suppressPackageStartupMessages(library(jsonlite))
pairs <- list(
  c("y ~ a * b + (1 | g)", ". ~ . - a:b + (1 | h)"), c("y ~ a*b", ". ~ . - a"), c("y ~ x", "~ . - 1"),
  c("y ~ x - 1", "~ . + z"), c("y ~ x + (Days|Subject)", "~ . - (Days | Subject)"), c("y ~ a + b", "~ c + ."),
  c("y ~ b:a + a", "~ ."), c("y ~ (a+b+c)^2", "~ ."), c("y ~ a/b", "~."), c("y ~ x", "log(.) ~ ."),
  c("y ~ x + (1|g)", "z ~ ."), c("yield ~ Variety*nitro + (1|Variety:Block) + (1|Block)", "~ . - (1 | Block)"),
  c("y ~ x", "~ . - x"), c("y ~ 0 + x", "~ . + 1"), c("~ 0 + x + z", "~ . - x"),
  c("y ~ a %in% b", "~ ."), c("y ~ x + (x || g)", "~ . - (x||g) + (1|g)"), c("y ~ a*b*c", "~ . - a:b:c"),
  c("y ~ a*b*c", "~ . - a:b"), c("y ~ (a + b)/c", "~ ."), c("y ~ x + I(x^2) + log(z)", "~ . - I(x^2)"),
  c("y ~ x + (1 | g)", "~ . + (1 | h) - x"), c("y ~ a + b + a:b", "~ . - b"), c("y ~ x*f + (x | g)", "~ . - (x | g) + (1 | g)"),
  c("y ~ x", "~ . + x:z + z"), c("y ~ a:b + b", "~ . + a"), c("y ~ x", "w ~ . + q"), c("y ~ 1 + (1 | g)", "~ . + x"),
  c("y ~ -1 + x", "~ ."), c("y ~ a + b", "~ . - 0")
)
out <- lapply(pairs, function(p) list(old = p[1], new = p[2],
  result = paste(deparse(update(as.formula(p[1]), as.formula(p[2])), width.cutoff = 500L), collapse = " ")))
writeLines(toJSON(out, auto_unbox = TRUE, pretty = TRUE), "tests/data/inference_extra/update_formula.json")
