# Run lme4 on one benchmark case and write a JSON result.
#
#   Rscript benchmarks/runners/lme4_bench.R SPEC.json OUT.json
#
# The spec is written by benchmarks/run.py (same fields as for runners/pyrunner.py).  Only the
# lmer() / simulate() / refit() calls are timed, with system.time()[["elapsed"]]; loading the
# packages and reading the data (data.table::fread) happen before.  Errors are caught and written
# to OUT as {"status": "error"} so the harness reports them instead of crashing.
args <- commandArgs(trailingOnly = TRUE)
spec_path <- args[[1]]
out_path <- args[[2]]

suppressMessages({
  library(jsonlite)
  library(lme4)
  library(data.table)
})

spec <- fromJSON(spec_path, simplifyVector = TRUE)
out <- list(tool = "lme4", case = spec$case, status = "ok", notes = character(0),
            version = as.character(packageVersion("lme4")))

write_out <- function(out) {
  tmp <- paste0(out_path, ".tmp")
  writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, null = "null", na = "null"), tmp)
  file.rename(tmp, out_path)
}

# warnings are counted by kind (numbers masked), keeping the first message of each kind
warn_count <- integer(0)
warn_first <- character(0)
collect <- function(expr) {
  withCallingHandlers(expr, warning = function(w) {
    msg <- strsplit(conditionMessage(w), "\n")[[1]][1]
    key <- gsub("[-+]?[0-9]*\\.?[0-9]+([eE][-+]?[0-9]+)?", "#", msg)
    if (is.na(warn_count[key])) {
      warn_count[key] <<- 0L
      warn_first[key] <<- substr(msg, 1, 120)
    }
    warn_count[key] <<- warn_count[key] + 1L
    invokeRestart("muffleWarning")
  })
}

objective <- function(m) if (isREML(m)) REMLcrit(m) else deviance(m)

res <- tryCatch({
  t0 <- proc.time()[["elapsed"]]
  d <- as.data.frame(fread(spec$data))
  for (cc in spec$factor_cols) d[[cc]] <- factor(d[[cc]])
  out$load_s <- proc.time()[["elapsed"]] - t0
  form <- as.formula(spec$formula)
  reml <- isTRUE(spec$reml)

  if (spec$kind == "fit") {
    repeats <- max(1, as.integer(spec$repeats))
    budget <- as.numeric(spec$time_budget_s)
    times <- numeric(0)
    objs <- numeric(0)
    repeat {
      tt <- system.time(m <- collect(lmer(form, data = d, REML = reml)))[["elapsed"]]
      times <- c(times, tt)
      objs <- c(objs, objective(m))
      if (length(times) >= repeats || sum(times) >= budget) break
    }
    out$first_s <- times[1]
    out$times_s <- times
    out$objective <- objs[length(objs)]
    out$objectives <- objs
    out$theta <- unname(getME(m, "theta"))
    out$fixef <- unname(fixef(m))
    out$feval <- m@optinfo$feval
  } else {
    sim <- spec$sim
    nsim <- as.integer(sim$nsim)
    nobs <- as.integer(sim$nobs)
    k <- max(1L, min(nsim, as.integer(sim$cap)))
    con <- file(sim$y_path, "rb")
    Y <- matrix(readBin(con, "double", n = as.double(nobs) * k, size = 8, endian = "little"),
                nrow = nobs, ncol = k)
    close(con)
    out$fit_s <- system.time(m <- collect(lmer(form, data = d, REML = reml)))[["elapsed"]]
    out$objective <- objective(m)
    out$simulate_s <- system.time(ysim <- simulate(m, nsim = nsim, seed = as.integer(sim$seed)))[["elapsed"]]
    objs <- numeric(k)
    per <- numeric(k)
    budget <- if (is.null(sim$budget_s)) Inf else as.numeric(sim$budget_s)
    done <- 0L
    for (i in seq_len(k)) {
      # a time budget stops the loop (after at least 20 refits); the total is extrapolated
      if (i > 20L && sum(per) > budget) break
      per[i] <- system.time(mi <- collect(refit(m, newresp = Y[, i])))[["elapsed"]]
      objs[i] <- objective(mi)
      done <- i
    }
    if (done < k) {
      out$notes <- c(out$notes, sprintf(
        "refitted %d of %d replicates within the %g s simulation budget; total extrapolated", done, nsim, budget))
      k <- done
      objs <- objs[seq_len(k)]
      per <- per[seq_len(k)]
    }
    out$nsim <- nsim
    out$k <- k
    out$refit_s <- sum(per)
    out$refit_times_s <- sum(per)
    out$per_refit_s <- sum(per) / k
    out$per_refit_median_s <- median(per)
    out$simulate_times_s <- out$simulate_s
    out$first_s <- out$simulate_s + sum(per) * nsim / k
    out$times_s <- out$first_s
    out$extrapolated <- k < nsim
    out$sim_objectives <- objs
  }
  out
}, error = function(e) {
  out$status <- "error"
  out$error <- substr(conditionMessage(e), 1, 2000)
  out
})
if (length(warn_count)) {
  res$notes <- c(res$notes, sprintf("lme4 warning (%dx): %s%s", warn_count, warn_first,
                                    ifelse(warn_count > 1, " (first of them)", "")))
  res$n_warnings <- sum(warn_count)
}
write_out(res)
