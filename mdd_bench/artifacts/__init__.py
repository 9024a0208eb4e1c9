"""Shared artifacts trained once per protocol and dataset on the workspace: expert trajectories and the
full-data reference model (its upper bound, the coreset baselines' features, forgetting counts)."""
