# Extra lme4::glmer references for jaxhlm (non-canonical links, Poisson offsets, nAGQ = 0).
# Usage: Rscript tools/reference_glmm_extra.R tests/data   (writes tests/data/reference_glmm_extra/*.json)
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(TRUE); root <- if (length(args)) args[1] else "tests/data"
out <- file.path(root, "reference_glmm_extra"); dir.create(out, showWarnings = FALSE)
cbpp <- read.csv(file.path(root, "cbpp.csv")); cbpp$herd <- factor(cbpp$herd); cbpp$period <- factor(cbpp$period)
contra <- read.csv(file.path(root, "Contraception.csv"))
for (v in c("district", "use", "urban", "livch")) contra[[v]] <- factor(contra[[v]])
cases <- list(
  list(id = "cbpp_probit", data = "cbpp", formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
       family = "binomial", link = "probit", nAGQ = 1),
  list(id = "cbpp_cloglog", data = "cbpp", formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
       family = "binomial", link = "cloglog", nAGQ = 1),
  list(id = "contra_probit_slope", data = "contra", formula = "use ~ age + urban + (urban | district)",
       family = "binomial", link = "probit", nAGQ = 1),
  list(id = "cbpp_pois_offset", data = "cbpp", formula = "incidence ~ period + offset(log(size)) + (1 | herd)",
       family = "poisson", link = "log", nAGQ = 1),
  list(id = "cbpp_nagq0", data = "cbpp", formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
       family = "binomial", link = "logit", nAGQ = 0),
  list(id = "cbpp_agq9_probit", data = "cbpp", formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)",
       family = "binomial", link = "probit", nAGQ = 9)
)
one <- function(cs, tol) {
  dat <- if (cs$data == "cbpp") cbpp else contra
  fam <- do.call(cs$family, list(link = cs$link))
  m <- glmer(as.formula(cs$formula), data = dat, family = fam, nAGQ = cs$nAGQ,
             control = glmerControl(tolPwrss = tol))
  list(theta = as.list(getME(m, "theta")), beta = as.list(fixef(m)), se = as.list(sqrt(diag(as.matrix(vcov(m))))),
       vcov = unname(as.matrix(vcov(m))), objective = unname(m@devcomp$cmp["dev"]), logLik = as.numeric(logLik(m)),
       deviance = deviance(m), AIC = AIC(m), BIC = BIC(m), varcorr = as.data.frame(VarCorr(m)),
       fitted_first20 = unname(fitted(m)[1:20]), conv_messages = m@optinfo$conv$lme4$messages,
       isSingular = isSingular(m))
}
for (cs in cases) {
  res <- c(cs, list(default = one(cs, 1e-7), tight = one(cs, 1e-12), versions = list(lme4 = as.character(packageVersion("lme4")))))
  writeLines(toJSON(res, digits = NA, auto_unbox = TRUE, null = "null", na = "null"), file.path(out, paste0(cs$id, ".json")))
  cat(cs$id, res$tight$objective, "\n")
}
