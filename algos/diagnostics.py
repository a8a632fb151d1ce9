"""The one metric namespace: every column `progress.csv` can hold, and what it means.

Columns are flat snake_case names; an algorithm reports only the diagnostics that apply to it,
and :data:`COLUMNS` says which those are for each built-in algorithm. A test trains one iteration
of each and holds its record to that list, so this page cannot drift from what is written.
"""

COMMON = {
    "iteration": "1-based index of the rollout + update",
    "step": "environment steps taken so far, all training envs together",
    "wall_time_s": "seconds since the run started",
    "train_return": "mean raw (unnormalised) return of training episodes that ended in this iteration; empty if none",
    "train_episodes": "number of training episodes that ended in this iteration",
    "train_return_top10": "mean raw return of the ten highest-scoring training episodes of the run so far (Wang et "
    "al. 2019's Table 1 (b) metric); empty until ten have ended",
    "eval_return": "mean raw return of the deterministic evaluation after this iteration; empty if not evaluated",
    "eval_return_std": "standard deviation of those evaluation returns",
    "steps_per_second": "environment steps of this iteration divided by its wall time (rollout + update)",
    "rollout_time_s": "seconds spent collecting the batch (env stepping, acting, GAE)",
    "update_time_s": "seconds spent in the policy and critic updates",
    "kl": "mean KL(pi_old || pi_new) over the batch, measured after the policy update",
    "kl_max": "largest KL(pi_old || pi_new) over the batch's states, measured after the policy update",
    "entropy": "entropy of the Gaussian policy (state independent)",
    "value_loss": "mean squared error of the critic over its update",
    "explained_variance": "1 - Var(returns - V_old) / Var(returns), of the critic before its update",
}

TRUST_REGION = {
    "cg_residual": "norm of the conjugate-gradient residual ||g - (F + damping I) s|| after the solve",
    "cg_iterations": "CG iterations that changed the solution (stops early once residual^2 <= cg_tol)",
    "sFs": "s^T (F + damping I) s for the CG solution s; <= 0 or NaN skips the update",
    "step_size": "scale applied to s: sqrt(2 max_kl / sFs), times the accepted line-search fraction (TRPO)",
    "expected_improvement": "linear prediction g . full_step of the surrogate improvement",
    "update_skipped": "1 when sFs was not finite and positive, so the policy was left unchanged",
}

LINE_SEARCH = {
    "linesearch_accepted": "1 when a line-search candidate satisfied KL <= kl_accept_factor * max_kl and improved the surrogate",
    "backtracks": "candidates rejected before the accepted one (backtrack_iters when none was accepted, 0 when the update was skipped)",
    "surrogate_improvement": "surrogate(theta_new) - surrogate(theta_old) of the accepted step",
}

POLICY_LOSS = {
    "policy_loss": "mean policy loss of the update (VPG: -log pi * A; the PPO family: its surrogate loss over minibatches)",
}

MINIBATCH_POLICY = {
    "approx_kl": "PPO family: mean of the estimator (r - 1) - log r over minibatches",
    "epochs": "PPO family: epochs run before the optional target-KL stop",
}

PPO_ONLY = {
    "clip_fraction": "PPO: fraction of samples whose ratio left [1 - clip_range, 1 + clip_range]",
}

PPO_KL = {
    "beta": "PPO-KL: the KL penalty coefficient of this update (the next one halves or doubles it)",
    "kl_to_target": "PPO-KL: d / d_targ, the batch's mean KL(old || new) after the update over kl_target",
}

SPO = {
    "ratio_deviation": "SPO: mean |r - 1| over minibatches (the paper's ratio deviation)",
    "ratio_outside": "SPO: fraction of samples with |r - 1| > ratio_epsilon",
    "ratio_max": "SPO, Truly PPO: largest ratio r of any sample during the update",
}

TRULY_PPO = {
    "trigger_fraction": "Truly PPO: fraction of samples rolled back (KL(old || new) at the state >= kl_trigger and r A > A)",
    "ratio_max": SPO["ratio_max"],
}

ACKTR = {
    "predicted_kl": "ACKTR: 1/2 step^T F_hat step of the trust-region step, F_hat the damped K-FAC Fisher",
    "applied_predicted_kl": "ACKTR: the same for the update actually applied (differs only with momentum > 0)",
    "kl_clip_active": "ACKTR: 1 when the radius max_kl, not the learning rate eta_max, set the step",
    "step_scale": "ACKTR: eta = min(eta_max, sqrt(2 max_kl / dtheta^T F_hat dtheta)), the multiplier of the K-FAC direction",
    "update_skipped": TRUST_REGION["update_skipped"],
    "acktr_lr": "ACKTR: eta_max of this update",
    "acktr_lr_change": "ACKTR: -1, 0 or +1, how the measured KL against desired_kl moved eta_max for the next update",
    "kfac_min_eig_a": "ACKTR: smallest eigenvalue of any layer's input factor A in use",
    "kfac_min_eig_s": "ACKTR: smallest eigenvalue of any layer's gradient factor S in use",
    "kfac_damped_condition": "ACKTR: largest condition number over the layers of A x S + damping I",
}

TRPL = {
    "mean_projected": "TRPL: fraction of samples whose mean the layer projected, over the update's minibatches",
    "regression_loss": "TRPL: the trust-region regression penalty d_mean(mu_theta, sg[mu~]) over minibatches",
    "mean_constraint": "TRPL: mean over states of the network's mean part d_mean(mu_theta, mu_old) after the update",
    "mean_constraint_max": "TRPL: its largest value over the batch's states (mean_bound bounds the projected policy's)",
    "mean_projected_after": "TRPL: fraction of states whose mean lies outside mean_bound after the update",
    "cov_constraint_before": "TRPL: the network's covariance part against the old policy's before the std is projected",
    "cov_constraint": "TRPL: the covariance part after the std was overwritten with the projected std (<= cov_bound)",
    "cov_projected": "TRPL: 1 when the covariance projection was active at the end of the update",
}

MDPO = {
    "kl_coef": "MDPO: 1 / t_k, the coefficient of the KL term in this update",
    "reverse_kl": "MDPO: mean KL(pi_new || pi_old) over the batch after the update (the direction MDPO penalises)",
    "reverse_kl_max": "MDPO: largest KL(pi_new || pi_old) over the batch's states after the update",
}

# the columns of each built-in algorithm's progress.csv, in no particular order
COLUMNS = {
    "trpo": COMMON | TRUST_REGION | LINE_SEARCH,
    "npg": COMMON | TRUST_REGION,
    "vpg": COMMON | POLICY_LOSS,
    "ppo": COMMON | POLICY_LOSS | MINIBATCH_POLICY | PPO_ONLY,
    "ppo_kl": COMMON | POLICY_LOSS | MINIBATCH_POLICY | PPO_KL,
    "spo": COMMON | POLICY_LOSS | MINIBATCH_POLICY | SPO,
    "truly_ppo": COMMON | POLICY_LOSS | MINIBATCH_POLICY | TRULY_PPO,
    "mdpo": COMMON | POLICY_LOSS | MINIBATCH_POLICY | MDPO,
    "acktr": COMMON | ACKTR,
    "trpl": COMMON | POLICY_LOSS | MINIBATCH_POLICY | TRPL,
}

ALL = (
    COMMON
    | TRUST_REGION
    | LINE_SEARCH
    | POLICY_LOSS
    | MINIBATCH_POLICY
    | PPO_ONLY
    | PPO_KL
    | SPO
    | TRULY_PPO
    | MDPO
    | ACKTR
    | TRPL
)
