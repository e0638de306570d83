#!/usr/bin/env Rscript
## lmerTest / pbkrtest / emmeans references for jaxhlm's F tests, ranova, KR and emmeans.
##
## Usage (from the repository root):
##   Rscript tools/reference_inference_extra.R [cases.json] [id ...]
## Default cases.json: tests/data/inference_extra/cases.json; one <id>.json is written beside it.
## Numbers are written with full precision (jsonlite digits = NA); NA / Inf -> null.

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(pbkrtest)
  library(emmeans)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
cases_file <- if (length(args) >= 1) args[1] else "tests/data/inference_extra/cases.json"
only_ids <- if (length(args) >= 2) args[-1] else character(0)
spec <- fromJSON(cases_file, simplifyVector = FALSE)
out_dir <- dirname(cases_file)
data_dir <- file.path(out_dir, spec$data_dir)

VERSIONS <- lapply(c(lme4 = "lme4", lmerTest = "lmerTest", pbkrtest = "pbkrtest", emmeans = "emmeans"),
                   function(p) as.character(packageVersion(p)))
VERSIONS$R <- R.version.string

num <- function(x) {
  x <- as.numeric(x)
  lapply(x, function(v) if (is.finite(v)) v else NULL)
}
named <- function(x) setNames(num(x), names(x))
mat <- function(M) {
  M <- as.matrix(M)
  list(rownames = if (is.null(rownames(M))) list() else as.list(rownames(M)),
       colnames = if (is.null(colnames(M))) list() else as.list(colnames(M)),
       matrix = lapply(seq_len(nrow(M)), function(i) num(M[i, ])))
}
table_list <- function(tab) {
  tab <- as.data.frame(tab)
  out <- list(rownames = as.list(rownames(tab)))
  for (cn in colnames(tab)) {
    v <- tab[[cn]]
    out[[cn]] <- if (is.numeric(v)) num(v) else as.list(as.character(v))
  }
  out
}
capture <- function(expr) {
  warns <- character(0); msgs <- character(0)
  val <- withCallingHandlers(expr,
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(m) { msgs <<- c(msgs, conditionMessage(m)); invokeRestart("muffleMessage") })
  list(value = val, warnings = as.list(warns), messages = as.list(msgs))
}

anova_block <- function(m, type, ddf) {
  r <- capture(anova(m, type = type, ddf = ddf))
  a <- r$value
  list(heading = as.list(attr(a, "heading")), table = table_list(a),
       hypotheses = lapply(attr(a, "hypotheses"), mat),
       warnings = r$warnings, messages = r$messages, print_text = as.list(capture.output(print(a))))
}

emm_summary <- function(e) {
  s <- as.data.frame(summary(e))
  list(table = table_list(s), columns = as.list(colnames(s)), linfct = mat(e@linfct),
       mesg = as.list(attr(summary(e), "mesg")), print_text = as.list(capture.output(print(e))))
}

emm_block <- function(m, spec_) {
  specs <- unlist(spec_$specs)
  by <- if (is.null(spec_$by)) NULL else unlist(spec_$by)
  at <- if (is.null(spec_$at)) NULL else lapply(spec_$at, unlist)
  one <- function(mode) {
    r <- capture(if (is.null(at)) emmeans(m, specs, by = by, lmer.df = mode) else
                   emmeans(m, specs, by = by, at = at, lmer.df = mode))
    e <- r$value
    out <- emm_summary(e)
    out$df_method <- mode
    out$messages <- r$messages
    out$warnings <- r$warnings
    pr <- capture(pairs(e))
    out$pairs <- emm_summary(pr$value)
    out$pairs$messages <- pr$messages
    pb <- summary(pairs(e), adjust = "bonferroni")
    out$pairs_bonferroni <- list(p.value = num(pb$p.value))
    pn <- summary(pairs(e), adjust = "none")
    out$pairs_none <- list(p.value = num(pn$p.value))
    out
  }
  res <- list(specs = as.list(specs), by = by, at = spec_$at,
              default = one(get_emm_option("lmer.df")), satterthwaite = one("satterthwaite"),
              asymptotic = one("asymptotic"))
  n <- nobs(m)
  res$default$df_method <- if (n > get_emm_option("pbkrtest.limit")) {
    if (n > get_emm_option("lmerTest.limit")) "asymptotic" else "satterthwaite"
  } else "kenward-roger"
  if (n > get_emm_option("lmerTest.limit")) res$satterthwaite$df_method <- "asymptotic"
  res
}

run_case <- function(case) {
  d <- read.csv(file.path(data_dir, case$data), stringsAsFactors = FALSE)
  for (f in unlist(case$factors)) d[[f]] <- factor(d[[f]])
  form <- as.formula(case$formula)
  fit <- capture(lmer(form, data = d, REML = isTRUE(case$REML)))
  m <- fit$value
  out <- list(id = case$id, data = case$data, formula = case$formula, py_formula = case$py_formula,
              REML = isTRUE(case$REML), factors = case$factors, versions = VERSIONS,
              fit_warnings = fit$warnings, fit_messages = fit$messages,
              n = nobs(m), theta = named(getME(m, "theta")), beta = named(fixef(m)), sigma = sigma(m),
              objective = as.numeric(if (isTRUE(case$REML)) REMLcrit(m) else deviance(m)),
              logLik = as.numeric(logLik(m)), vcov = mat(as.matrix(vcov(m))),
              satterthwaite = table_list(coef(summary(m))))
  for (ty in unlist(case$anova)) out[[paste0("anova_type", ty)]] <- anova_block(m, ty, "Satterthwaite")
  for (ty in unlist(case$anova_kr)) out[[paste0("anova_type", ty, "_kr")]] <- anova_block(m, ty, "Kenward-Roger")
  if (isTRUE(case$drop1)) {
    r <- capture(drop1(m))
    out$drop1 <- list(heading = as.list(attr(r$value, "heading")), table = table_list(r$value),
                      messages = r$messages, warnings = r$warnings)
    if (isTRUE(case$REML)) {
      r <- capture(drop1(m, ddf = "Kenward-Roger"))
      out$drop1_kr <- list(table = table_list(r$value))
    }
  }
  if (isTRUE(case$ranova)) {
    r <- capture(ranova(m))
    out$ranova <- list(heading = as.list(attr(r$value, "heading")), table = table_list(r$value),
                       formulae = lapply(attr(r$value, "formulae"), function(f) paste(deparse(f, width.cutoff = 500L), collapse = " ")),
                       messages = r$messages, warnings = r$warnings)
  }
  if (isTRUE(case$kr) && isTRUE(case$REML)) {
    r <- capture(coef(summary(m, ddf = "Kenward-Roger")))
    V <- vcovAdj(m)
    out$kenward_roger <- list(table = table_list(r$value), vcov_adj = mat(as.matrix(V)),
                              warnings = r$warnings, messages = r$messages)
  }
  if (length(case$emmeans)) {
    out$emm_options <- list(lmer.df = get_emm_option("lmer.df"), pbkrtest.limit = get_emm_option("pbkrtest.limit"),
                            lmerTest.limit = get_emm_option("lmerTest.limit"))
    out$emmeans <- list()
    for (es in case$emmeans) {
      lab <- paste(unlist(es$specs), collapse = ":")
      if (!is.null(es$by)) lab <- paste0(lab, "|", paste(unlist(es$by), collapse = ":"))
      if (!is.null(es$at)) lab <- paste0(lab, "@", paste(names(es$at), collapse = ":"))
      out$emmeans[[lab]] <- emm_block(m, es)
    }
  }
  out
}

for (case in spec$cases) {
  if (length(only_ids) && !(case$id %in% only_ids)) next
  cat(case$id, "\n")
  res <- run_case(case)
  writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, null = "null", pretty = TRUE),
             file.path(out_dir, paste0(case$id, ".json")))
}
