-- Evidence weighed by its noise (issue 17): the step's standard error, what
-- the release delivered of the hypothesis, and the log-likelihood ratio the
-- evidence added to the hypothesis' log-odds, so that a confidence can be
-- recomputed from its evidence.
ALTER TABLE evidence ADD COLUMN step_se REAL;
ALTER TABLE evidence ADD COLUMN delivered REAL;
ALTER TABLE evidence ADD COLUMN log_likelihood_ratio REAL NOT NULL DEFAULT 0;
