"""The real-time side of vlart: stage timing, latency budgets, the control loop, the command line.

Imports nothing eagerly: this package holds both the bottom layer (timing, budgets, config I/O, numpy only) and the
top one (profile, the CLI), and importing the one must not pull in the other.
"""
