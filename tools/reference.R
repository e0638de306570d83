#!/usr/bin/env Rscript
## Extra lme4 / lmerTest / merTools / pbkrtest reference outputs for jaxhlm.
##
## Usage (from the repository root):
##   Rscript tools/reference.R [cases.json] [out_dir] [id ...]
## Defaults: cases.json = tests/data/reference_extra/cases.json, out_dir = the folder
## of cases.json.  Data paths in cases.json are relative to its data_dir, which is
## relative to the folder of cases.json.  Giving ids runs only those cases.
##
## Output layout follows the shared reference files (see tests/data/reference/ and
## /work/shared/reference/README.md): one <id>.json per case, numbers written with
## full precision (jsonlite digits = NA), NA/not applicable -> null, vectors keyed by
## coefficient name -> JSON objects in R's order, matrices row-major.

suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(jsonlite)
})

args <- commandArgs(trailingOnly = TRUE)
cases_file <- if (length(args) >= 1) args[1] else "tests/data/reference_extra/cases.json"
out_dir <- if (length(args) >= 2) args[2] else dirname(cases_file)
only_ids <- if (length(args) >= 3) args[-(1:2)] else character(0)

spec <- fromJSON(cases_file, simplifyVector = FALSE)
data_dir <- file.path(dirname(cases_file), spec$data_dir)

pkg_version <- function(p) {
  tryCatch(as.character(packageVersion(p)), error = function(e) NA_character_)
}
VERSIONS <- list(
  R = R.version.string,
  lme4 = pkg_version("lme4"),
  lmerTest = pkg_version("lmerTest"),
  Matrix = pkg_version("Matrix"),
  merTools = pkg_version("merTools"),
  pbkrtest = pkg_version("pbkrtest")
)
COLLATION <- list(
  LC_COLLATE = Sys.getlocale("LC_COLLATE"),
  ICU = unname(capabilities("ICU")),
  icu_collate = tryCatch(icuGetCollate(), error = function(e) NA_character_)
)

## ---------------------------------------------------------------- helpers

## finite numeric vector -> JSON array (always an array, even of length 1)
arr <- function(x) {
  x <- unname(unclass(x))
  if (is.numeric(x)) x[!is.finite(x)] <- NA
  I(as.vector(x))
}

## named numeric vector -> JSON object in R's order
obj <- function(x) {
  nm <- names(x)
  x <- unname(unclass(x))
  if (is.numeric(x)) x[!is.finite(x)] <- NA
  l <- as.list(x)
  names(l) <- nm
  l
}

num <- function(x) {
  x <- as.numeric(x)
  if (length(x) == 0 || !is.finite(x)) NA else x
}

chr <- function(x) I(as.character(unlist(x)))

## matrix -> {names, matrix} (row-major array of arrays)
mat_obj <- function(m) {
  m <- as.matrix(m)
  nm <- rownames(m)
  m <- unname(m)
  m[!is.finite(m)] <- NA
  rows <- lapply(seq_len(nrow(m)), function(i) I(m[i, ]))
  list(names = I(nm), matrix = rows)
}

## evaluate expr collecting warnings and messages (muffled)
capture <- function(expr) {
  warns <- character(0)
  msgs <- character(0)
  val <- withCallingHandlers(
    expr,
    warning = function(w) {
      warns <<- c(warns, conditionMessage(w))
      invokeRestart("muffleWarning")
    },
    message = function(m) {
      msgs <<- c(msgs, sub("\n$", "", conditionMessage(m)))
      invokeRestart("muffleMessage")
    }
  )
  list(value = val, warnings = warns, messages = msgs)
}

timed <- function(expr) {
  t0 <- proc.time()[["elapsed"]]
  val <- expr
  list(value = val, time = round(proc.time()[["elapsed"]] - t0, 3))
}

coef_table <- function(ct) {
  out <- list(rownames = I(rownames(ct)))
  for (cn in colnames(ct)) out[[cn]] <- arr(ct[, cn])
  out
}

load_case_data <- function(case) {
  path <- file.path(data_dir, case$data)
  dat <- read.csv(path)
  for (f in unlist(case$factors)) dat[[f]] <- factor(dat[[f]])
  list(dat = dat, path = path, md5 = unname(tools::md5sum(path)))
}

## fit with lmerTest::lmer (the data object is called `dat`, as in the shared files)
fit_lmer <- function(formula_str, dat, REML, optimizer = NULL, lme4_only = FALSE) {
  fml <- as.formula(formula_str)
  ctrl <- if (is.null(optimizer)) NULL else lmerControl(optimizer = optimizer)
  fun <- if (lme4_only) quote(lme4::lmer) else quote(lmerTest::lmer)
  cl <- if (is.null(ctrl)) {
    bquote(.(fun)(.(fml), data = dat, REML = .(REML)))
  } else {
    bquote(.(fun)(.(fml), data = dat, REML = .(REML), control = .(ctrl)))
  }
  env <- environment()
  tm <- timed(capture(eval(cl, env)))
  res <- tm$value
  res$time <- tm$time
  res
}

conv_msgs <- function(m) chr(m@optinfo$conv$lme4$messages)

satterthwaite <- function(m) {
  s <- capture(summary(m))
  ct <- s$value$coefficients
  list(
    df = obj(setNames(ct[, "df"], rownames(ct))),
    p_value = obj(setNames(ct[, "Pr(>|t|)"], rownames(ct))),
    table = coef_table(ct),
    warnings = chr(s$warnings)
  )
}

kenward_roger <- function(m, case, n) {
  if (!isREML(m)) {
    return(list(skipped = "ML fit: lmerTest/pbkrtest Kenward-Roger requires a REML fit"))
  }
  if (isTRUE(case$skip_kr)) {
    return(list(skipped = sprintf("large data (n = %d): Kenward-Roger not computed", n)))
  }
  r <- tryCatch({
    tm <- timed(capture(summary(m, ddf = "Kenward-Roger")))
    ct <- tm$value$value$coefficients
    list(
      df = obj(setNames(ct[, "df"], rownames(ct))),
      p_value = obj(setNames(ct[, "Pr(>|t|)"], rownames(ct))),
      se = obj(setNames(ct[, "Std. Error"], rownames(ct))),
      table = coef_table(ct),
      warnings = chr(tm$value$warnings),
      time_s = tm$time
    )
  }, error = function(e) list(error = conditionMessage(e)))
  r
}

ci_names <- function(m) {
  w_old <- suppressMessages(confint(m, method = "Wald", oldNames = TRUE))
  w_new <- suppressMessages(confint(m, method = "Wald", oldNames = FALSE))
  list(wald = w_old, old = rownames(w_old), long = rownames(w_new))
}

confint_profile <- function(m, case, nm) {
  if (isTRUE(case$skip_profile)) {
    return(list(skipped = sprintf("large data (n = %d): profile CIs not computed", nobs(m))))
  }
  limit <- if (is.null(case$profile_time_limit)) 900 else case$profile_time_limit
  t0 <- proc.time()[["elapsed"]]
  r <- tryCatch({
    setTimeLimit(elapsed = limit, transient = TRUE)
    on.exit(setTimeLimit(elapsed = Inf), add = TRUE)
    cp <- capture(confint(m, method = "profile", oldNames = TRUE))
    ci <- cp$value
    list(
      names = I(rownames(ci)),
      names_long = I(nm$long[match(rownames(ci), nm$old)]),
      lower = arr(ci[, 1]), upper = arr(ci[, 2]),
      columns = I(colnames(ci)),
      warnings = chr(unique(cp$warnings)),
      time_s = round(proc.time()[["elapsed"]] - t0, 3)
    )
  }, error = function(e) {
    list(
      names = I(nm$old), names_long = I(nm$long),
      lower = NULL, upper = NULL,
      error = conditionMessage(e),
      warnings = I(character(0)),
      time_s = round(proc.time()[["elapsed"]] - t0, 3)
    )
  })
  setTimeLimit(elapsed = Inf)
  r
}

ranef_block <- function(m, truncate = NULL) {
  re <- ranef(m, condVar = TRUE)
  cf <- coef(m)
  out_re <- list()
  out_cf <- list()
  for (g in names(re)) {
    df <- re[[g]]
    lev <- rownames(df)
    keep <- seq_along(lev)
    if (!is.null(truncate)) keep <- keep[seq_len(min(length(keep), truncate))]
    terms <- colnames(df)
    pv <- attr(df, "postVar")
    if (is.null(pv)) pv <- attr(df, "condVar")
    vals <- list()
    sds <- list()
    if (is.list(pv)) {
      ## several terms for one grouping factor: list of arrays, one per term block
      blocks <- pv
    } else {
      blocks <- list(pv)
    }
    col0 <- 0
    full <- NULL
    for (b in blocks) {
      qb <- dim(b)[1]
      for (j in seq_len(qb)) {
        t <- terms[col0 + j]
        vals[[t]] <- arr(df[keep, t])
        sds[[t]] <- arr(sqrt(b[j, j, keep]))
      }
      col0 <- col0 + qb
    }
    entry <- list(levels = I(lev[keep]), terms = I(terms), values = vals, condsd = sds)
    if (length(terms) > 1 && length(blocks) == 1) {
      entry$condvar_full <- lapply(keep, function(i) {
        mm <- blocks[[1]][, , i]
        lapply(seq_len(nrow(mm)), function(r) I(mm[r, ]))
      })
    }
    out_re[[g]] <- entry
    cdf <- cf[[g]]
    cols <- list()
    for (cn in colnames(cdf)) cols[[cn]] <- arr(cdf[keep, cn])
    out_cf[[g]] <- list(levels = I(rownames(cdf)[keep]), columns = cols)
  }
  list(ranef = out_re, coef = out_cf)
}

alt_fit <- function(case, dat, optimizer) {
  r <- tryCatch({
    f <- fit_lmer(case$formula, dat, isTRUE(case$REML), optimizer = optimizer)
    m <- f$value
    ALT_MODELS[[optimizer]] <- m
    s <- capture(summary(m))
    list(
      optimizer = optimizer,
      feval = m@optinfo$feval,
      fit_time_s = f$time,
      theta = obj(getME(m, "theta")),
      beta = obj(fixef(m)),
      sigma = sigma(m),
      se = obj(setNames(sqrt(diag(as.matrix(vcov(m)))), names(fixef(m)))),
      objective = num(if (isREML(m)) REMLcrit(m) else deviance(m)),
      logLik = as.numeric(logLik(m)),
      satterthwaite_df = obj(setNames(s$value$coefficients[, "df"], rownames(s$value$coefficients))),
      satterthwaite_warnings = chr(s$warnings),
      isSingular = isSingular(m),
      conv_messages = conv_msgs(m),
      fit_warnings = chr(f$warnings)
    )
  }, error = function(e) list(optimizer = optimizer, error = conditionMessage(e)))
  r
}

MODELS <- new.env()
ALT_MODELS <- new.env()  # refits of the current case, by optimizer

## ---------------------------------------------------------------- lmer case

run_lmer <- function(case) {
  d <- load_case_data(case)
  dat <- d$dat
  REML <- isTRUE(case$REML)

  ## plain lme4 timing (no lmerTest post-processing)
  f4 <- fit_lmer(case$formula, dat, REML, lme4_only = TRUE)
  f <- fit_lmer(case$formula, dat, REML)
  m <- f$value
  assign(case$id, m, envir = MODELS)
  n <- nobs(m)
  message(sprintf("  fitted %s: n=%d, lme4 %.3fs, lmerTest %.3fs", case$id, n, f4$time, f$time))

  V <- as.matrix(vcov(m))
  beta <- fixef(m)
  se <- sqrt(diag(V))
  names(se) <- names(beta)
  REMLc <- if (REML) REMLcrit(m) else NA
  devi <- if (REML) NA else deviance(m)
  objective <- if (REML) REMLc else devi
  ll <- logLik(m)

  vc <- as.data.frame(VarCorr(m))
  cmp <- m@devcomp$cmp
  cmp_l <- lapply(as.list(cmp), num)

  sres <- residuals(m, type = "pearson", scaled = TRUE)
  q <- quantile(sres, type = 7)
  names(q) <- c("Min", "1Q", "Median", "3Q", "Max")

  trunc <- if (is.null(case$ranef_truncate)) NULL else as.integer(case$ranef_truncate)
  rb <- ranef_block(m, trunc)

  nd <- dat[1:5, , drop = FALSE]
  nm <- ci_names(m)
  w <- nm$wald

  summ_text <- capture.output(print(summary(m)))

  message("  satterthwaite / KR ...")
  satt <- satterthwaite(m)
  kr <- kenward_roger(m, case, n)
  message("  alt optimizers ...")
  rm(list = ls(ALT_MODELS), envir = ALT_MODELS)
  alts <- list(
    bobyqa = alt_fit(case, dat, "bobyqa"),
    Nelder_Mead = alt_fit(case, dat, "Nelder_Mead")
  )
  objs <- c(nloptwrap = objective)
  for (a in names(alts)) if (!is.null(alts[[a]]$objective)) objs[a] <- alts[[a]]$objective
  best <- names(objs)[which.min(objs)]
  message("  profile ...")
  prof <- confint_profile(m, case, nm)
  if (!is.null(prof$error) && best != "nloptwrap" && exists(best, envir = ALT_MODELS)) {
    ## default fit stopped short of the optimum and profiling found a lower deviance:
    ## also profile the refit made with the best optimizer
    message("  profile of the ", best, " refit ...")
    prof$fallback <- c(list(optimizer = best), confint_profile(get(best, envir = ALT_MODELS), case, nm))
  }

  fac_levels <- list()
  for (fc in unlist(case$factors)) fac_levels[[fc]] <- I(levels(dat[[fc]]))
  nao <- attr(model.frame(m), "na.action")

  out <- list(
    id = case$id,
    type = "lmer",
    data = case$data,
    data_md5 = d$md5,
    formula = case$formula,
    REML = REML,
    factors = I(unlist(case$factors)),
    levels = NULL,
    versions = VERSIONS,
    collation = COLLATION,
    fit_time_s = f$time,
    fit_time_lme4_s = f4$time,
    fit_warnings = chr(f$warnings),
    fit_messages = chr(f$messages),
    n = n,
    n_rows_data = nrow(dat),
    na_omitted_rows = if (is.null(nao)) I(integer(0)) else I(as.integer(nao)),
    ngrps = as.list(ngrps(m)),
    factor_levels = fac_levels,
    optimizer = m@optinfo$optimizer,
    feval = m@optinfo$feval,
    isSingular = isSingular(m),
    conv_messages = conv_msgs(m),
    optinfo_warnings = chr(m@optinfo$warnings),
    theta = obj(getME(m, "theta")),
    lower = arr(getME(m, "lower")),
    beta = obj(beta),
    sigma = sigma(m),
    vcov = mat_obj(V),
    se = obj(se),
    t_value = obj(beta / se),
    cor_fixed = mat_obj(cov2cor(V)),
    satterthwaite = satt,
    kenward_roger = kr,
    summary_text = I(summ_text),
    varcorr = list(
      grp = arr(vc$grp), var1 = arr(vc$var1), var2 = arr(vc$var2),
      vcov = arr(vc$vcov), sdcor = arr(vc$sdcor)
    ),
    logLik = as.numeric(ll),
    logLik_df = attr(ll, "df"),
    AIC = AIC(m),
    BIC = BIC(m),
    deviance = devi,
    REMLcrit = REMLc,
    df_resid = df.residual(m),
    devcomp_cmp = cmp_l,
    objective = objective,
    scaled_resid_quantiles = obj(q),
    ranef_truncated = if (is.null(trunc)) NULL else trunc,
    ranef = rb$ranef,
    coef = rb$coef,
    fitted_first50 = arr(head(fitted(m), 50)),
    residuals_first50 = arr(head(residuals(m), 50)),
    predict_newdata_rows = I(1:5),
    predict_re_form_NA = arr(predict(m, newdata = nd, re.form = NA)),
    predict_re_form_NULL = arr(predict(m, newdata = nd, re.form = NULL)),
    confint_wald = list(
      names = I(rownames(w)), names_long = I(nm$long),
      lower = arr(w[, 1]), upper = arr(w[, 2]), columns = I(colnames(w))
    ),
    confint_profile = prof,
    alt_optimizers = alts,
    best_optimizer = best,
    objective_best = unname(objs[best]),
    objective_gap_default = unname(objective - objs[best])
  )
  if (is.null(trunc)) out$ranef_truncated <- NULL
  out
}

## ---------------------------------------------------------------- icc case

run_icc <- function(case) {
  d <- load_case_data(case)
  dat <- d$dat
  ic <- tryCatch(capture(merTools::ICC(outcome = case$outcome, group = case$group, data = dat)),
                 error = function(e) list(value = NA, error = conditionMessage(e), warnings = character(0)))
  fstr <- sprintf("%s ~ 1 + (1 | %s)", case$outcome, case$group)
  nm <- fit_lmer(fstr, dat, TRUE, lme4_only = TRUE)$value
  vc <- as.data.frame(VarCorr(nm))
  tau00 <- vc$vcov[1]
  s2 <- sigma(nm)^2
  list(
    id = case$id, type = "icc", data = case$data, data_md5 = d$md5,
    formula = NULL, REML = NULL, factors = I(unlist(case$factors)), levels = NULL,
    outcome = case$outcome, group = case$group,
    versions = VERSIONS,
    icc = num(ic$value),
    icc_error = if (is.null(ic$error)) NULL else ic$error,
    icc_warnings = chr(ic$warnings),
    null_model = list(
      formula = fstr, REML = TRUE, tau00 = tau00, sigma2 = s2,
      theta = obj(getME(nm, "theta")), beta = obj(fixef(nm)),
      REMLcrit = REMLcrit(nm), icc_from_vcov = tau00 / (tau00 + s2)
    )
  )
}

## ---------------------------------------------------------------- anova case

run_anova <- function(case, all_cases) {
  ids <- unlist(case$models)
  env <- new.env()
  forms <- list()
  remls <- list()
  for (id in ids) {
    mc <- Filter(function(cc) identical(cc$id, id), all_cases)[[1]]
    if (!exists(id, envir = MODELS, inherits = FALSE)) {
      dd <- load_case_data(mc)
      assign(id, fit_lmer(mc$formula, dd$dat, isTRUE(mc$REML))$value, envir = MODELS)
    }
    assign(id, get(id, envir = MODELS), envir = env)
    forms[[id]] <- mc$formula
    remls[[id]] <- isTRUE(mc$REML)
  }
  cl <- as.call(c(list(as.name("anova")), lapply(ids, as.name)))
  a <- capture(eval(cl, env))
  tab <- a$value
  cols <- colnames(tab)
  table <- list(rownames = I(rownames(tab)))
  for (cn in cols) table[[cn]] <- arr(tab[[cn]])
  list(
    id = case$id, type = "anova", models = I(ids), versions = VERSIONS,
    model_formulas = forms, model_REML = remls,
    table = table, columns = I(cols),
    warnings = chr(a$warnings), messages = chr(a$messages),
    print_text = I(capture.output(print(tab)))
  )
}

## ---------------------------------------------------------------- JSON output

## jsonlite (1.8.4) writes at most 15 significant digits, so doubles are formatted
## here: shortest of 15/16/17 significant digits that reads back to the same double,
## non-finite -> null; then inserted verbatim.
fmt_num <- function(x) {
  out <- rep("null", length(x))
  ok <- is.finite(x)
  xs <- x[ok]
  s <- sprintf("%.15g", xs)
  bad <- as.numeric(s) != xs
  if (any(bad)) {
    s16 <- sprintf("%.16g", xs[bad])
    bad17 <- as.numeric(s16) != xs[bad]
    s16[bad17] <- sprintf("%.17g", xs[bad][bad17])
    s[bad] <- s16
  }
  out[ok] <- s
  out
}

prep_json <- function(x) {
  if (is.list(x)) {
    nm <- names(x)
    y <- lapply(x, prep_json)
    names(y) <- nm
    return(y)
  }
  if (is.double(x)) {
    asis <- inherits(x, "AsIs")
    v <- as.vector(unclass(x))
    s <- fmt_num(v)
    if (asis || length(v) != 1) s <- paste0("[", paste(s, collapse = ","), "]")
    return(structure(s, class = "json"))
  }
  x
}

write_json_file <- function(res, path, pretty = TRUE) {
  js <- toJSON(prep_json(res), json_verbatim = TRUE, auto_unbox = TRUE,
               null = "null", na = "null", pretty = pretty, digits = NA)
  writeLines(js, path, useBytes = TRUE)
}

## ---------------------------------------------------------------- main

dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
for (case in spec$cases) {
  if (length(only_ids) && !(case$id %in% only_ids)) next
  message(sprintf("== %s (%s)", case$id, case$type))
  t0 <- proc.time()[["elapsed"]]
  res <- switch(case$type,
    lmer = run_lmer(case),
    icc = run_icc(case),
    anova = run_anova(case, spec$cases),
    stop("unknown case type ", case$type)
  )
  big <- !is.null(res[["n"]]) && res[["n"]] > 20000
  path <- file.path(out_dir, paste0(case$id, ".json"))
  write_json_file(res, path, pretty = !big)
  message(sprintf("  wrote %s (%.1f s)", path, proc.time()[["elapsed"]] - t0))
}
