"""The knobs of the AutoLRS method, with the paper's reference values and our default.

Every way in which our default departs from the reference implementation is one named field,
so that a benchmark can switch it alone and show what it buys (`autolrs bench --ablate FIELD`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal

from autolrs.core.config_checks import at_least, in_range, is_real, positive_int
from autolrs.core.presets import _PAPER, _RAMP, _STAGEWISE, _UPWARD

__all__ = ["DELETED_FIELDS", "Config"]

DELETED_FIELDS = frozenset({"converged_decades"})
"""Fields that were removed (each lost in ablation and was off in both presets); a saved config
that names one still loads, without it. ``converged_decades`` ended a stage's search once the
searcher proposed a rate next to one already tried."""

Acquisition = Literal["lcb", "ei"]
Objective = Literal["paper", "train", "validation"]
ForecasterName = Literal["paper", "robust"]
Selection = Literal["observed", "posterior"]
DivergedValue = Literal["penalty", "worst"]
SearcherName = Literal["grid", "paper"]


@dataclass(frozen=True)
class Config:
    """Configuration of the AutoLRS controller.

    ``Config()`` is autolrs' default (our improved method); ``Config.paper()`` reproduces the
    reference implementation of Jin et al. (ICLR 2021). Fields are grouped as they act.

    Stage structure: training runs in stages; a stage tries ``candidates`` learning rates for
    ``trial_steps`` each (tau'), then trains ``tau`` steps with the best one (the exploit phase).

    Attributes:
        tau: Exploit steps of the first stage when ``total_steps`` is not given (paper: 1000).
        tau_fraction: Exploit steps of the first stage as a fraction of ``total_steps`` when it is
            given (the benchmark's rule for the paper preset: 1/30, so that four doubling stages
            fill the budget exactly).
        trial_fraction: tau' / tau, the length of one trial relative to the exploit phase
            (paper: 0.1).
        first_trial_fraction: tau' / tau in the first stage (None: ``trial_fraction``): short
            trials from near the initial model are less biased towards small rates.
        min_trial_steps: Lower bound on tau' (a forecast needs a few points).
        candidates: Learning rates tried per stage, k (paper: 10).
        later_candidates: Learning rates tried in every stage after the first (None: as
            ``candidates``; paper: None). Fewer candidates later cut the search's cost once the
            first stage has located the good region. An option of the trials phase only; off in
            both presets (it lost in ablation) and kept for cheaper later searches.
        stage_candidates: With a budget (``total_steps``), the candidates of each stage, by
            stage (the last entry repeats); overrides ``candidates`` and ``later_candidates``
            (which still rule runs without a budget). A stage with one candidate does
            not search: it trains on at the previous stage's rate (the first stage: the
            optimizer's rate with ``try_optimizer_lr``, else the top of the range the range test
            found), so that a search can be placed where it pays, e.g. ``(1, 3, 1)``: hold, one
            search, hold (paper: None).
        tau_growth: Factor by which tau (and tau') grow after each stage (paper: 2).
        tau_max_factor: tau stops growing at this multiple of the first stage's tau (paper: 8,
            i.e. 1000 -> 8000).
        acquisition: ``"lcb"`` (lower confidence bound, mu - kappa*sigma; paper) or ``"ei"``
            (expected improvement).
        kappa: LCB exploration weight (paper: 1e6, which makes the search a space-filling design).
        xi: EI exploration margin, in units of the normalised objective.
        initial_random: Candidates per stage drawn log-uniformly before the GP is used (paper: 1).
        gp_restarts: Restarts of the GP's marginal-likelihood fit from random hyper-parameters.
            scikit-optimize asks for 2, but the original's recorded proposals are those of the
            single fit from the kernel's initial values (with 2 restarts under today's
            scikit-learn two of the four reference cases move by half a decade), so both presets
            use 0. In one dimension with a handful of points a single fit proposed the same rate
            as two restarts in 159 of 180 synthetic asks (the rest at most 0.3 decades away) at
            37 % of the cost.
        searcher: How proposals are made. ``"grid"``: the GP's targets standardised, the
            acquisition minimised over 1,001 grid points, never next to a rate already tried.
            ``"paper"``: the reference code's scikit-optimize loop (targets centred only,
            10,000 random points then L-BFGS-B, a repeated rate told again and re-asked, at most
            10 times); see :class:`~autolrs.core.search.PaperBayesSearcher`.
        warm_start: Seed each stage's GP with the previous stage's observations, their values
            re-centred (paper: False, a fresh GP every stage).
        trust_region: After the first stage, search only ``[lr/trust_region, lr*trust_region]``
            around the previous stage's learning rate, clipped to the range (paper: None).
        start_at_previous: After the first stage, the first candidate is the previous stage's
            learning rate instead of a random draw (paper: False).
        try_optimizer_lr: The first stage's first candidate is the optimizer's own learning rate
            (the one the user wrote; with ``expand_factor``, the point of the search's grid
            nearest it), when the range test found it below half the rate where
            training diverged; the first stage's range reaches up to it. A choice within forecast
            noise of it then goes to the larger rate as usual (paper: False).
        search_upward: With ``try_optimizer_lr`` and a budget, a search that follows a stage
            holding the optimizer's own rate tries only rates above it (``[lr, lr *
            trust_region]``, below half a rate known to break training). A short trial favours
            small rates (the short-horizon bias: their lower noise reads as progress), so a
            smaller rate that wins one is weak evidence and a larger one strong evidence; lower
            rates are reached through the stage guard (instability) and the overfitting guard
            (validation) instead (paper: False).
        expand_factor: With a budget, the first stage's search steps outward from one step
            below the range test's pick (``expand_from_range``) or the optimizer's rate, moved to
            the nearest power of this factor (later searches, where
            ``stage_candidates`` has them, from the committed rate, upward only) by this factor
            (``autolrs.core.expand``): up while each step beats its inner neighbour, else down
            likewise (and on through ties with the best), never above half a rate known
            to break training nor below the range the range test found. The optimizer's rate
            is a hint: this reaches the rate that trains best from two decades away. None: the
            search covers ``[lr, lr * trust_region]`` above the held rate with the searcher
            (paper: None).
        expand_from_range: The first search starts one ``expand_factor`` step below the pick
            of a range the range test found (:meth:`~autolrs.core.space.SearchSpace.pick`), on
            the grid, not at the optimizer's rate: the range test does not depend on that rate,
            so neither does the run. The optimizer's rate is used where the sweep's loss did not
            fall clearly (a pre-trained model, a noisy loss), a range is given, a first stage
            holds or no search fits the budget (paper: no effect).
        expand_steps: Steps of the expanding search at most either way (the first search may
            probe one more upward, to see whether it breaks; the probe never wins).
        expand_margin: By how much (relative) a step of the expanding search must beat its
            inner neighbour for the search to go on in that direction.
        keep_incumbent_within: In such an upward search, the held rate stays unless a larger
            one scores better by more than this fraction (relative); ``prefer_larger_within``
            does not apply there (paper: None).
        select: Which learning rate a stage exploits: ``"observed"`` (argmin of the candidates'
            forecasts; paper) or ``"posterior"`` (the candidate with the lowest GP posterior
            mean, which discounts a single lucky forecast).
        prefer_larger_within: With ``select="observed"``, exploit the largest learning rate whose
            score lies within this fraction of the best score (relative): short trials favour
            small rates, whose lower noise reads as progress, so a near-tie goes to the larger
            rate (paper: None, the plain argmin).
        diverged_value: What the GP is told for a diverged candidate: ``"penalty"`` (1e6; paper)
            or ``"worst"`` (the worst finite forecast of the stage plus its spread).
        objective: Loss series a trial is judged by: ``"paper"`` (training loss until tau reaches
            its maximum, validation loss after), ``"train"`` or ``"validation"`` (training loss
            is used wherever no ``val_fn`` was given).
        val_points: Validation evaluations per trial in validation mode (paper: 16).
        forecaster: ``"paper"`` (spline de-noising + a*exp(b*t)+c fitted by Nelder-Mead from
            b=-1, unbounded) or ``"robust"`` (the same model with a bounded rate grid, c >= 0 for
            non-negative losses and a fallback when the fit is poor).
        keep_winner: Keep the best candidate's trained state and continue it for tau - tau'
            steps instead of retraining the stage from the snapshot (paper: False).
        divergence_factor: Abort a trial as soon as its loss exceeds this multiple of the loss
            at the start of the stage (paper: None; a non-finite loss always aborts a trial).
        early_stop_fraction: After this fraction of a trial, stop it early when even an
            optimistic forecast cannot beat the stage's best candidate (paper: None).
        anneal_fraction: End every trial with a linear decay of its learning rate over this
            fraction of its steps and judge it by its loss after the decay (no extrapolation),
            so that small rates, whose lower noise looks like progress in a short trial, are
            compared with large ones on progress alone (paper: None). An option of the trials
            phase only; off in both presets (it lost in ablation) and kept for cooled trials.
        stage_guard: Roll a stage back when, half-way through or at the end of its exploit
            phase, the mean of its last 8 losses lies more than this many standard errors (and
            2 %) above the loss at the stage's start: the chosen rate made things worse (short
            trials can miss a rate that destroys the model later). The next best candidate
            takes over, and later stages search below half that rate (paper: None).
        overfit_guard: With a validation function and a budget, the exploit and final phases
            evaluate it every ``total_steps / 20`` steps; when the validation loss lies more than
            this fraction above the best seen so far at three checks in a row while the training
            loss lies below its level at that best check, the model has started to overfit
            (``autolrs.core.overfitting``): the model goes back to the state of the lowest validation loss (kept in
            memory, one more copy of model and optimizer state), the search ends, the rate
            decays to zero over a twentieth of the budget and stays there: early stopping,
            as a schedule (paper: None).
        ramp_segment_fraction: With a budget and ``expand_factor``, the first stage's rate is
            found by a ramp (``autolrs.core.phases.ramp``) whose segments each take this
            fraction of the budget: the rate rises by ``expand_factor`` per segment from the
            range's low end while each segment lowers the validation loss; the first that does
            not is rolled back (its steps are the only ones discarded) and the first stage
            searches around the rate ``ramp_edge_steps`` steps below it (None: no ramp; the
            first stage searches as ``expand_from_range`` says).
        ramp_edge_steps: How many ``expand_factor`` steps below the first rate that did not
            help the ramp settles.
        ramp_max_fraction: The ramp ends after at most this fraction of the budget.
        small_budget_ramp: Where ``discard_budget`` cannot pay for the range test and two
            losing trials of the first search (about 150 to 400 steps: below, the ramp has no
            room to climb 100x either way of the optimizer's rate), a ramp with segments of this
            fraction of the budget replaces both, and the rate it settles at is held (None:
            never; ``autolrs.core.phases.ramp``).
        discard_budget: With a budget, the share of it the search may throw away (range test,
            the ramp's failed segment, losing trials): a stage tries only as many candidates
            as the rest of this share pays for (all but the winner's trial; the winner's is
            thrown away too when it was not the last one run, so one trial more at most), and
            holds its rate when it pays for none (None: no bound; the guards' rollbacks are not
            counted).
        range_test_steps: Length of the learning-rate range test that finds ``lr_range`` when
            none is given (at most; see ``range_test_fraction``).
        range_test_fraction: With ``total_steps``, the range test takes at most this fraction of
            the budget (and at least 20 steps).
        range_test_bounds: Learning rates the range test sweeps, exponentially.
        range_decades: Width of the search range found by the range test, in decades.
        edge_shift: When a stage commits a rate in the top (bottom) tenth of the search range's
            log width, later stages search a range shifted up (down) by this factor: the range
            test's guess was too low (high). Only for a range the range test found (a given
            ``lr_range`` is a bound), never above half a rate that diverged in the range test or
            failed a stage (paper: None, a fixed range).
        range_headroom: The range ends at this multiple of the rate where the sweep's smoothed
            loss was lowest (capped at the rate where it diverged).
        final_decay_fraction: With ``total_steps``, the last fraction of the budget decays the
            learning rate linearly to zero from the last stage's choice (paper: 0).
        max_rollbacks: Consecutive rollbacks after non-finite losses before autolrs gives up
            with :class:`~autolrs.exceptions.DivergenceError`.
        warmup_steps: Steps of linear warm-up before anything else (the original callback's
            optional ``warmup_steps``; 0, off, in both presets): step ``i`` (0-based) trains at
            ``warmup_lr * (i + 1) / warmup_steps``. The steps count as spent.
        warmup_lr: The rate the warm-up ends at; required when ``warmup_steps`` > 0.
        warmup_fraction: With a budget and no ``warmup_steps``, a warm-up over this fraction of
            it, ending at ``warmup_lr`` or else at the optimizer's own rate (what a schedule's
            2 % warm-up does; without it the first stage would jump from the range test's small
            rates straight to that rate) (paper: 0).

    Raises:
        ValueError: If a field is out of range; the message names the field, the value and the
            accepted values.

    Example:
        >>> Config.paper().candidates
        10
        >>> Config(candidates=6).candidates
        6
    """

    # Stage structure.
    tau: int = 1000
    tau_fraction: float = 0.08
    trial_fraction: float = 0.1
    first_trial_fraction: float | None = 0.0625
    min_trial_steps: int = 10
    candidates: int = 6
    later_candidates: int | None = None
    stage_candidates: tuple[int, ...] | None = (6, 1)
    tau_growth: float = 2.0
    tau_max_factor: float = 8.0
    # Search.
    acquisition: Acquisition = "lcb"
    kappa: float = 2.0
    xi: float = 0.01
    initial_random: int = 1
    gp_restarts: int = 0
    warm_start: bool = False
    trust_region: float | None = 3.0
    start_at_previous: bool = True
    try_optimizer_lr: bool = True
    search_upward: bool = True
    expand_factor: float | None = 10.0**0.5
    expand_from_range: bool = True
    expand_steps: int = 4
    expand_margin: float = 0.02
    ramp_segment_fraction: float | None = None
    ramp_edge_steps: int = 2
    ramp_max_fraction: float = 0.3
    small_budget_ramp: float | None = 0.025
    discard_budget: float | None = 0.1
    keep_incumbent_within: float | None = 0.02
    select: Selection = "observed"
    prefer_larger_within: float | None = 0.05
    diverged_value: DivergedValue = "worst"
    searcher: SearcherName = "grid"
    # Objective and forecast.
    objective: Objective = "validation"
    val_points: int = 16
    forecaster: ForecasterName = "robust"
    # Trials.
    keep_winner: bool = True
    divergence_factor: float | None = 3.0
    early_stop_fraction: float | None = 0.5
    anneal_fraction: float | None = 0.33
    stage_guard: float | None = 3.5
    overfit_guard: float | None = 0.1
    # Learning-rate range test.
    range_test_steps: int = 100
    range_test_fraction: float = 0.03
    range_test_bounds: tuple[float, float] = (1e-7, 10.0)
    range_decades: float = 3.0
    range_headroom: float = 0.5
    edge_shift: float | None = None
    # Budget.
    final_decay_fraction: float = 0.35
    max_rollbacks: int = 5
    # Warm-up.
    warmup_steps: int = 0
    warmup_lr: float | None = None
    warmup_fraction: float = 0.02

    def __post_init__(self) -> None:
        self._check_choices()
        self._check_counts()
        self._check_numbers()
        self._check_bounds()

    def _check_choices(self) -> None:
        choices = {
            "acquisition": ("lcb", "ei"),
            "select": ("observed", "posterior"),
            "diverged_value": ("penalty", "worst"),
            "objective": ("paper", "train", "validation"),
            "forecaster": ("paper", "robust"),
            "searcher": ("grid", "paper"),
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"Config.{name} must be one of {allowed}, got {value!r}")

    def _check_counts(self) -> None:
        positive_int(self, "tau")
        positive_int(self, "min_trial_steps", minimum=2)
        positive_int(self, "candidates", minimum=2)
        if self.later_candidates is not None:
            positive_int(self, "later_candidates", minimum=1)
        if self.stage_candidates is not None:
            counts = self.stage_candidates
            if (
                not isinstance(counts, (tuple, list))
                or not counts
                or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in counts)
            ):
                raise ValueError(
                    "Config.stage_candidates must be a non-empty sequence of integers >= 1 "
                    f"(candidates per stage, the last repeating), got {counts!r}"
                )
            object.__setattr__(self, "stage_candidates", tuple(counts))
        positive_int(self, "initial_random", minimum=1)
        positive_int(self, "gp_restarts", minimum=0)
        positive_int(self, "val_points", minimum=3)
        positive_int(self, "range_test_steps", minimum=10)
        positive_int(self, "max_rollbacks", minimum=0)
        positive_int(self, "expand_steps")
        positive_int(self, "warmup_steps", minimum=0)
        positive_int(self, "ramp_edge_steps", minimum=0)
        if self.warmup_lr is not None:
            at_least(self, "warmup_lr", 0.0, strict=True)
        elif self.warmup_steps > 0:
            raise ValueError(
                f"Config.warmup_lr must be given (a rate > 0) when "
                f"warmup_steps={self.warmup_steps}; it is the rate the linear warm-up ends at"
            )

    def _check_numbers(self) -> None:
        in_range(self, "tau_fraction", 0.0, 1.0)
        in_range(self, "trial_fraction", 0.0, 1.0)
        in_range(self, "first_trial_fraction", 0.0, 1.0, optional=True)
        in_range(self, "range_test_fraction", 0.0, 0.5)
        in_range(self, "final_decay_fraction", 0.0, 0.9, closed_low=True)
        in_range(self, "warmup_fraction", 0.0, 0.5, closed_low=True)
        at_least(self, "tau_growth", 1.0)
        at_least(self, "tau_max_factor", 1.0)
        at_least(self, "range_decades", 0.5)
        at_least(self, "kappa", 0.0)
        at_least(self, "xi", 0.0)
        at_least(self, "trust_region", 1.0, strict=True, optional=True)
        at_least(self, "divergence_factor", 1.0, strict=True, optional=True)
        in_range(self, "early_stop_fraction", 0.0, 1.0, optional=True)
        in_range(self, "prefer_larger_within", 0.0, 1.0, optional=True)
        in_range(self, "keep_incumbent_within", 0.0, 1.0, closed_low=True, optional=True)
        in_range(self, "anneal_fraction", 0.0, 0.9, optional=True)
        at_least(self, "expand_factor", 1.0, strict=True, optional=True)
        at_least(self, "expand_margin", 0.0)
        in_range(self, "ramp_segment_fraction", 0.0, 0.2, optional=True)
        in_range(self, "small_budget_ramp", 0.0, 0.2, optional=True)
        in_range(self, "ramp_max_fraction", 0.0, 0.9)
        in_range(self, "discard_budget", 0.0, 0.5, optional=True)
        at_least(self, "range_headroom", 0.01, strict=False)
        at_least(self, "edge_shift", 1.0, strict=True, optional=True)
        at_least(self, "stage_guard", 0.0, strict=True, optional=True)
        at_least(self, "overfit_guard", 0.0, strict=True, optional=True)

    def _check_bounds(self) -> None:
        bounds = self.range_test_bounds
        if (
            not isinstance(bounds, (tuple, list))
            or len(bounds) != 2
            or not all(is_real(b) for b in bounds)
            or not 0 < bounds[0] < bounds[1] < math.inf
        ):
            raise ValueError(
                f"Config.range_test_bounds must be two numbers with 0 < low < high, got {bounds!r}"
            )
        object.__setattr__(self, "range_test_bounds", (float(bounds[0]), float(bounds[1])))

    # ------------------------------------------------------------------ presets
    @classmethod
    def paper(cls, **overrides: Any) -> Config:
        """The reference method of Jin et al. (ICLR 2021), as its official code behaves.

        tau=1000 doubling to 8000, tau'=tau/10, k=10, LCB with kappa=1e6, one random initial
        point, a fresh GP every stage searched as scikit-optimize does, exploration discarded
        (the winner is retrained from the stage snapshot), the best observed forecast wins, a
        diverged trial scores 1e6, training loss for stages 1-4 and validation loss (16 points
        per trial) afterwards, the original's forecaster
        (:func:`~autolrs.core.forecast.paper_forecast`). What still differs from the original,
        and why, is listed in ``docs/paper-fidelity.md``.

        Args:
            **overrides: Fields to change from the reference values.
        """
        return cls(**{**_PAPER, **overrides})

    @classmethod
    def ramp(cls, **overrides: Any) -> Config:
        """An experimental variant of the default: no range test; a ramp trains from 100x below
        the optimizer's rate upward (``ramp_segment_fraction``) and the stages search upward
        from where it settled; the search throws away at most ``discard_budget`` of the budget
        (8 %). Start-independent and cheap under 500 steps, but it settles too low on some
        workloads (fashion-cnn from SGD 0.1: 0.38 against the default's 0.29); measured in
        ``docs/method.md``, not the default.

        Args:
            **overrides: Fields to change from those values.
        """
        return cls(**{**_RAMP, **overrides})

    @classmethod
    def upward(cls, **overrides: Any) -> Config:
        """autolrs' default in version 0.2: warm up to the optimizer's rate, hold it, search
        once above it (at most ``trust_region`` = 3x, Bayesian), hold and decay. Its result
        depends on the optimizer's rate (it never looks below it, nor beyond 3x above); kept
        for comparison (``docs/method.md``).

        Args:
            **overrides: Fields to change from those values.
        """
        return cls(**{**_UPWARD, **overrides})

    @classmethod
    def stagewise(cls, **overrides: Any) -> Config:
        """autolrs' default in version 0.1: the paper's stage-wise greedy search, improved.

        Every stage searches (6 candidates; tau = 1/30 of the budget, doubling; tau' = tau/10),
        trials are judged by their training loss forecast to the stage's end (the validation
        loss once tau stops growing), and no overfitting guard. Kept for comparison and for
        runs that want a search in every stage; the measurements that replaced it are in
        ``docs/method.md``.

        Args:
            **overrides: Fields to change from those values.
        """
        return cls(**{**_STAGEWISE, **overrides})

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON-safe primitives."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["range_test_bounds"] = list(self.range_test_bounds)
        if self.stage_candidates is not None:
            out["stage_candidates"] = list(self.stage_candidates)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Rebuilds a config from :meth:`to_dict`'s output.

        Fields deleted since (:data:`DELETED_FIELDS`) are accepted and dropped, so that states
        saved before still load.

        Raises:
            ValueError: If ``data`` names a field that does not exist (and never did).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k not in DELETED_FIELDS}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown Config field(s) {unknown}; known fields: {sorted(names)}")
        values = dict(data)
        if "range_test_bounds" in values:
            values["range_test_bounds"] = tuple(values["range_test_bounds"])
        if values.get("stage_candidates") is not None:
            values["stage_candidates"] = tuple(values["stage_candidates"])
        return cls(**values)

    def diff(self, other: Config) -> dict[str, tuple[Any, Any]]:
        """Fields whose values differ from ``other``: ``{name: (self's, other's)}``."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}

