"""Named optimizer configurations that the trajectory parity checks and ``twins parity`` run.

Each entry exercises one torch option or ordering that a naive optax port gets
wrong. Learning rates are sized so that 100 full-batch steps on every
registered example stay finite (``sgd_maximize`` climbs the loss, so its lr is
small).
"""

from twins.optim.config import OptimizerConfig, optimizer_config

# Biases get no weight decay and twice the lr; every other parameter (a name
# ending in "weight") uses the optimizer-wide options.
NO_DECAY_ON_BIAS = [{"params": ["*bias"], "weight_decay": 0.0, "lr": 0.02},
                    {"params": ["*weight"]}]

CONFIGS: dict[str, OptimizerConfig] = {
    "sgd": optimizer_config("SGD", lr=0.05),
    "sgd_dampening": optimizer_config("SGD", lr=0.05, momentum=0.9, dampening=0.5),
    "sgd_nesterov_wd": optimizer_config("SGD", lr=0.05, momentum=0.9, nesterov=True,
                                        weight_decay=1e-2),
    "sgd_maximize": optimizer_config("SGD", lr=0.002, momentum=0.5, maximize=True),
    "adam_l2": optimizer_config("Adam", lr=0.01, weight_decay=0.1),
    "adam_amsgrad": optimizer_config("Adam", lr=0.01, betas=(0.8, 0.99), eps=1e-6, amsgrad=True),
    "adamw": optimizer_config("AdamW", lr=0.01),
    "adamw_amsgrad_maximize": optimizer_config("AdamW", lr=0.002, weight_decay=0.1, amsgrad=True,
                                               maximize=True),
    "rmsprop": optimizer_config("RMSprop", lr=0.01),
    "rmsprop_centered_mom": optimizer_config("RMSprop", lr=0.002, alpha=0.9, eps=1e-6,
                                                  centered=True, momentum=0.9, weight_decay=1e-2),
    "adagrad": optimizer_config("Adagrad", lr=0.1, lr_decay=0.01, initial_accumulator_value=0.1,
                                weight_decay=1e-2),
    "sgd_clip": optimizer_config("SGD", lr=0.1, momentum=0.9, max_grad_norm=0.3),
    "adam_clip_inf": optimizer_config("Adam", lr=0.01, max_grad_norm=0.1,
                                      grad_norm_type=float("inf")),
    "sgd_steplr": optimizer_config("SGD", lr=0.1, momentum=0.9,
                                   scheduler=("StepLR", {"step_size": 10, "gamma": 0.5})),
    "adam_exponentiallr": optimizer_config("Adam", lr=0.02,
                                           scheduler=("ExponentialLR", {"gamma": 0.97})),
    # T_max 40 < 100 steps: torch's lr rises again after T_max.
    "adam_cosine": optimizer_config("Adam", lr=0.02,
                                    scheduler=("CosineAnnealingLR", {"T_max": 40, "eta_min": 1e-3})),
    "adamw_linearlr": optimizer_config("AdamW", lr=0.02, weight_decay=0.1,
                                       scheduler=("LinearLR", {"start_factor": 0.1,
                                                               "total_iters": 20})),
    "rmsprop_linearlr_mom": optimizer_config(
        "RMSprop", lr=0.004, momentum=0.9,
        scheduler=("LinearLR", {"start_factor": 1.0, "end_factor": 0.2, "total_iters": 50})),
    "sgd_onecycle": optimizer_config("SGD", lr=0.1, momentum=0.9,
                                     scheduler=("OneCycleLR", {"max_lr": 0.1, "total_steps": 100})),
    "adam_onecycle_3phase": optimizer_config(
        "Adam", lr=0.01,
        scheduler=("OneCycleLR", {"max_lr": 0.02, "total_steps": 100, "three_phase": True,
                                  "anneal_strategy": "linear"})),
    "sgd_groups": optimizer_config("SGD", NO_DECAY_ON_BIAS, lr=0.01, momentum=0.9,
                                   weight_decay=0.1),
    "adamw_groups_cos_clip": optimizer_config(
        "AdamW", NO_DECAY_ON_BIAS, lr=0.01, weight_decay=0.1, max_grad_norm=0.5,
        scheduler=("CosineAnnealingLR", {"T_max": 100})),
    "adam_groups_onecycle": optimizer_config(
        "Adam", NO_DECAY_ON_BIAS, lr=0.01,
        scheduler=("OneCycleLR", {"max_lr": [0.02, 0.01], "total_steps": 100,
                                  "base_momentum": [0.8, 0.85]})),
    # Only biases are in a group: torch leaves the weights untouched.
    "sgd_biases_only": optimizer_config("SGD", [{"params": ["*bias"]}], lr=0.05, momentum=0.9),
}
