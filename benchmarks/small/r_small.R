# lme4 side of benchmarks/small_models.py: Rscript r_small.R models.tsv -> "name ms REMLcrit" lines
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
ms <- read.table(args[1], sep = "\t", stringsAsFactors = FALSE, quote = "")
for (i in seq_len(nrow(ms))) {
  d <- read.csv(ms[i, 2], stringsAsFactors = TRUE)
  for (c in c("Worker", "plate", "sample", "batch", "cask", "Subject")) if (c %in% names(d)) d[[c]] <- factor(d[[c]])
  f <- as.formula(ms[i, 3])
  for (k in 1:5) m <- suppressMessages(suppressWarnings(lmer(f, d)))
  ts <- numeric(6)
  for (b in 1:6) {
    t0 <- proc.time()[["elapsed"]]
    for (k in 1:10) m <- suppressMessages(suppressWarnings(lmer(f, d)))
    ts[b] <- (proc.time()[["elapsed"]] - t0) / 10
  }
  cat(sprintf("%s %.3f %.8f\n", ms[i, 1], 1000 * median(ts), REMLcrit(m)))
}
