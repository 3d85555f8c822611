"""What the language knows by name: keys of each block, connectivities, distributions, tasks,
rule symbols and functions. The resolver, the checks and the docs read these tables."""

from __future__ import annotations

NETWORK_KEYS = ("dt", "seed", "precision", "dale", "spectral_radius")
POPULATION_KEYS = ("tau", "activation", "bias", "noise", "x0", "sign", "learn_bias", "bias_phase", "bias_bounds")
CELLTYPE_EXTRA_KEYS = ("compartments",)  # plus COMPARTMENT_gain
PROJECTION_KEYS = ("init", "delay", "learn", "bounds", "normalize", "gain", "autapses", "name", "phase", "carry")
# What a projection delivers: the source's rate, or its error (target - rate) where the task gives a target
CARRIES = ("rate", "error")
PHASE_KEYS = ("steps", "nudge", "beta", "clamp", "couple", "couple_gain", "couple_clip", "couple_from")
RUN_KEYS = ("task", "inputs", "targets", "trials", "batch", "steps", "record", "seed")

# name -> (parameter names in order, number of required parameters)
CONNECTIVITIES = {
    "dense": ((), 0),
    "sparse": (("p",), 1),
    "fixed_in": (("k",), 1),
    "one_to_one": ((), 0),
    "mask": (("file",), 1),
    "weights": (("file",), 1),
    "transpose": (("of", "scale"), 1),  # tied: scale * (the weights of projection `of`)^T, always
}

DISTRIBUTIONS = {
    "constant": (("c",), 1),
    "uniform": (("a", "b"), 2),
    "normal": (("mu", "sigma"), 2),
    "halfnormal": (("sigma",), 1),
    "lognormal": (("mu", "sigma"), 2),
    "gamma": (("k", "theta"), 2),
}

# Tasks of the run block: name -> {parameter: default}; a default of REQUIRED must be given.
REQUIRED = object()
# What each task does with them: docs/tasks.md and eigraph/runtime/tasks/. A default of None means
# "worked out by the task" (catch: one catch trial per set of conditions, as in pycog).
TASKS = {
    "digits": {},
    "spirals": {"arms": 4, "points": 2000, "noise": 0.16},
    "decision": {"coherences": [0.032, 0.064, 0.128, 0.256, 0.512], "catch": None, "noise": 0.01},
    "context": {"coherences": [0.05, 0.15, 0.5], "catch": None, "noise": 0.01},
    "forecast": {"signal": "sine", "noise": 0.025, "washout": 50},
    "data": {"file": REQUIRED},
    "neurogym": {"name": REQUIRED},
}

# Rule bodies.
RULE_SYMBOLS = ("pre", "post", "w", "target", "reward", "reward_baseline", "dt", "t", "sign")
POST_STATE = ("x", "fprime")  # post.x, post.fprime (f'(x), the activation's derivative)
RULE_FUNCTIONS = {  # name -> number of arguments
    "exp": 1, "log": 1, "sqrt": 1, "abs": 1, "tanh": 1, "sigmoid": 1, "relu": 1, "heaviside": 1,
    "clip": 3, "min": 2, "max": 2, "mean": 1,
    "top_fraction": 2, "bernoulli": 1, "uniform": 0,  # over the post population (extensions)
}
# Functions of rule equations only: not in a value or an initial value (R613).
RULE_ONLY_FUNCTIONS = ("mean", "top_fraction", "bernoulli", "uniform")
RULE_TIMINGS = ("step", "trial")
WEIGHT_CHANGE = "dw"
