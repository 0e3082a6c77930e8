"""A latency budget around a policy: every prediction's stage timings are checked, the verdict travels with it."""

from __future__ import annotations

import dataclasses
from typing import Optional

from policies.api.interface import ChunkContinuation, Conventions, Observation, Policy, PolicyOutput
from runtime.core.budgets import LatencyBudget


class BudgetedPolicy:
    """``policy`` with ``budget`` observed on each output's ``timings_ms``; ``budget_over`` says whether a stage
    was over its limit. Without a budget, the policy as it is."""

    def __init__(self, policy: Policy, budget: LatencyBudget) -> None:
        self.policy = policy
        self.budget = budget

    @property
    def conventions(self) -> Conventions:
        return self.policy.conventions

    def reset(self) -> None:
        self.policy.reset()

    def predict_action(self, obs: Observation, seed: Optional[int] = None,
                       continuation: Optional[ChunkContinuation] = None) -> PolicyOutput:
        output = self.policy.predict_action(obs, seed=seed, continuation=continuation)
        return dataclasses.replace(output, budget_over=bool(self.budget.observe(output.timings_ms)))


def with_budget(policy: Policy, budget: Optional[LatencyBudget]) -> Policy:
    return BudgetedPolicy(policy, budget) if budget is not None else policy
