#!/usr/bin/env Rscript
## merTools::predictInterval on sleepstudy, for tests/test_intervals.py (simulation: compare loosely).
## Usage: Rscript tools/reference_predict_interval.R  (writes tests/data/inference_extra/predict_interval_sleepstudy.json)
suppressPackageStartupMessages({library(lme4); library(merTools); library(jsonlite)})
d <- read.csv("tests/data/sleepstudy.csv")
d$Subject <- factor(d$Subject)
m <- lmer(Reaction ~ Days + (Days | Subject), d)
new <- data.frame(Days = c(3, 12, 5, 0, 9), Subject = factor(c("308", "308", "335", "372", "350")))
out <- list(formula = "Reaction ~ Days + (Days | Subject)", newdata = new, n_sims = 40000, level = 0.95,
            versions = list(merTools = as.character(packageVersion("merTools")), lme4 = as.character(packageVersion("lme4"))))
for (resid in c(TRUE, FALSE)) {
  p <- predictInterval(m, newdata = new, level = 0.95, n.sims = 40000, stat = "mean",
                       include.resid.var = resid, seed = 20240611)
  out[[if (resid) "prediction" else "confidence"]] <- list(fit = p$fit, lwr = p$lwr, upr = p$upr)
}
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "tests/data/inference_extra/predict_interval_sleepstudy.json")
