"""Environments: SIMPLER tasks (ManiSkill3) and other gymnasium tasks, and the simulator evaluation runner."""
