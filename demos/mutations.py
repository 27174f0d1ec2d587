"""The project's own catalogue of planted bugs (and benign variants) for `python -m demos.mutate`.

Each bug patches the code a demo exercises (samplers, denoisers, processes, workers, the program being
debugged, the behaviour being shown), never its checks; `where` names the function, class or article block
the patch must lie in, and `demos.mutate` refuses entries that do not apply there. A comment per entry says
which check is meant to catch it. Benign variants (other seed, more samples, renamed variables) must pass.

Entries marked `fast` form the CI subset (tests/test_mutate.py): cheap runs, one per concept demo at
least, plus a few of the heavy demos.
"""
from __future__ import annotations

from demos.mutate import Mutation as M

EDM, SDE, DDP, PDB = "edm-sampling", "sde-vs-ode", "ddp-launch", "pdb-transcript"
EDM_SMALL = {"num_samples": 500, "learned": False}
SDE_SMALL = {"num_samples": 600, "sde_steps": 100, "ode_steps": 200, "num_roundtrip": 32}
LT, GEN, MUT, GC, MRO, OBJ, TFX, AG = ("list-tuple", "generator", "mutability", "gc-cycles", "mro",
                                       "object-reference", "tf-export", "autograd")

CATALOGUE: list[M] = [
    # ---- list-tuple -------------------------------------------------------------------------------------
    M("capacity-off-by-one", LT, "bug", "capacity read from getsizeof counts one slot too many",
      "demos/list_tuple.py", "observed_jumps", "(size - empty) // POINTER", "(size - empty) // POINTER + 1",
      fast=True),  # list_resize formula
    M("tuple-sized-as-list", LT, "bug", "tuple growth measured on lists",
      "demos/list_tuple.py", "tuple_growth", "sys.getsizeof(tuple(range(k)))", "sys.getsizeof(list(range(k)))"),
    M("keep-return-value", LT, "bug", "RETURN_VALUE no longer filtered from the bytecode",
      "demos/list_tuple.py", "literal_opnames", '("RESUME", "RETURN_VALUE")', '("RESUME",)'),
    M("tuple-plus-in-place", LT, "bug", "t += (4,) shown on a list instead of a tuple",
      "demos/list_tuple.py", "tuple_edges", "t = (1, 2, 3)", "t = [1, 2, 3]"),
    M("more-appends", LT, "benign", "append up to 500 items", params={"max_len": 500}),
    M("rename", LT, "benign", "rename lst → grown in observed_jumps",
      "demos/list_tuple.py", "observed_jumps", "lst", "grown", rename=True, fast=True),

    # ---- generator --------------------------------------------------------------------------------------
    M("count-twice", GEN, "bug", "running_average counts each value twice",
      "demos/generator.py", "running_average", "count += 1", "count += 2", fast=True),  # exact averages
    M("summary-total", GEN, "bug", "summarize's total adds squares",
      "demos/generator.py", "summarize", "total += item", "total += item * item"),  # StopIteration.value
    M("eager-generator", GEN, "bug", "the 'generator' sum builds a list",
      "demos/generator.py", "sum_generator", "sum(x * x for x in range(n))", "sum([x * x for x in range(n)])"),
    M("yield-from-drops-return", GEN, "bug", "delegator drops the value of yield from",
      "demos/generator.py", "delegator", "result = yield from averager()",
      "yield from averager()\n    result = None"),  # yield from edge case
    M("bigger-n", GEN, "benign", "n = 400000", params={"n": 400_000}),
    M("rename", GEN, "benign", "rename total → acc in running_average",
      "demos/generator.py", "running_average", "total", "acc", rename=True),
    # ---- mutability -------------------------------------------------------------------------------------
    M("append-copies", MUT, "bug", "add_item builds a new list instead of appending",
      "demos/mutability.py", "add_item", "bucket.append(item)", "bucket = bucket + [item]", fast=True),
    M("rebind-mutates", MUT, "bug", "rebind overwrites the caller's list in place",
      "demos/mutability.py", "rebind", "bucket = [100, 200]", "bucket[:] = [100, 200]"),
    M("iadd-as-add", MUT, "bug", "the in-place demo uses items = items + [7]",
      "demos/mutability.py", "in_place_mutations", "items += [7]", "items = items + [7]"),
    M("plus-edge", MUT, "bug", "a = a + [2] written as a += [2]",
      "demos/mutability.py", "plus_vs_iadd", "a = a + [2]\n", "a += [2]\n"),  # the article's edge case
    M("rename", MUT, "benign", "rename bucket → box in add_item",
      "demos/mutability.py", "add_item", "bucket", "box", rename=True),
    # ---- gc-cycles --------------------------------------------------------------------------------------
    M("no-cycle", GC, "bug", "the ring's last link is missing (a chain, freed by refcounting)",
      "demos/gc_cycles.py", "make_ring", "nodes[(i + 1) % size]", "(nodes[i + 1] if i + 1 < size else None)",
      fast=True),
    M("fewer-slots", GC, "bug", "the list holds b twice, not three times",
      "demos/gc_cycles.py", "refcount_steps", "items = [b, b, b]", "items = [b, b]"),
    M("finalizer-no-cycle", GC, "bug", "the __del__ pair is not a cycle",
      "demos/gc_cycles.py", "finalizer_cycle", "x.peer, y.peer = y, x", "x.peer, y.peer = y, y"),
    M("big-ring", GC, "benign", "a ring of 50", params={"cycle_size": 50}),
    M("rename", GC, "benign", "rename watchers → refs in make_ring",
      "demos/gc_cycles.py", "make_ring", "watchers", "refs", rename=True),
    # ---- mro --------------------------------------------------------------------------------------------
    M("tail-from-2", MRO, "bug", "merge checks tails from the third element",
      "demos/mro.py", "merge", "head in other[1:]", "head in other[2:]", fast=True),
    M("no-local-order", MRO, "bug", "linearize drops the list of direct bases from the merge",
      "demos/mro.py", "linearize", "+ [bases]", ""),
    M("last-list-first", MRO, "bug", "merge looks for a good head from the last list",
      "demos/mro.py", "merge", "for seq in seqs:", "for seq in reversed(seqs):"),
    M("dfs-right-first", MRO, "bug", "the classic depth-first order visits bases right to left",
      "demos/mro.py", "dfs_order", "for base in c.__bases__:", "for base in reversed(c.__bases__):"),
    M("other-seed", MRO, "benign", "seed 7, 300 hierarchies", params={"seed": 7, "hierarchies": 300}),
    M("rename", MRO, "benign", "rename seqs → lists in merge",
      "demos/mro.py", "merge", "seqs", "pending", rename=True),
    # ---- object-reference -------------------------------------------------------------------------------
    M("mutate-rebinds", OBJ, "bug", "mutate() rebinds instead of appending",
      "demos/object_reference.py", "mutate", 'items.append("added")', 'items = items + ["added"]', fast=True),
    M("rebind-mutates", OBJ, "bug", "rebind() writes through the caller's list",
      "demos/object_reference.py", "rebind", 'items = ["brand", "new"]', 'items[:] = ["brand", "new"]'),
    M("no-second-name", OBJ, "bug", "the second reference is never taken",
      "demos/object_reference.py", "del_removes_name", "other = r", "other = None"),
    M("deep-is-shallow", OBJ, "bug", "deepcopy replaced by copy",
      "demos/object_reference.py", "aliasing_and_copies", "copy.deepcopy(grid)", "copy.copy(grid)"),
    M("rename", OBJ, "benign", "rename events → log in del_removes_name",
      "demos/object_reference.py", "del_removes_name", "events", "log", rename=True),
    # ---- tf-export --------------------------------------------------------------------------------------
    M("hasattr", TFX, "bug", "already-exported test with hasattr instead of __dict__",
      "demos/tf_export.py", "api_export._set_attr", "attr in symbol.__dict__", "hasattr(symbol, attr)",
      fast=True),  # the subclass case
    M("collect-dir", TFX, "bug", "collect looks at dir(obj), inherited names included",
      "demos/tf_export.py", "ApiRegistry.collect", 'set(getattr(obj, "__dict__", {}))', "set(dir(obj))"),
    M("v1-default-empty", TFX, "bug", "v1 names default to none instead of the v2 names",
      "demos/tf_export.py", "api_export.__init__", "else self._names", "else ()"),
    M("compat-v1-is-v2", TFX, "bug", "tf.compat.v1 built from the v2 table",
      "demos/tf_export.py", "ApiRegistry.build", '("compat.v1.", self.v1)', '("compat.v1.", self.v2)'),
    M("twice-allowed", TFX, "bug", "a second symbol may take an existing name",
      "demos/tf_export.py", "ApiRegistry.add", "table[name] is not symbol", "table[name] is symbol"),
    M("rename", TFX, "benign", "rename node → cursor in _place",
      "demos/tf_export.py", "_place", "node", "cursor", rename=True),
    # ---- autograd ---------------------------------------------------------------------------------------
    M("f-extra-term", AG, "bug", "f gains a linear term the formula does not have",
      "demos/autograd.py", "f", "(x.sin() * x.pow(2)).sum()", "(x.sin() * x.pow(2) + 1e-3 * x).sum()"),
    M("badsquare-fixed", AG, "bug", "BadSquare's backward made correct: gradcheck has nothing to catch",
      "demos/autograd.py", "bad_square", "return grad_out * x", "return grad_out * 2 * x", fast=True),
    M("ones-gradient", AG, "bug", "non-scalar backward with gradient of ones instead of v",
      "demos/autograd.py", "nonscalar_backward", "y.backward(gradient=v)", "y.backward(gradient=torch.ones_like(y))"),
    M("other-input", AG, "benign", "seed 3, size 8", params={"seed": 3, "size": 8}),
    M("rename", AG, "benign", "rename grad → g in central_differences",
      "demos/autograd.py", "central_differences", "grad", "g", rename=True),

    # ---- edm-sampling -----------------------------------------------------------------------------------
    M("heun-weights", EDM, "bug", "Heun's trapezoid weights 0.4/0.6 instead of 0.5/0.5",
      "demos/diffusion.py", "sample_heun", "0.5 * d_cur + 0.5 * d_prime", "0.4 * d_cur + 0.6 * d_prime"),
    M("heun-weights-small", EDM, "bug", "the same at the CI size (500 samples, no learned denoiser)",
      "demos/diffusion.py", "sample_heun", "0.5 * d_cur + 0.5 * d_prime", "0.4 * d_cur + 0.6 * d_prime",
      params=EDM_SMALL, fast=True),  # heun_second_order
    M("small", EDM, "benign", "the CI size: 500 samples, no learned denoiser", params=EDM_SMALL),
    M("heun-skips-two", EDM, "bug", "the correction is also skipped on the step before last",
      "demos/diffusion.py", "sample_heun", "if i < num_steps - 1:", "if i < num_steps - 2:"),  # NFE, σ sequence
    M("correction-at-t-hat", EDM, "bug", "the correction evaluates D at t_hat instead of t_next",
      "demos/diffusion.py", "sample_heun", "denoise(x_next, t_next)", "denoise(x_next, t_hat)"),
    M("euler-at-next", EDM, "bug", "Euler evaluates D at σ_{i+1}",
      "demos/diffusion.py", "sample_euler", "denoise(x_cur, t_cur)", "denoise(x_cur, t_next)"),
    M("schedule-over-n", EDM, "bug", "Eq. 5 divides by N instead of N − 1",
      "demos/diffusion.py", "get_sigmas_karras", "step_indices / (n - 1)", "step_indices / n"),
    M("shrink-without-squares", EDM, "bug", "the posterior shrink uses s_k instead of s_k²",
      "demos/diffusion.py", "GaussianMixture.denoise", "self.stds ** 2 / (self.stds ** 2 + sigma ** 2)",
      "self.stds / (self.stds + sigma ** 2)"),  # Tweedie
    M("responsibility-dimension", EDM, "bug", "responsibilities drop the d in d/2·log var",
      "demos/diffusion.py", "GaussianMixture.log_responsibilities", "- 0.5 * self.dim * var.log()",
      "- 0.5 * var.log()"),  # Tweedie
    M("means-scaled", EDM, "bug", "the denoiser pulls toward 0.99·μ_k",
      "demos/diffusion.py", "GaussianMixture.denoise", "(resp * (1 - shrink)) @ self.means",
      "0.99 * (resp * (1 - shrink)) @ self.means"),  # Tweedie
    M("c-skip-unsquared", EDM, "bug", "c_skip with σ_data instead of σ_data²",
      "demos/diffusion_learned.py", "EDMPrecond.coefficients", "self.sigma_data ** 2 / (sigma ** 2",
      "self.sigma_data / (sigma ** 2"),  # preconditioning_table1
    M("c-out-no-root", EDM, "bug", "c_out without the square root",
      "demos/diffusion_learned.py", "EDMPrecond.coefficients", "c_out = sigma * self.sigma_data / (sigma ** 2 + self.sigma_data ** 2).sqrt()",
      "c_out = sigma * self.sigma_data / (sigma ** 2 + self.sigma_data ** 2)"),  # table1, λ c_out² = 1
    M("c-in-unsquared", EDM, "bug", "c_in with σ_data instead of σ_data²",
      "demos/diffusion_learned.py", "EDMPrecond.coefficients", "1 / (self.sigma_data ** 2 + sigma ** 2)",
      "1 / (self.sigma_data + sigma ** 2)"),
    M("c-noise-half", EDM, "bug", "c_noise = ln σ / 2",
      "demos/diffusion_learned.py", "EDMPrecond.coefficients", "sigma.log() / 4", "sigma.log() / 2"),
    M("loss-weight-unsquared", EDM, "bug", "λ(σ) divides by σ σ_data, not its square",
      "demos/diffusion_learned.py", "loss_weight", "(sigma * sigma_data) ** 2", "(sigma * sigma_data)"),
    M("p-std", EDM, "bug", "training draws ln σ with P_std = 1.0",
      "demos/diffusion_learned.py", "train_denoiser", "P_std: float = 1.2", "P_std: float = 1.0"),  # KS
    M("p-mean-sign", EDM, "bug", "ln σ = ε P_std − P_mean",
      "demos/diffusion_learned.py", "draw_loss_terms", "rnd_normal * P_std + P_mean", "rnd_normal * P_std - P_mean"),
    M("other-seed", EDM, "benign", "seed 1", params={"seed": 1}),
    M("more-samples", EDM, "benign", "4000 samples", params={"num_samples": 4000}),
    M("rename-heun", EDM, "benign", "rename d_cur → slope in sample_heun",
      "demos/diffusion.py", "sample_heun", "d_cur", "slope", rename=True),
    M("rename-precond", EDM, "benign", "rename c_skip → w_skip in EDMPrecond.forward",
      "demos/diffusion_learned.py", "EDMPrecond.forward", "c_skip", "w_skip", rename=True),

    # ---- sde-vs-ode -------------------------------------------------------------------------------------
    M("em-noise-low", SDE, "bug", "Euler–Maruyama injects 0.8 g² h of variance instead of g² h",
      "demos/diffusion_sde.py", "sample_euler_maruyama", "math.sqrt(process.g2(t_cur) * h) * z",
      "math.sqrt(0.8 * process.g2(t_cur) * h) * z"),  # marginals on the way
    M("em-drift-sign", SDE, "bug", "the reverse SDE's f(t) x term with the wrong sign",
      "demos/diffusion_sde.py", "sample_euler_maruyama", "drift = process.f(t_cur) * x", "drift = -process.f(t_cur) * x"),
    # Not listed: evaluating the score at t_{i+1} instead of t_i. It is a time shift of O(h), a convergent
    # first-order scheme still; at 250 steps no distribution check can tell it from the right one.
    M("em-score-weak", SDE, "bug", "the reverse SDE's score term weighted 0.8 g² instead of g²",
      "demos/diffusion_sde.py", "sample_euler_maruyama", "- score_scale * process.g2(t_cur)",
      "- 0.8 * score_scale * process.g2(t_cur)"),
    M("ode-euler", SDE, "bug", "the probability-flow ODE drops Heun's correction",
      "demos/diffusion_sde.py", "integrate_pf_ode", "x = x + h * (0.5 * d_cur + 0.5 * d_prime)", "x = x + h * d_cur"),
    M("vp-f", SDE, "bug", "VP drift coefficient −0.45 β(t)",
      "demos/diffusion_sde.py", "VPSDE.f", "-0.5 * (", "-0.45 * ("),
    M("vp-g2", SDE, "bug", "VP diffusion g² = β_min + t β_max",
      "demos/diffusion_sde.py", "VPSDE.g2", "t * (self.beta_max - self.beta_min)", "t * self.beta_max"),
    M("vp-sigma", SDE, "bug", "VP σ(t) = √B(t) instead of √(e^B − 1)",
      "demos/diffusion_sde.py", "VPSDE.sigma", "math.sqrt(math.expm1(self.B(t)))", "math.sqrt(self.B(t))"),
    M("vp-integral", SDE, "bug", "∫β = β_min t + t² (β_max − β_min), the ½ lost",
      "demos/diffusion_sde.py", "VPSDE.B", "0.5 * t * t", "t * t"),
    M("ve-g2", SDE, "bug", "VE g² without the factor 2",
      "demos/diffusion_sde.py", "VESDE.g2", "2 * math.log(", "math.log("),
    M("ve-sigma", SDE, "bug", "VE σ(t) with t instead of 2t in the exponent",
      "demos/diffusion_sde.py", "VESDE.sigma", "2 * t * math.log", "t * math.log"),
    M("score-no-scale", SDE, "bug", "the score forgets the 1/s(t) factor",
      "demos/diffusion_sde.py", "score", "(s * sigma ** 2)", "(sigma ** 2)"),
    M("prior-unscaled", SDE, "bug", "latents drawn with std σ(1) instead of s(1) σ(1)",
      "demos/diffusion_sde.py", "prior_std", "process.s(1.0) * process.sigma(1.0)", "process.sigma(1.0)"),
    M("em-drift-sign-small", SDE, "bug", "the f(t) x sign bug at the CI size (600 samples, 100/200 steps)",
      "demos/diffusion_sde.py", "sample_euler_maruyama", "drift = process.f(t_cur) * x", "drift = -process.f(t_cur) * x",
      params=SDE_SMALL, fast=True),
    M("small", SDE, "benign", "the CI size: 600 samples, 100 SDE and 200 ODE steps", params=SDE_SMALL),
    M("other-seed", SDE, "benign", "seed 1", params={"seed": 1}),
    M("rename", SDE, "benign", "rename drift → mu in sample_euler_maruyama",
      "demos/diffusion_sde.py", "sample_euler_maruyama", "drift", "mu", rename=True),
    # ---- ddp-launch -------------------------------------------------------------------------------------
    M("l1-loss", DDP, "bug", "the worker trains on L1 instead of MSE (a bug the old shared reference shared)",
      "demos/ddp_worker.py", "sgd_step", "torch.nn.functional.mse_loss(model(x), y)",
      "torch.nn.functional.l1_loss(model(x), y)", fast=True),  # first_update_from_own_autograd
    M("relu", DDP, "bug", "the worker's MLP uses ReLU",
      "demos/ddp_worker.py", "make_model", "torch.nn.Tanh()", "torch.nn.ReLU()"),
    M("noisier-data", DDP, "bug", "the worker's dataset has 0.2 noise",
      "demos/ddp_worker.py", "make_dataset", "0.1 * torch.randn", "0.2 * torch.randn"),
    M("epoch-not-set", DDP, "bug", "set_epoch(0) every epoch: the same order twice",
      "demos/ddp_worker.py", "train", "sampler.set_epoch(epoch)", "sampler.set_epoch(0)"),
    M("lr-times-world", DDP, "bug", "SGD learning rate multiplied by the world size",
      "demos/ddp_worker.py", "train", "lr=args.lr)", "lr=args.lr * world)"),
    M("loss-summed", DDP, "bug", "the recorded global loss is the ranks' sum",
      "demos/ddp_worker.py", "train", 'loss_t.item() / world', "loss_t.item()"),
    M("no-shuffle", DDP, "bug", "DistributedSampler without shuffling",
      "demos/ddp_worker.py", "train", "shuffle=True", "shuffle=False"),
    M("seed-passed-wrong", DDP, "bug", "the launcher passes seed + 1 to the workers",
      "demos/ddp_launch.py", "torchrun_command", '"--seed", str(seed)', '"--seed", str(seed + 1)'),
    M("other-seed", DDP, "benign", "seed 3", params={"seed": 3}),
    M("rename", DDP, "benign", "rename local_loss → part_loss in train",
      "demos/ddp_worker.py", "train", "local_loss", "part_loss", rename=True),
    # ---- pdb-transcript ---------------------------------------------------------------------------------
    M("loop-from-2", PDB, "bug", "the article's sum_squares starts at 2",
      "articles/python-pdb.md", "utils.py", "range(1, n + 1)", "range(2, n + 1)"),
    M("y-is-5", PDB, "bug", "the article's main sets y = 5",
      "articles/python-pdb.md", "pdb_demo.py", "    y = 4\n", "    y = 5\n"),
    M("buggy-extra-value", PDB, "bug", "buggy.py's group a gets a fourth value",
      "articles/python-pdb.md", "buggy.py", '"a": [1, 2, 3]', '"a": [1, 2, 3, 4]'),
    M("breakpoint-after", PDB, "bug", "breakpoint() inserted after `totals = []`",
      "demos/pdb_transcript.py", "with_breakpoint", "lines[:at] + [indent + \"breakpoint()\"] + lines[at:]",
      "lines[:at + 1] + [indent + \"breakpoint()\"] + lines[at + 1:]"),
    M("product", PDB, "bug", "the session prints a * b instead of a + b",
      "demos/pdb_transcript.py", "build_sessions", '"p a + b"', '"p a * b"', fast=True),
    M("condition-2", PDB, "bug", "the conditional breakpoint fires at i == 2",
      "demos/pdb_transcript.py", "build_sessions", "i == 3", "i == 2"),
    M("path-not-hidden", PDB, "bug", "the run folder is not shown as /path/to",
      "demos/pdb_transcript.py", "run_session", "out = out.replace(d, SHOWN_DIR)", "out = out.replace(d, d)"),
    M("rename", PDB, "benign", "rename lines → rows in with_breakpoint",
      "demos/pdb_transcript.py", "with_breakpoint", "lines", "rows", rename=True),
]
