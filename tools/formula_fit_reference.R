#!/usr/bin/env Rscript
## lme4 fits of R-spelled formulas (I(x^2), I(x^3), (a+b)^2, log(y), poly(x, 2), scale(x),
## contr.sum / contr.helmert, ordered factors, offsets, weights) and their predictions for new data,
## for jaxhlm's end-to-end tests of the formula layer.
##
## Usage (from the repository root):  Rscript tools/formula_fit_reference.R
## Writes tests/data/rformula/fits.json (exact doubles).

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

DATA <- "tests/data/rformula"
read_data <- function(file) {
  for (d in c(DATA, "tests/data", "tests/data/extra")) {
    p <- file.path(d, file)
    if (file.exists(p)) return(read.csv(p, stringsAsFactors = FALSE))
  }
  stop("no data ", file)
}

## newdata: list of columns (NULL = the first rows of the data)
cases <- list(
  list(id = "sleep_powers", data = "sleepstudy.csv", factors = list("Subject"), REML = TRUE,
       formula = "Reaction ~ Days + I(Days^2) + I(Days^3) + (Days | Subject)",
       newdata = list(Days = c(0.5, 4.5, 12, 3), Subject = c("308", "335", "999", "372"))),
  list(id = "sleep_logpoly", data = "sleepstudy.csv", factors = list("Subject"), REML = TRUE,
       formula = "log(Reaction) ~ poly(Days, 2) + (1 | Subject)",
       newdata = list(Days = c(0.5, 4.5, 12, 3), Subject = c("308", "335", "999", "372"))),
  list(id = "sleep_scale_raw", data = "sleepstudy.csv", factors = list("Subject"), REML = FALSE,
       formula = "Reaction ~ scale(Days) + poly(Days, 2, raw = TRUE) + (scale(Days) | Subject)",
       newdata = list(Days = c(0.5, 4.5, 12, 3), Subject = c("308", "335", "999", "372"))),
  list(id = "cake_power", data = "cake.csv", factors = list("recipe", "replicate"), REML = TRUE,
       formula = "angle ~ (recipe + temp)^2 + (1 | recipe:replicate)",
       newdata = list(recipe = c("A", "B", "C", "A"), temp = c(180, 200, 215, 225), replicate = c(1L, 2L, 3L, 20L))),
  list(id = "cake_ordered", data = "cake.csv", factors = list("recipe", "replicate"), ordered = list("temperature"),
       REML = TRUE, formula = "angle ~ recipe + temperature + (1 | recipe:replicate)",
       newdata = list(recipe = c("A", "B", "C"), temperature = c(175, 205, 225), replicate = c(1L, 2L, 3L))),
  list(id = "oats_contrsum", data = "Oats.csv", factors = list("Block", "Variety", "nitro"), REML = TRUE,
       contrasts = list(Variety = "contr.sum", nitro = "contr.sum"),
       formula = "yield ~ Variety * nitro + (1 | Block/Variety)",
       newdata = list(Variety = c("Victory", "Marvellous", "Golden Rain"), nitro = c(0, 0.4, 0.6),
                      Block = c("I", "IV", "VII"))),
  list(id = "oats_helmert_poly", data = "Oats.csv", factors = list(), REML = TRUE,
       contrasts = list(Variety = "contr.helmert"),
       formula = "yield ~ Variety + poly(nitro, 2) + (1 | Block)",
       newdata = list(Variety = c("Victory", "Marvellous", "Golden Rain"), nitro = c(0, 0.3, 0.6),
                      Block = c("I", "IV", "VII"))),
  list(id = "nels_poly_scale", data = "nels_like.csv", factors = list(), REML = FALSE,
       formula = "mathscore ~ poly(ses, 2) + scale(family_inc) + (1 | sch_id)",
       newdata = list(ses = c(-1, 0, 0.5, 2), family_inc = c(3, 10, 25, 8), sch_id = c(7472, 7829, 1, 7930))),
  list(id = "sleep_offset", data = "sleepstudy.csv", factors = list("Subject"), REML = TRUE,
       formula = "Reaction ~ Days + offset(2 * Days) + (1 | Subject)",
       newdata = list(Days = c(0.5, 4.5, 12), Subject = c("308", "335", "999"))),
  list(id = "nels_weights", data = "nels_like_weighted.csv", factors = list("sch_id"), REML = TRUE, weights = "w",
       formula = "mathscore ~ family_inc + ses + (1 | sch_id)",
       newdata = list(family_inc = c(3, 10), ses = c(0, 1), sch_id = c(7472, 1)))
)

nb <- function(x) I(as.numeric(unname(x)))
strs <- function(x) if (length(x) == 0) I(character(0)) else I(unlist(x))
named <- function(x) { l <- as.list(as.numeric(x)); names(l) <- names(x); l }

one <- function(cs) {
  d <- read_data(cs$data)
  for (f in cs$factors) d[[f]] <- factor(d[[f]])
  for (f in cs$ordered) d[[f]] <- factor(d[[f]], ordered = TRUE)
  wts <- if (!is.null(cs$weights)) d[[cs$weights]] else NULL
  m <- lmer(as.formula(cs$formula), data = d, REML = cs$REML, contrasts = cs$contrasts, weights = wts,
            control = lmerControl(optimizer = "bobyqa"))
  nd <- as.data.frame(cs$newdata, stringsAsFactors = FALSE)
  for (f in cs$factors) if (f %in% names(nd)) nd[[f]] <- factor(nd[[f]], levels = union(levels(d[[f]]), unique(nd[[f]])))
  for (f in cs$ordered) if (f %in% names(nd)) nd[[f]] <- factor(nd[[f]], levels = levels(d[[f]]), ordered = TRUE)
  list(id = cs$id, data = cs$data, formula = cs$formula, REML = cs$REML, factors = strs(cs$factors),
       ordered = strs(cs$ordered), contrasts = cs$contrasts, weights = cs$weights,
       objective = if (cs$REML) unname(m@devcomp$cmp["REML"]) else unname(m@devcomp$cmp["dev"]),
       beta = named(fixef(m)), theta = named(getME(m, "theta")), sigma = sigma(m), n = nobs(m),
       fitted_first = nb(head(fitted(m), 20)),
       newdata = cs$newdata,
       predict_NA = nb(predict(m, newdata = nd, re.form = NA)),
       predict_NULL = nb(predict(m, newdata = nd, allow.new.levels = TRUE)))
}

out <- list(versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4"))), cases = list())
for (cs in cases) {
  r <- one(cs)
  out$cases[[length(out$cases) + 1]] <- r
  cat(cs$id, r$objective, "\n")
}
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", na = "null"), file.path(DATA, "fits.json"))
