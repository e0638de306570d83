#!/usr/bin/env Rscript
## R references for jaxhlm's formula and design layer (lme4 1.1-31's lFormula / glFormula and
## R's model.matrix): column names and values of the fixed-effects matrix, random-term model
## matrices, rows used, response, offset and weights, for formulas that exercise R's formula
## semantics (I() arithmetic, ^ / %in% expansion, term order, contrasts, poly, scale, offset).
##
## Usage (from the repository root):  Rscript tools/formula_reference.R
## Writes tests/data/rformula/model_matrices.json.  Data: tests/data/rformula/*.csv (copies of
## /work/shared/data files) and tests/data/*.csv.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

DATA <- "tests/data/rformula"
OUT <- file.path(DATA, "model_matrices.json")

read_data <- function(file) {
  p <- file.path(DATA, file)
  if (!file.exists(p)) p <- file.path("tests/data", file)
  if (!file.exists(p)) p <- file.path("tests/data/extra", file)
  read.csv(p, stringsAsFactors = FALSE)
}

## sleepstudy with a missing response in some rows (predictors complete), a factor with missing
## values and a logical column: R evaluates poly() / scale() on every row, then drops rows
if (!file.exists(file.path(DATA, "sleep_yna.csv"))) {
  s <- read.csv("tests/data/sleepstudy.csv")
  s$Reaction[c(5, 17, 40, 41, 99, 150)] <- NA
  s$grp <- c("b", "a", "c")[(s$Subject %% 3) + 1]
  s$grp[c(7, 60)] <- NA
  s$lg <- s$Days > 4
  write.csv(s, file.path(DATA, "sleep_yna.csv"), row.names = FALSE)
}

cases <- list(
  list(id = "sleep_powers", data = "sleepstudy.csv", factors = list("Subject"),
       formula = "Reaction ~ Days + I(Days^2) + I(Days^3) + (Days | Subject)"),
  list(id = "sleep_poly", data = "sleepstudy.csv", factors = list("Subject"),
       formula = "log(Reaction) ~ poly(Days, 2) + (1 | Subject)"),
  list(id = "sleep_poly_raw", data = "sleepstudy.csv", factors = list("Subject"),
       formula = "Reaction ~ poly(Days, 3, raw = TRUE) + (poly(Days, 2) | Subject)"),
  list(id = "sleep_transforms", data = "sleepstudy.csv", factors = list("Subject"),
       formula = "Reaction ~ I((Days - 3)^2) + sqrt(Days) + exp(Days/10) + scale(Days) + I(Days %% 3) + I(Days %/% 4) + (1 | Subject)"),
  list(id = "sleep_offset", data = "sleepstudy.csv", factors = list("Subject"),
       formula = "Reaction ~ Days + offset(Days * 2) + offset(log(Days + 1)) + (1 | Subject)"),
  list(id = "sleepna_poly_scale", data = "sleep_na.csv", factors = list("Subject"),
       formula = "Reaction ~ poly(Subject, 2) + scale(Reaction > 250) + (1 | Subject)", skip = TRUE),
  list(id = "sleepna_scale", data = "sleep_na.csv", factors = list(),
       formula = "Reaction ~ scale(Days) + I(Days^2) + (1 | Subject)"),
  list(id = "oats_contrsum", data = "Oats.csv", factors = list("Block", "Variety", "nitro"),
       contrasts = list(Variety = "contr.sum", nitro = "contr.sum"),
       formula = "yield ~ Variety * nitro + (1 | Block/Variety)"),
  list(id = "oats_numeric_inter", data = "Oats.csv", factors = list(),
       formula = "yield ~ nitro:Variety + (1 | Block)"),
  list(id = "oats_noint", data = "Oats.csv", factors = list(),
       formula = "yield ~ 0 + nitro + Variety + (1 | Block)"),
  list(id = "oats_nest", data = "Oats.csv", factors = list(),
       formula = "yield ~ Variety/nitro + (1 | Block)"),
  list(id = "oats_in", data = "Oats.csv", factors = list(),
       formula = "yield ~ Variety + nitro %in% Variety + (1 | Block)"),
  list(id = "oats_helmert_poly", data = "Oats.csv", factors = list(),
       contrasts = list(Variety = "contr.helmert"),
       formula = "yield ~ Variety + poly(nitro, 2) + (1 | Block)"),
  list(id = "oats_ordered", data = "Oats.csv", factors = list(), ordered = list("nitro"),
       formula = "yield ~ Variety * nitro + (1 | Block)"),
  list(id = "oats_factor_call", data = "Oats.csv", factors = list("Variety"),
       formula = "yield ~ factor(nitro) + C(Variety, sum) + (1 | Block)"),
  list(id = "oats_random_factor", data = "Oats.csv", factors = list(),
       contrasts = list(Variety = "contr.sum"),
       formula = "yield ~ Variety + (Variety | Block) + (0 + Variety | nitro)"),
  list(id = "cake_ordered", data = "cake.csv", factors = list("recipe", "replicate"), ordered = list("temperature"),
       formula = "angle ~ recipe * temperature + (1 | recipe:replicate)"),
  list(id = "cake_power", data = "cake.csv", factors = list("recipe", "replicate"),
       formula = "angle ~ (recipe + temp)^2 + (1 | recipe:replicate)"),
  list(id = "cake_arith", data = "cake.csv", factors = list("recipe", "replicate"),
       formula = "angle ~ recipe + I(temp^2) + log(temp) + I(temp > 200) + (1 | replicate)"),
  list(id = "contra_order", data = "Contraception.csv", factors = list("district"),
       formula = "age ~ urban * livch + use * livch + I(age^2 > 50) + (urban | district)"),
  list(id = "contra_cube", data = "Contraception.csv", factors = list("district"),
       formula = "age ~ (urban + livch + use)^3 - urban:livch:use + (1 | district)"),
  list(id = "contra_binomial", data = "Contraception.csv", factors = list("district", "use", "urban", "livch"),
       family = "binomial",
       formula = "use ~ age + I(age^2) + urban + livch + (1 | district)"),
  list(id = "cbpp_cbind", data = "cbpp.csv", factors = list("herd", "period"), family = "binomial",
       formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"),
  list(id = "nels_mixed", data = "nels_like.csv", factors = list(),
       formula = "mathscore ~ family_inc * ses + I(ses^2) + (family_inc | sch_id)"),
  list(id = "nels_poly_scale", data = "nels_like.csv", factors = list(),
       formula = "mathscore ~ poly(ses, 2) + scale(family_inc) + factor(urban) + (1 | sch_id)"),
  list(id = "nels_weights", data = "nels_like_weighted.csv", factors = list("sch_id"), weights = "w",
       formula = "mathscore ~ family_inc + ses + (1 | sch_id)"),
  list(id = "nels_double_bar", data = "nels_like.csv", factors = list(),
       formula = "mathscore ~ ses + (ses * family_inc || sch_id)"),
  list(id = "sleepyna_poly", data = "sleep_yna.csv", factors = list("Subject"),
       formula = "Reaction ~ poly(Days, 2) + scale(Days) + (0 + poly(Days, 2) | Subject)"),
  list(id = "sleepyna_factor_na", data = "sleep_yna.csv", factors = list(),
       formula = "Reaction ~ grp * Days + lg + (1 | Subject)"),
  list(id = "sleep_logical_noint", data = "sleep_yna.csv", factors = list(),
       formula = "Reaction ~ 0 + lg + Days:lg + (1 | Subject)"),
  list(id = "oats_relevel_levels", data = "Oats.csv", factors = list(),
       formula = "yield ~ relevel(factor(Variety), ref = \"Victory\") + factor(nitro, levels = c(0.6, 0, 0.2, 0.4)) + (1 | Block)"),
  list(id = "oats_functions", data = "Oats.csv", factors = list(),
       formula = "yield ~ I(Variety %in% c(\"Victory\", \"Marvellous\")) + ifelse(nitro > 0.3, 1, 0) + pmin(nitro, 0.4) + log(nitro + 1, base = 10) + sqrt(abs(nitro - 0.3)) + (1 | Block)"),
  list(id = "oats_cbind_pred", data = "Oats.csv", factors = list(),
       formula = "yield ~ cbind(nitro, nitro^2) + poly(nitro, 2):scale(yield > 100) + (1 | Block)"),
  list(id = "oats_ordered_treatment", data = "Oats.csv", factors = list(), ordered = list("nitro"),
       contrasts = list(nitro = "contr.treatment", Variety = "contr.SAS"),
       formula = "yield ~ nitro + Variety + (1 | Block)"),
  list(id = "cake_char_inter", data = "cake.csv", factors = list(),
       formula = "angle ~ recipe:temp + recipe + (1 | replicate)")
)

## a grid of fixed parts on Contraception (livch: 4 levels, urban / use: 2, age numeric)
grid <- list(
  list("age * livch"), list("livch:age"), list("0 + livch:age"), list("livch/age"), list("age %in% livch"),
  list("(livch + urban + age)^2"), list("livch * urban - urban"), list("0 + urban:livch"),
  list("urban:livch + age:urban"), list("I(age^2):urban + livch"), list("poly(age, 3):livch"),
  list("livch:urban:age"), list("age + I(age^2) + I(age^3) + urban * livch"), list("-1 + livch + urban"),
  list("livch + urban + livch:urban + age:livch:urban"), list("urban * (livch + age) - urban:age"),
  list("(urban + use)^2 + livch %in% urban"), list("livch * age", list(livch = "contr.sum")),
  list("urban * livch", list(livch = "contr.helmert", urban = "contr.sum")),
  list("age:livch + livch", list(livch = "contr.poly")), list("0 + livch + age:livch", list(livch = "contr.sum")),
  list("use:urban:livch", list(urban = "contr.sum")), list("age * scale(age) + log(age + 20) * urban"),
  list("exp(age / 10) + sqrt(age + 20):livch"), list("urban + I(urban == \"Y\") + livch")
)
for (k in seq_along(grid)) {
  cases[[length(cases) + 1]] <- list(id = sprintf("contra_grid_%02d", k), data = "Contraception.csv",
                                     factors = list("district"), contrasts = if (length(grid[[k]]) > 1) grid[[k]][[2]] else NULL,
                                     formula = paste("woman ~", grid[[k]][[1]], "+ (1 | district)"))
}

prep <- function(cs) {
  d <- read_data(cs$data)
  for (f in cs$factors) d[[f]] <- factor(d[[f]])
  for (f in cs$ordered) d[[f]] <- factor(d[[f]], ordered = TRUE)
  d
}

strs <- function(x) if (length(x) == 0) I(character(0)) else I(unlist(x))

nb <- function(x) {  # numbers: exact doubles, NA -> null
  x <- unname(unclass(x)); x <- as.numeric(x); I(x)
}

mat <- function(M) {
  M <- as.matrix(M)
  list(names = I(colnames(M)), nrow = nrow(M),
       first = lapply(seq_len(min(50, nrow(M))), function(i) nb(M[i, ])),
       colsums = nb(colSums(M)), colsumsq = nb(colSums(M^2)))
}

vec <- function(v) {
  if (is.null(v)) return(NULL)
  v <- as.numeric(v)
  list(first = nb(head(v, 50)), sum = sum(v), sumsq = sum(v^2), n = length(v))
}

one <- function(cs) {
  d <- prep(cs)
  f <- as.formula(cs$formula)
  ctr <- cs$contrasts
  fam <- cs$family
  wts <- if (!is.null(cs$weights)) d[[cs$weights]] else NULL
  ctl_ignore <- lmerControl(check.rankX = "ignore", check.nobs.vs.nlev = "ignore",
                            check.nobs.vs.nRE = "ignore", check.nlev.gtr.1 = "ignore")
  if (is.null(fam)) {
    lf <- lFormula(f, data = d, contrasts = ctr, weights = wts, control = ctl_ignore)
    lf2 <- suppressMessages(lFormula(f, data = d, contrasts = ctr, weights = wts))
  } else {
    gctl <- glmerControl(check.rankX = "ignore", check.nobs.vs.nlev = "ignore",
                         check.nobs.vs.nRE = "ignore", check.nlev.gtr.1 = "ignore")
    lf <- glFormula(f, data = d, family = fam, contrasts = ctr, weights = wts, control = gctl)
    lf2 <- suppressMessages(glFormula(f, data = d, family = fam, contrasts = ctr, weights = wts))
  }
  fr <- lf$fr
  y <- model.response(fr)
  if (is.factor(y)) y <- as.numeric(y != levels(y)[1])
  bars <- lme4:::expandDoubleVerts(f)
  bars <- findbars(bars)
  re <- lapply(bars, function(b) {
    mm <- model.matrix(eval(substitute(~foo, list(foo = b[[2]]))), fr)
    c(list(expr = paste(deparse(b[[2]]), collapse = " "), group = paste(deparse(b[[3]]), collapse = " ")), mat(mm))
  })
  list(id = cs$id, data = cs$data, formula = cs$formula, factors = strs(cs$factors),
       ordered = strs(cs$ordered), contrasts = ctr, weights = cs$weights, family = fam,
       n = nrow(fr), rows = I(as.integer(rownames(fr))),
       X = mat(lf$X), X_kept = I(colnames(lf2$X)), X_assign = I(attr(lf$X, "assign")),
       term_labels = I(attr(terms(nobars(f)), "term.labels")),
       y = if (is.matrix(y)) mat(y) else vec(y),
       offset = vec(model.offset(fr)), prior_weights = vec(model.weights(fr)),
       re = re, cnms = lapply(seq_along(lf$reTrms$cnms), function(i)
         list(group = names(lf$reTrms$cnms)[i], names = I(lf$reTrms$cnms[[i]]))))
}

out <- list(versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4"))), cases = list())
for (cs in cases) {
  if (isTRUE(cs$skip)) next
  r <- tryCatch(one(cs), error = function(e) list(id = cs$id, formula = cs$formula, error = conditionMessage(e)))
  out$cases[[length(out$cases) + 1]] <- r
  cat(cs$id, if (!is.null(r$error)) paste("ERROR", r$error) else paste(length(r$X$names), "columns"), "\n")
}
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null", na = "null", pretty = FALSE), OUT)
