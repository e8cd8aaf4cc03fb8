"""The one error type of cluster runs: Slurm refused, or the nodes do not see the run folder."""


class ClusterError(RuntimeError):
    """The message names what failed and what to change (a param, a command to run)."""
